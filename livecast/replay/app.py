"""The replay service, wired by :mod:`livecast.app`: built after the streams registry
(whose end transition lists a replay) and before the packaging (whose packagers it
records), with its sweep of expired replays, and the signer of private replays' URLs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from livecast.aio import cancel_and_wait
from livecast.appkeys import KEYS, NODE, REDIS, SETTINGS, STREAMS
from livecast.auth import TokenIssuer
from livecast.config import Settings
from livecast.hls.signing import PlaybackSigner
from livecast.replay.keys import REPLAYS
from livecast.replay.store import Replays

__all__ = ["replay_ctx", "replay_signer"]


def replay_signer(settings: Settings, tokens: TokenIssuer) -> PlaybackSigner:
    """The signer of private streams' replay URLs, keyed apart from live playback's."""
    return PlaybackSigner(
        tokens.derived_key("livecast replay playback"), ttl_s=settings.hls.playback_url_ttl_s
    )


async def replay_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    replays = Replays(
        app[REDIS], app[KEYS], settings.replay, settings.replays_dir, app[NODE], app[STREAMS]
    )
    app[REPLAYS] = replays
    app[STREAMS].on_state_change(replays.stream_ended)
    replays.start()
    sweeps = asyncio.create_task(replays.run_sweeps(), name="replay-sweeps")
    try:
        yield
    finally:
        await cancel_and_wait(sweeps)
        await replays.close()
