"""The media package's services and lifecycle (wired by :mod:`livecast.app`): the media
hub built from settings, its metrics, its shutdown.

Per-stream media numbers are served at ``GET /api/streams/{id}/media``; this node's
WHEP and WHIP session counts are the ``livecast_webrtc_viewers`` and
``livecast_webrtc_publishers`` gauges at ``/metrics``, its pulls from other nodes
(:mod:`livecast.ingest.edge`) ``livecast_webrtc_edge_pulls``. Every session's start and
end (with its reason) is logged and counted by :class:`~livecast.ingest.sessions.SessionBook`;
the ends this module causes (the stream ended, the origin moved, shutdown) and a quiet
publisher's (the hub's watchdog) are marked with their reason before they happen.

Tasks owned here, cancelled at shutdown: the hub's watchdog (:meth:`MediaHub.start`,
stopped by its ``close``), the origin heartbeat
(:mod:`livecast.ingest.origin`), this node's record for the others
(:mod:`livecast.ingest.nodes`), the edge relay's upkeep, and a check that ends the
media of streams ended through another node. The recorder's writer threads are
finalized and joined after the hub closed (:mod:`livecast.ingest.recorder`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from redis.exceptions import RedisError

from livecast.aio import cancel_and_wait
from livecast.appkeys import EVENTS, KEYS, NODE, REDIS, SETTINGS, STREAMS, TOKENS
from livecast.errors import ApiError
from livecast.ingest.edge import EdgeRelay, EdgeTokens
from livecast.ingest.hub import MediaHub
from livecast.ingest.keys import EDGE, MEDIA, NODES, RECORDER, SESSIONS
from livecast.ingest.nodes import NodeDirectory
from livecast.ingest.origin import Origin, OriginRegistry
from livecast.ingest.recorder import Recorder
from livecast.ingest.sessions import EndReason, SessionBook
from livecast.metrics import METRICS
from livecast.streams.registry import Stream, StreamState

__all__ = ["close_sessions", "media_ctx"]

log = logging.getLogger(__name__)

# How often an origin checks that its streams were not ended through another node.
_END_CHECK_S = 2.0


async def media_ctx(app: web.Application) -> AsyncIterator[None]:
    events = app[EVENTS]
    registry = app[STREAMS]

    settings = app[SETTINGS]
    node = Origin(node_id=app[NODE].id, url=app[NODE].url)
    origins = OriginRegistry(
        app[REDIS],
        app[KEYS],
        node,
        settings.webrtc.origin_ttl_s,
        grace_s=settings.webrtc.reconnect_grace_s,
    )
    nodes = NodeDirectory(app[REDIS], app[KEYS], app[NODE], settings.webrtc.origin_ttl_s)
    recorder = Recorder(settings.recordings_dir, enabled=settings.webrtc.record)
    hub = MediaHub(settings.webrtc, events.publish, origins, recorder if recorder.enabled else None)
    edge_tokens = EdgeTokens(app[TOKENS], node.node_id)
    book = SessionBook(hub, app[METRICS].registry)

    async def close_stream(stream_id: str) -> None:
        book.mark_stream(stream_id, EndReason.STREAM_ENDED)
        await hub.close_stream(stream_id)

    def lose_origin(stream_id: str) -> None:
        media = hub.media(stream_id)
        if media is not None and media.publisher is not None:
            book.mark(media.publisher, EndReason.ORIGIN_MOVED)
        hub.lose_origin(stream_id)

    async def has_ended(stream_id: str) -> bool:
        stream = await registry.find(stream_id)
        return stream is None or stream.state is StreamState.ENDED

    edge = EdgeRelay(hub, origins, settings.webrtc, edge_tokens, has_ended)

    async def follow_ends() -> None:
        """Close the media of this node's streams that were ended through another node
        (``on_state_change`` only hears of transitions made on this one)."""
        while True:
            await asyncio.sleep(_END_CHECK_S)
            for stream_id in list(origins.claimed):
                try:
                    if await has_ended(stream_id):
                        await close_stream(stream_id)
                except (RedisError, OSError) as exc:
                    log.warning("stream %s: could not check its state: %s", stream_id, exc)

    async def on_stream_change(stream: Stream, previous: StreamState) -> None:
        if stream.state is StreamState.ENDED:
            await close_stream(stream.id)

    async def end_stream(stream_id: str) -> None:
        try:
            await registry.transition(stream_id, StreamState.ENDED)
        except ApiError as exc:
            log.info("stream %s: not ended after reconnect grace: %s", stream_id, exc.message)

    registry.on_state_change(on_stream_change)

    async def live_streams() -> list[str]:
        return await registry.ids(StreamState.LIVE)

    hub.on_grace_expired(end_stream, live_streams)
    hub.on_publisher_stale(lambda publisher: book.mark(publisher, EndReason.PUBLISHER_STALE))
    app[MEDIA] = hub
    app[EDGE] = edge
    app[RECORDER] = recorder
    app[SESSIONS] = book
    app[NODES] = nodes
    metrics = app[METRICS]
    metrics.gauge(
        "livecast_webrtc_viewers",
        "WHEP sessions (viewers) on this node",
        lambda: sum(len(media.viewers) for media in hub.streams.values()),
    )
    metrics.gauge(
        "livecast_webrtc_publishers",
        "WHIP sessions (publishers) on this node",
        lambda: sum(media.publisher is not None for media in hub.streams.values()),
    )
    metrics.gauge(
        "livecast_webrtc_edge_pulls",
        "streams this node pulls from their origin node (WHEP sessions there)",
        lambda: sum(media.upstream is not None for media in hub.streams.values()),
    )
    await nodes.start()
    tasks = [asyncio.create_task(follow_ends(), name="media-follow-ends")]
    hub.start()
    origins.start(lose_origin)
    edge.start()
    try:
        yield
    finally:
        await cancel_and_wait(*tasks)
        await edge.close()
        book.mark_all(EndReason.SERVER_SHUTDOWN)
        await hub.close()
        await recorder.close()
        await origins.close()
        await nodes.close()


async def close_sessions(app: web.Application) -> None:
    edge = app.get(EDGE)
    if edge is not None:
        await edge.close()
    hub = app.get(MEDIA)
    if hub is not None:
        app[SESSIONS].mark_all(EndReason.SERVER_SHUTDOWN)
        await hub.close()
