"""The LL-HLS services, wired by :mod:`livecast.app`: the playback URL signer, the
forwarding of ``/hls/`` requests for streams packaged on other nodes, and the packaging
of this node's streams, built from settings, with their commerce events read from
the streams' timelines into each playlist's date ranges.

Both contexts follow the media hub (:mod:`livecast.ingest`: its origin registry, its
streams), so they start after it and stop before it: the packaging stops following the
hub and ends every playlist at shutdown, then the forwarder takes back its notes of
ended playlists and closes its client session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from livecast.aio import cancel_and_wait
from livecast.appkeys import KEYS, REDIS, SETTINGS
from livecast.auth import TokenIssuer
from livecast.config import HlsSettings
from livecast.hls.dateranges import follow_timelines
from livecast.hls.forward import Forwarder
from livecast.hls.keys import FORWARDER, PACKAGING
from livecast.hls.packaging import Packaging
from livecast.hls.signing import PlaybackSigner
from livecast.ingest.keys import MEDIA
from livecast.metrics import METRICS
from livecast.replay.keys import REPLAYS
from livecast.timeline import TIMELINE

__all__ = ["forwarding_ctx", "packaging_ctx", "playback_signer"]

# How often each packaged stream's timeline is read for its EXT-X-DATERANGE tags: well
# under a part, so an event is in the playlist long before players reach its media time.
_TIMELINE_READ_S: Final = 0.1


def playback_signer(settings: HlsSettings, tokens: TokenIssuer) -> PlaybackSigner:
    """The signer of private streams' playback URLs, keyed from the token secret."""
    return PlaybackSigner(
        tokens.derived_key("livecast hls playback"), ttl_s=settings.playback_url_ttl_s
    )


async def forwarding_ctx(app: web.Application) -> AsyncIterator[None]:
    forwarder = Forwarder(app[MEDIA].origins, app[REDIS], app[KEYS], app[METRICS].registry)
    app[FORWARDER] = forwarder
    forwarder.start()
    try:
        yield
    finally:
        await forwarder.close()


async def packaging_ctx(app: web.Application) -> AsyncIterator[None]:
    replays = app.get(REPLAYS)
    record = replays.writer if replays is not None and app[SETTINGS].replay.enabled else None
    packaging = Packaging(app[SETTINGS].hls, app[MEDIA], app[FORWARDER].packaging_ended, record)
    app[PACKAGING] = packaging
    app[METRICS].gauge(
        "livecast_hls_streams",
        "streams this node packages as LL-HLS (ended ones while their playlist lingers)",
        lambda: len(packaging.streams),
    )
    packaging.start()
    dated = asyncio.create_task(
        follow_timelines(
            lambda: (
                (stream_id, packaged.packager.dateranges)
                for stream_id, packaged in packaging.streams.items()
                if packaged.ended_at is None
            ),
            app[TIMELINE],
            _TIMELINE_READ_S,
        ),
        name="hls-dateranges",
    )
    try:
        yield
    finally:
        await cancel_and_wait(dated)
        await packaging.close()
