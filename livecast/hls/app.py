"""Wiring: the LL-HLS routes, the forwarding of requests for streams packaged on other
nodes, and the packaging of this node's streams built from settings.

Both follow the media hub (:mod:`livecast.ingest`: its origin registry, its streams), so
they start after it and stop before it: the packaging stops following the hub and ends
every playlist at shutdown, the forwarder's client session is closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from livecast.appkeys import KEYS, REDIS, SETTINGS, TOKENS
from livecast.hls import routes
from livecast.hls.forward import Forwarder
from livecast.hls.keys import FORWARDER, PACKAGING, PLAYBACK
from livecast.hls.packaging import Packaging
from livecast.hls.signing import PlaybackSigner
from livecast.ingest.keys import MEDIA
from livecast.metrics import METRICS

__all__ = ["OPENAPI", "setup"]

OPENAPI = Path(__file__).parent / "openapi.json"


def setup(app: web.Application) -> None:
    """Add the /hls routes (with the playback URL signer and the forwarding to other
    nodes) and, when ``hls.enabled``, the packaging of this node's streams."""
    settings = app[SETTINGS]
    app[PLAYBACK] = PlaybackSigner(
        app[TOKENS].derived_key("livecast hls playback"), ttl_s=settings.hls.playback_url_ttl_s
    )
    app.add_routes(routes.routes)
    app.on_response_prepare.append(routes.cors_headers)
    app.cleanup_ctx.append(_forwarding_ctx)
    if settings.hls.enabled:
        app.cleanup_ctx.append(_packaging_ctx)


async def _forwarding_ctx(app: web.Application) -> AsyncIterator[None]:
    forwarder = Forwarder(app[MEDIA].origins, app[REDIS], app[KEYS])
    app[FORWARDER] = forwarder
    forwarder.start()
    try:
        yield
    finally:
        await forwarder.close()


async def _packaging_ctx(app: web.Application) -> AsyncIterator[None]:
    packaging = Packaging(app[SETTINGS].hls, app[MEDIA], app[FORWARDER].packaging_ended)
    app[PACKAGING] = packaging
    app[METRICS].gauge(
        "livecast_hls_streams",
        "streams this node packages as LL-HLS (ended ones while their playlist lingers)",
        lambda: len(packaging.streams),
    )
    packaging.start()
    try:
        yield
    finally:
        await packaging.close()
