"""The app factory: the one place that builds services from settings and wires them up.

Redis is connected (or the embedded server started, and supervised) by the first cleanup
context; each capability package then exposes ``setup(app)``, called here in order, which
adds its routes, its services (built from ``app[SETTINGS]`` and ``app[REDIS]`` in a
cleanup context of its own) and its shutdown hooks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from livecast import __version__, chat, health, hls, ingest, pages
from livecast.aio import cancel_and_wait
from livecast.appkeys import EVENTS, KEYS, REDIS, SETTINGS, STREAMS, TOKENS
from livecast.auth import TokenIssuer, load_or_create_secret
from livecast.cart import api as cart_api
from livecast.cart.service import setup as setup_cart
from livecast.config import Settings
from livecast.embedded_redis import EmbeddedRedis, Supervisor
from livecast.events import EventPublisher
from livecast.http import error_middleware, setup_error_responses
from livecast.inventory import api as inventory_api
from livecast.metrics import METRICS, Metrics, metrics_middleware, metrics_route
from livecast.openapi import OPENAPI, build_openapi, openapi_route
from livecast.redisdb import KeySpace, open_redis
from livecast.streams import api as streams_api
from livecast.streams.registry import StreamRegistry

__all__ = ["ABORT", "Abort", "create_app"]

log = logging.getLogger(__name__)

_PACKAGE = Path(__file__).parent
# The packages whose routes have no contracts yet (see livecast.openapi).
OPENAPI_FRAGMENTS = [
    _PACKAGE / "hls" / "openapi.json",
]


class Abort:
    """How the app asks whoever runs it to stop, once it can no longer serve (the
    embedded Redis keeps dying). ``livecast serve`` sets :attr:`stop`, and exits non-zero
    with :attr:`reason` once the app has shut down; without it the app carries on."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.stop: Callable[[], None] | None = None

    def __call__(self, reason: str) -> None:
        self.reason = reason
        if self.stop is not None:
            self.stop()


ABORT = web.AppKey("abort", Abort)


def create_app(settings: Settings) -> web.Application:
    """Build the application. Redis is connected (or started) when the app starts."""
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[metrics_middleware, error_middleware],
    )
    setup_error_responses(app)
    app[SETTINGS] = settings
    app[ABORT] = Abort()
    app[METRICS] = Metrics()
    secret = load_or_create_secret(settings.auth.secret, settings.data_dir)
    app[TOKENS] = TokenIssuer(secret, issuer=settings.auth.issuer)
    app.cleanup_ctx.append(_redis_ctx)
    app.add_routes(health.routes)
    app.add_routes(streams_api.routes)
    inventory_api.setup(app)
    chat.setup(app)
    setup_cart(app)
    app.add_routes([metrics_route()])
    ingest.setup(app)
    hls.setup(app)
    app.add_routes([openapi_route()])
    pages.setup(app)
    app[OPENAPI] = build_openapi(
        app, version=__version__, webhooks=cart_api.WEBHOOKS, fragments=OPENAPI_FRAGMENTS
    )
    return app


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    embedded: EmbeddedRedis | None = None
    url = settings.redis.url
    if not url:
        embedded = EmbeddedRedis(settings.data_dir, appendfsync=settings.redis.embedded_appendfsync)
        await asyncio.to_thread(embedded.start)
        url = embedded.url
        log.info("embedded redis-server started (pid %s) on %s", embedded.pid, url)
    try:
        redis = await open_redis(url, settings.redis)
    except BaseException:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        raise
    keys = KeySpace(settings.redis.key_prefix)
    app[REDIS] = redis
    app[KEYS] = keys
    app[EVENTS] = EventPublisher(redis, keys)
    app[STREAMS] = StreamRegistry(redis, keys)
    supervisor: asyncio.Task[None] | None = None
    if embedded is not None:
        watch = Supervisor(embedded, on_give_up=app[ABORT])
        app[METRICS].gauge(
            "livecast_embedded_redis_restarts",
            "times the embedded redis-server was started again after it died",
            lambda: watch.restarts,
        )
        supervisor = asyncio.create_task(watch.run(), name="embedded-redis-supervisor")
    try:
        yield
    finally:
        # The supervisor goes first, so that the server's own stop is not taken for a death.
        await cancel_and_wait(supervisor)
        await redis.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
            log.info("embedded redis-server stopped")
