"""Several nodes: any node answers ``/hls/{stream id}/...``; the stream's origin packages it.

The node holding a stream's publisher (its origin, :mod:`livecast.ingest.origin`) is the
only one that packages it. Another node that gets a request for it forwards the request
there, found through the same origin record in Redis that edges pull WebRTC media by,
and streams the answer back as it comes: status, body, ``Cache-Control``, ``ETag``,
``Retry-After`` unchanged, its own CORS headers on top. A blocking reload
(``_HLS_msn``/``_HLS_part``) or a hinted part waits at the origin, as if asked there.

Why forward rather than package the edge's own pull: a CDN in front of a load balancer
keys on the URL alone and may fill its cache from any node. Two packagers of one stream
would cut their own segments and parts, under their own run ids, with their own
playlists: a player would be given one node's playlist and another node's parts, and
identical blocking requests would no longer get identical bytes. With one packager per
stream, every node answers every URL with the same bytes, the CDN's one request per
object holds whichever node it reaches, and the encoding work (Opus to AAC, VP8 to
H.264) is done once per deployment. The cost is one hop on loopback or the LAN per
request that misses the CDN.

When its stream ends, the origin lets go of its record at once, but its playlist, ended
(``EXT-X-ENDLIST``), stays for a while (:mod:`livecast.hls.packaging`): the packaging
notes in Redis where that playlist is for as long (:meth:`Forwarder.packaging_ended`), so
every node, not only the origin, shows players and caches the end. A node that stops
takes its notes back (``ended_release.lua``): nobody is sent to a node that is gone.

Forwarded requests are counted at ``/metrics`` as ``livecast_hls_forwarded_requests_total``
by outcome: ``answered`` (the origin answered, whatever its status), ``unreachable``
(this node answered 503), ``broken_off`` (of the answered, those whose answer stopped
midway).

The origin's record is looked up at most every :data:`_LOOKUP_S` per stream on a node.
An origin that cannot be reached (its node died, and its record has not expired yet),
or that does not answer in time, is ``503 hls_unavailable`` with ``Retry-After: 1``; a
stream no node is the origin of is ``404 hls_not_found``. A forwarded request carries
:data:`FORWARDED_HEADER` and is never forwarded again, so a record that moves while a
request travels cannot make it go round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Final

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from redis.exceptions import RedisError

from livecast.aio import cancel_and_wait
from livecast.error_codes import ErrorCode
from livecast.errors import NotFound
from livecast.http import error_response
from livecast.ingest.origin import Origin, OriginRegistry
from livecast.redisdb import KeySpace, load_lua

__all__ = ["FORWARDED_HEADER", "Forwarder"]

log = logging.getLogger(__name__)

FORWARDED_HEADER: Final = "X-Livecast-Forwarded-By"
# How long a stream's origin, once looked up, is trusted without asking Redis again.
_LOOKUP_S: Final = 1.0
# Connecting to the origin; then the longest silence while its answer comes, more than
# a blocking request waits there (three target durations).
_CONNECT_S: Final = 2.0
_READ_S: Final = 30.0
# At shutdown, how long the notes of ended playlists being written get to finish.
_NOTING_S: Final = 1.0
# What is asked of the origin on the player's behalf, and what of its answer is passed on.
_ASKED = ("Authorization", "If-None-Match")
_ANSWERED = (
    "Content-Type",
    "Content-Length",
    "Cache-Control",
    "ETag",
    "Retry-After",
    "WWW-Authenticate",
)


class Forwarder:
    """Sends this node's ``/hls/`` requests for streams packaged elsewhere to their
    origin; started and closed with the app."""

    def __init__(
        self,
        origins: OriginRegistry,
        redis: aioredis.Redis,
        keys: KeySpace,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        forwarded = Counter(
            "livecast_hls_forwarded_requests",
            "/hls/ requests this node forwarded to the stream's origin node, by outcome",
            ["outcome"],
            registry=metrics,
        )
        self._answered = forwarded.labels("answered")
        self._unreachable = forwarded.labels("unreachable")
        self._broken_off = forwarded.labels("broken_off")
        self._origins = origins
        self._redis = redis
        self._keys = keys
        self._tasks: set[asyncio.Future[Any]] = set()
        self._noted: dict[str, float] = {}  # stream -> until when its note names this node
        self._release = load_lua(redis, Path(__file__).parent / "ended_release.lua")
        self._known: dict[str, tuple[Origin | None, float]] = {}  # stream -> origin, when
        self._complained: dict[str, float] = {}  # origin URL -> when it was last logged
        self._http: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, connect=_CONNECT_S, sock_read=_READ_S),
        )

    async def close(self) -> None:
        """Take back this node's notes of ended playlists (they go with it), then stop."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=_NOTING_S)
        await cancel_and_wait(*self._tasks)
        record = self._origins.node.record()
        now = time.monotonic()
        for stream_id in [s for s, until in self._noted.items() if until > now]:
            try:
                await self._release(keys=[self._ended_key(stream_id)], args=[record])
            except (RedisError, OSError) as exc:
                log.warning("stream %s: HLS end note not taken back: %s", stream_id, exc)
        self._noted.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def origin(self, stream_id: str) -> Origin | None:
        """The node other than this one that is the stream's origin, if any."""
        now = time.monotonic()
        known = self._known.get(stream_id)
        if known is not None and now - known[1] < _LOOKUP_S:
            return known[0]
        origin = await self._origins.lookup(stream_id)
        if origin is None:  # the stream ended (or died): its ended playlist may linger
            raw = await self._redis.get(self._ended_key(stream_id))
            origin = Origin.from_record(raw) if raw is not None else None
        me = self._origins.node
        if origin is not None and (origin.node_id == me.node_id or origin.url == me.url):
            origin = None
        if len(self._known) > 10_000:
            self._known = {k: v for k, v in self._known.items() if now - v[1] < _LOOKUP_S}
        self._known[stream_id] = (origin, now)
        return origin

    def packaging_ended(self, stream_id: str, linger_s: float) -> None:
        """This node ended the stream's playlist and keeps it ``linger_s``: other nodes
        are to forward to it meanwhile, once no node is the stream's origin."""
        noting = asyncio.ensure_future(self._note_ended(stream_id, linger_s))
        self._tasks.add(noting)
        noting.add_done_callback(self._tasks.discard)

    async def _note_ended(self, stream_id: str, linger_s: float) -> None:
        key, record = self._ended_key(stream_id), self._origins.node.record()
        try:
            await self._redis.set(key, record, px=int(linger_s * 1000))
        except (RedisError, OSError) as exc:
            log.warning("stream %s: other nodes will not show the HLS end: %s", stream_id, exc)
            return
        now = time.monotonic()
        self._noted = {s: until for s, until in self._noted.items() if until > now}
        self._noted[stream_id] = now + linger_s

    def _ended_key(self, stream_id: str) -> str:
        return self._keys.key("hls", "ended", stream_id)

    async def forward(self, request: web.Request, stream_id: str) -> web.StreamResponse:
        """Answer ``request`` with its stream's origin's answer; 404 ``hls_not_found``
        when no other node is the stream's origin (or the request was forwarded here)."""
        origin = None
        if FORWARDED_HEADER not in request.headers:
            origin = await self.origin(stream_id)
        if origin is None or self._http is None:
            raise NotFound(
                "this stream is not packaged as HLS on any node", code=ErrorCode.HLS_NOT_FOUND
            )
        headers = {name: request.headers[name] for name in _ASKED if name in request.headers}
        headers[FORWARDED_HEADER] = self._origins.node.node_id
        headers["Accept-Encoding"] = "identity"  # the bytes as the origin made them
        try:
            upstream = await self._http.request(
                request.method, origin.url + request.path_qs, headers=headers
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._unreachable.inc()
            now = time.monotonic()
            if now - self._complained.get(origin.url, -_LOOKUP_S) >= _LOOKUP_S:
                self._complained[origin.url] = now  # once a second, not once a request
                log.warning(
                    "stream %s: origin %s not reached for HLS: %r", stream_id, origin.url, exc
                )
            return error_response(
                ErrorCode.HLS_UNAVAILABLE,
                "the node that packages this stream cannot be reached; try again",
                {"Retry-After": "1", "Cache-Control": "no-store"},
            )
        self._answered.inc()
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name in _ANSWERED:
                if name in upstream.headers:
                    response.headers[name] = upstream.headers[name]
            await response.prepare(request)
            try:
                while chunk := await _read(upstream, stream_id, origin):
                    await response.write(chunk)
                await response.write_eof()
            except _BrokenOff:
                self._broken_off.inc()
                # the status is sent: cut the answer off rather than end it as if whole
                if request.transport is not None:
                    request.transport.close()
            except ConnectionResetError:
                pass  # the player left
        return response


class _BrokenOff(Exception):
    """The origin's answer stopped before its end."""


async def _read(upstream: aiohttp.ClientResponse, stream_id: str, origin: Origin) -> bytes:
    """The next bytes of the origin's answer (``b""`` at its end)."""
    try:
        return await upstream.content.readany()
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.info("stream %s: origin %s broke off its HLS answer: %r", stream_id, origin.url, exc)
        raise _BrokenOff from exc
