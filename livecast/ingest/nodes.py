"""Which node holds a WHIP/WHEP session, and how a request for it reaches that node.

A session lives on the node that answered its POST: its peer connection, ICE and DTLS
are there. Its URL (``/whip|/whep/{stream}/{session}``) is relative, so the client sends
its ``PATCH`` (trickle ICE) and ``DELETE`` to the same address it posted to, and behind
a load balancer, or through the port that the workers of ``livecast serve --workers N``
share, that request may land on another node. So a session id names its node:
``<32 random characters>.<node id>`` (:func:`session_id`), every node records in Redis
the URL other nodes reach it at (``server.node_url``, a worker's private port), and a
node that gets a request for a session of another node forwards it there
(:meth:`NodeDirectory.forward_to`) and hands the owner's answer back unchanged: the owner
checks the caller's rights as if it had been asked directly. A request is forwarded at
most once (the ``Livecast-Forwarded-By`` header marks it).

The record (``media:node:<id>``) lives ``webrtc.origin_ttl_s`` and is refreshed every
third of it while the node runs; it is deleted at a clean shutdown. A session of a node
whose record is gone ended with that node: this node answers as for any session it does
not hold (401 or 403 first for a caller who may not act on the stream's sessions, then
404 ``session_not_found``), so that nobody learns which sessions exist. A node whose
record is there but that does not answer: 503 ``session_node_unreachable`` (retry).
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from multidict import CIMultiDict
from redis.exceptions import RedisError
from yarl import URL

from livecast.aio import cancel_and_wait
from livecast.error_codes import ErrorCode
from livecast.errors import ApiError
from livecast.http import read_body
from livecast.node import Node
from livecast.redisdb import KeySpace

__all__ = ["FORWARDED_BY", "NodeDirectory", "owner_of", "session_id"]

log = logging.getLogger(__name__)

FORWARDED_BY = "Livecast-Forwarded-By"
# What a forwarded request carries to the owner, and what its answer carries back.
_REQUEST_HEADERS = ("Authorization", "Content-Type", "If-Match")
_RESPONSE_HEADERS = (
    "Content-Type",
    "Location",
    "ETag",
    "Link",
    "Accept-Patch",
    "WWW-Authenticate",
    "Retry-After",
)
_FORWARD_TIMEOUT_S = 10.0


def session_id(node_id: str) -> str:
    """A new session id of the node ``node_id``: 192 random bits, then the node's id."""
    return f"{secrets.token_urlsafe(24)}.{node_id}"


def owner_of(session: str) -> str | None:
    """The id of the node holding ``session``; None for an id no node made."""
    _, dot, node_id = session.rpartition(".")
    return node_id if dot and node_id else None


class NodeDirectory:
    """This node's record in Redis, the lookup of the others', and forwarding to them."""

    def __init__(self, redis: aioredis.Redis, keys: KeySpace, node: Node, ttl_s: float) -> None:
        self.node = node
        self._redis = redis
        self._keys = keys
        self._ttl_ms = int(ttl_s * 1000)
        self._heartbeat: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    def _key(self, node_id: str) -> str:
        return self._keys.key("media", "node", node_id)

    async def start(self) -> None:
        """Record this node (before it answers any session's POST) and keep it recorded;
        :meth:`close` stops."""
        await self._record()
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=_FORWARD_TIMEOUT_S), auto_decompress=False
        )
        self._heartbeat = asyncio.create_task(self._beat(), name="media-node-heartbeat")

    async def close(self) -> None:
        await cancel_and_wait(self._heartbeat)
        self._heartbeat = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        try:
            await self._redis.delete(self._key(self.node.id))
        except (RedisError, OSError) as exc:
            log.warning("node record not deleted (it expires): %s", exc)

    async def lookup(self, node_id: str) -> str | None:
        """The URL the node ``node_id`` is reached at, while it runs."""
        raw = await self._redis.get(self._key(node_id))
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def owner_url(self, request: web.Request) -> str | None:
        """The URL of the other node holding the session ``request`` names, to forward
        ``request`` to (never twice); None when this node answers it: its own sessions,
        and those of nodes that are gone (unknown to it, as they are now)."""
        owner = owner_of(request.match_info["session_id"])
        if owner is None or owner == self.node.id or FORWARDED_BY in request.headers:
            return None
        return await self.lookup(owner)

    def is_sibling(self, url: str, request: web.Request) -> bool:
        """Whether ``url`` is the node URL of another worker of this node's ``livecast
        serve`` (workers share one public address, and their node URLs one host), that
        ``request`` may be forwarded to."""
        if self.node.worker is None or FORWARDED_BY in request.headers:
            return False
        return URL(url).host == URL(self.node.url).host and url != self.node.url

    async def forward_to(self, request: web.Request, url: str) -> web.Response:
        """Send ``request`` to the node at ``url`` and answer what it answers."""
        assert self._http is not None, "forward_to() before start()"
        body = await read_body(request)
        headers = {
            name: request.headers[name] for name in _REQUEST_HEADERS if name in request.headers
        }
        headers[FORWARDED_BY] = self.node.id
        try:
            async with self._http.request(
                request.method, url + request.rel_url.raw_path_qs, data=body, headers=headers
            ) as resp:
                answer = await resp.read()
                kept: CIMultiDict[str] = CIMultiDict()
                for name in _RESPONSE_HEADERS:
                    for value in resp.headers.getall(name, ()):
                        kept.add(name, value)
                return web.Response(status=resp.status, body=answer, headers=kept)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("request not forwarded to the node at %s: %r", url, exc)
            raise ApiError.of(
                ErrorCode.SESSION_NODE_UNREACHABLE,
                "the node holding this session does not answer; try again",
            ) from None

    async def _record(self) -> None:
        await self._redis.set(self._key(self.node.id), self.node.url, px=self._ttl_ms)

    async def _beat(self) -> None:
        interval = self._ttl_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                await self._record()
            except (RedisError, OSError) as exc:
                log.warning("node record not refreshed: %s", exc)
            except Exception:
                log.exception("node record not refreshed")
