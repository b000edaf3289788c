"""The timeline service of one app (``app[TIMELINE]``), built from its settings."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from livecast.appkeys import KEYS, REDIS, SETTINGS
from livecast.timeline.store import Timeline

__all__ = ["TIMELINE", "timeline_ctx"]

TIMELINE = web.AppKey("timeline", Timeline)


async def timeline_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS].timeline
    app[TIMELINE] = Timeline(
        app[REDIS],
        app[KEYS],
        max_entries=settings.max_entries,
        retention_s=settings.retention_s,
    )
    yield
