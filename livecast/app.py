"""The app factory: the one place where livecast is wired.

:func:`create_app` states everything the application is made of: the services, built at
start-up by cleanup contexts in the order listed there (each builds from the app keys
that the ones before it set, and they close in reverse order at shutdown), the shutdown
and response hooks, and every route. The packages provide the parts (their context,
hooks and route table) and wire nothing themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from livecast import __version__, health, pages
from livecast.aio import cancel_and_wait
from livecast.appkeys import EVENTS, KEYS, NODE, REDIS, SETTINGS, STREAMS, TOKENS
from livecast.asyncapi import asyncapi_route, build_asyncapi
from livecast.auth import TokenIssuer, load_or_create_secret
from livecast.cart import api as cart_api
from livecast.cart.service import cart_ctx
from livecast.chat import api as chat_api
from livecast.chat import socket as chat_socket
from livecast.chat.service import chat_ctx, close_sockets
from livecast.clips import routes as clips_routes
from livecast.clips.app import clips_ctx
from livecast.config import Settings
from livecast.embedded_redis import EmbeddedRedis, Supervisor
from livecast.events import EventPublisher
from livecast.hls import routes as hls_routes
from livecast.hls.app import forwarding_ctx, packaging_ctx, playback_signer
from livecast.hls.keys import PLAYBACK
from livecast.http import error_middleware, setup_error_responses
from livecast.ingest import recordings, whep, whip
from livecast.ingest._signaling import cors_headers as webrtc_cors_headers
from livecast.ingest.app import close_sessions, media_ctx
from livecast.inventory import api as inventory_api
from livecast.inventory.service import inventory_ctx
from livecast.metrics import METRICS, Metrics, metrics_middleware, metrics_route
from livecast.node import Node
from livecast.openapi import OPENAPI, Reply, build_openapi, contract, openapi_route
from livecast.redisdb import KeySpace, open_redis
from livecast.replay import receipts
from livecast.replay import routes as replay_routes
from livecast.replay.app import replay_ctx, replay_signer
from livecast.replay.keys import REPLAY_PLAYBACK
from livecast.selling import api as selling_api
from livecast.selling import giveaways_api, groupbuy_api, knockdown_api, polls_api
from livecast.selling.groupbuy_service import groupbuys_ctx
from livecast.selling.knockdown_service import knockdowns_ctx
from livecast.selling.service import selling_ctx
from livecast.streams import api as streams_api
from livecast.streams.registry import StreamRegistry
from livecast.timeline import api as timeline_api
from livecast.timeline import timeline_ctx

__all__ = ["ABORT", "Abort", "create_app"]

log = logging.getLogger(__name__)

# The packages whose routes have no contracts yet (see livecast.openapi).


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


def create_app(settings: Settings, *, worker: int | None = None) -> web.Application:
    """Build the application. Redis is connected (or started) when the app starts.

    ``worker``: this app's index among the workers of ``livecast serve --workers N``."""
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[metrics_middleware, error_middleware],
    )
    setup_error_responses(app)
    app[SETTINGS] = settings
    app[NODE] = Node.new(settings.server.node_url, worker)
    app[ABORT] = Abort()
    app[METRICS] = Metrics()
    secret = load_or_create_secret(settings.auth.secret, settings.data_dir)
    app[TOKENS] = TokenIssuer(secret, issuer=settings.auth.issuer)
    app[PLAYBACK] = playback_signer(settings.hls, app[TOKENS])
    app[REPLAY_PLAYBACK] = replay_signer(settings, app[TOKENS])
    app[pages.WEB_ROOT] = pages.web_root()

    # The services, built in this order at start-up (after each line: what it sets and
    # what it needs beyond the line above it) and closed in reverse at shutdown.
    app.cleanup_ctx.extend(
        [
            # REDIS, KEYS, EVENTS, STREAMS (the embedded Redis started and supervised)
            _redis_ctx,
            # TIMELINE: commerce events' media time and each stream's stored timeline
            timeline_ctx,
            # INVENTORY: catalog, stock, holds, deals, pins
            inventory_ctx,
            # CHAT: hub (live channel fan-out), history, moderation
            chat_ctx,
            # CART: carts, checkout and its recovery, orders, payments, stats, webhooks;
            # needs INVENTORY (holds) and CHAT (audience numbers for the stats)
            cart_ctx,
            # SELLING: auctions and their end-time sweep; needs INVENTORY and CART
            selling_ctx,
            # GROUPBUYS: group buys, their close-and-settle sweep; needs INVENTORY and CART
            groupbuys_ctx,
            # KNOCKDOWNS: price knock-downs, their step/deadline sweep; needs INVENTORY, CART
            knockdowns_ctx,
            # MEDIA, EDGE, RECORDER, SESSIONS: WHIP/WHEP sessions, relay, origin/edge
            media_ctx,
        ]
    )
    # REPLAYS: replay records, files and sweeps; needs STREAMS
    app.cleanup_ctx.append(replay_ctx)
    # CLIPS: product clips, made as replays are finalized; needs REPLAYS and TIMELINE
    app.cleanup_ctx.append(clips_ctx)
    # FORWARDER: /hls/ requests for streams packaged on another node; needs MEDIA
    app.cleanup_ctx.append(forwarding_ctx)
    if settings.hls.enabled:
        # PACKAGING: LL-HLS of this node's streams; needs MEDIA, FORWARDER (and REPLAYS)
        app.cleanup_ctx.append(packaging_ctx)
    # Before connections are closed at shutdown: sockets hear 1001, sessions end with a
    # reason (their services close later, with the contexts above).
    app.on_shutdown.extend([close_sockets, close_sessions])
    app.on_response_prepare.extend([webrtc_cors_headers, hls_routes.cors_headers])
    app.on_response_prepare.append(replay_routes.cors_headers)

    app.add_routes(health.routes)
    app.add_routes(streams_api.routes)
    app.add_routes(inventory_api.routes)
    app.add_routes(chat_socket.routes)
    app.add_routes(chat_api.routes)
    app.add_routes(cart_api.routes)
    app.add_routes(selling_api.routes)
    app.add_routes(polls_api.routes)
    app.add_routes(giveaways_api.routes)
    app.add_routes(groupbuy_api.routes)
    app.add_routes(knockdown_api.routes)
    app.add_routes([metrics_route()])
    app.add_routes(whip.routes)
    app.add_routes(whep.routes)
    app.add_routes(recordings.routes)
    app.add_routes(hls_routes.routes)
    app.add_routes(replay_routes.routes)
    app.add_routes([openapi_route()])
    app.add_routes([_described(asyncapi_route(build_asyncapi(version=__version__)))])
    app.add_routes(timeline_api.routes)
    app.add_routes(clips_routes.routes)
    app.add_routes(receipts.routes)
    app.add_routes(pages.routes)
    # Last, once every route is added: the OpenAPI document is generated from them.
    app[OPENAPI] = build_openapi(app, version=__version__, webhooks=cart_api.WEBHOOKS)
    return app


def _described(asyncapi: web.RouteDef) -> web.RouteDef:
    """The AsyncAPI document's route, with its contract for the OpenAPI one."""
    contract(
        summary="The AsyncAPI 3.0 description of the live-events WebSocket "
        "(/ws/streams/{stream_id}): every server event and client frame, with their "
        "schemas, and the close codes",
        responses={200: Reply(dict[str, Any], "AsyncAPI 3.0 document")},
        redis=False,
    )(asyncapi.handler)
    return asyncapi


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
        watch = Supervisor(
            embedded,
            on_give_up=app[ABORT],
            window_s=settings.redis.embedded_restart_window_s,
        )
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
