"""The LL-HLS packaging of this node's streams, built from settings, and the playback
URL signer (wired by :mod:`livecast.app`).

The packaging follows the media hub (:mod:`livecast.ingest`), so it starts after it
and stops before it: its task is cancelled and every playlist ended at shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from livecast.aio import cancel_and_wait
from livecast.appkeys import SETTINGS
from livecast.auth import TokenIssuer
from livecast.config import HlsSettings
from livecast.hls.keys import PACKAGING
from livecast.hls.packaging import Packaging
from livecast.hls.signing import PlaybackSigner
from livecast.ingest.keys import MEDIA
from livecast.metrics import METRICS

__all__ = ["OPENAPI", "packaging_ctx", "playback_signer"]

OPENAPI = Path(__file__).parent / "openapi.json"


def playback_signer(settings: HlsSettings, tokens: TokenIssuer) -> PlaybackSigner:
    """The signer of private streams' playback URLs, keyed from the token secret."""
    return PlaybackSigner(
        tokens.derived_key("livecast hls playback"), ttl_s=settings.playback_url_ttl_s
    )


async def packaging_ctx(app: web.Application) -> AsyncIterator[None]:
    packaging = Packaging(app[SETTINGS].hls, app[MEDIA])
    app[PACKAGING] = packaging
    app[METRICS].gauge(
        "livecast_hls_streams",
        "streams this node packages as LL-HLS (ended ones while their playlist lingers)",
        lambda: len(packaging.streams),
    )
    task = asyncio.create_task(packaging.run(), name="hls-packaging")
    try:
        yield
    finally:
        await cancel_and_wait(task)
        await packaging.close()
