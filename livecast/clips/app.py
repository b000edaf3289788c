"""The clips service, wired by :mod:`livecast.app` after the replays and the timeline: it
makes a replay's clips when the replay is finalized, and deletes them with it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from livecast.appkeys import KEYS, REDIS
from livecast.clips.store import CLIPS, Clips
from livecast.replay.keys import REPLAYS
from livecast.timeline.service import TIMELINE

__all__ = ["clips_ctx"]


async def clips_ctx(app: web.Application) -> AsyncIterator[None]:
    clips = Clips(app[REDIS], app[KEYS], app[TIMELINE])
    app[CLIPS] = clips
    app[REPLAYS].on_finalized.append(clips.make)
    app[REPLAYS].on_deleted.append(clips.delete_stream)
    yield
