"""Which node is a stream's origin: the record in Redis that makes one publisher per
stream hold across nodes.

The node that accepts a WHIP publisher claims the stream (``SET NX PX`` through
``origin_claim.lua``) with a record of its node id and the URL other nodes reach it at,
and keeps it while it is the origin: while the publisher is connected and through the
reconnect grace, so a publisher that comes back to the same node keeps the stream. A
heartbeat (:meth:`OriginRegistry.heartbeat`, owned by the app) refreshes every claim of
this node every third of ``webrtc.origin_ttl_s``; a node that dies stops refreshing and
its claims expire after that TTL, after which the stream may go live through another
node. Refreshing and releasing compare the record first (``origin_claim.lua``,
``origin_release.lua``), so a node only ever extends or deletes its own claim. Claims and
releases of one stream on this node run one at a time (:meth:`OriginRegistry.exclusive`),
so a release decided earlier cannot undo a claim made since.

Nodes that are not a stream's origin read the record to find where to pull the stream's
media from (:mod:`livecast.ingest.edge`).

An origin that accepts a publisher also notes when the stream last had an origin
(:meth:`OriginRegistry.note_published`, ``origin_seen.lua``, in Redis's clock, kept a
day past the reconnect grace), and its heartbeat renews the note with the claim. A live
stream with that note but no record had its origin die (or let go at shutdown) and no
publisher has come back since; a live stream without it never had a publisher (made
live through the REST API for a chat-only pre-show, or its encoder refused).
:meth:`OriginRegistry.orphaned` finds the first kind once the grace is over, so any node
can end them (:meth:`~livecast.ingest.publisher.PublisherSide.watchdog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from livecast.aio import cancel_and_wait
from livecast.redisdb import KeySpace, load_lua

__all__ = ["Origin", "OriginRegistry"]

log = logging.getLogger(__name__)

_HERE = Path(__file__).parent
# How long past the reconnect grace a stream's last origin stays noted: a deployment
# down for longer than this as a whole forgets which of its live streams had an origin.
_SEEN_KEPT_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Origin:
    """A node as other nodes see it: its id and the base URL they reach it at."""

    node_id: str
    url: str

    def record(self) -> str:
        return json.dumps({"node": self.node_id, "url": self.url}, separators=(",", ":"))

    @classmethod
    def from_record(cls, raw: bytes | str) -> Origin:
        data = json.loads(raw)
        return cls(node_id=str(data["node"]), url=str(data["url"]))


class OriginRegistry:
    """This node's origin claims, and the lookup of other nodes' claims."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        node: Origin,
        ttl_s: float,
        grace_s: float = 0.0,
    ) -> None:
        self.node = node
        self.claimed: set[str] = set()  # streams this node is the origin of
        self._redis = redis
        self._keys = keys
        self._record = node.record()
        self._ttl_ms = int(ttl_s * 1000)
        self._seen_ttl_ms = int((ttl_s + grace_s + _SEEN_KEPT_S) * 1000)
        self._claim = load_lua(redis, _HERE / "origin_claim.lua")
        self._release = load_lua(redis, _HERE / "origin_release.lua")
        self._seen = load_lua(redis, _HERE / "origin_seen.lua")
        self._heartbeat: asyncio.Task[None] | None = None
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # stream -> lock, its users

    def _key(self, stream_id: str) -> str:
        return self._keys.key("media", "origin", stream_id)

    def _seen_key(self, stream_id: str) -> str:
        return self._keys.key("media", "origin_seen", stream_id)

    @contextlib.asynccontextmanager
    async def exclusive(self, stream_id: str) -> AsyncIterator[None]:
        """Hold the stream's claim/release lock on this node: decide and claim, or
        re-check and release, inside it."""
        lock, users = self._locks.get(stream_id, (asyncio.Lock(), 0))
        self._locks[stream_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[stream_id]
            if users == 1:
                del self._locks[stream_id]
            else:
                self._locks[stream_id] = (lock, users - 1)

    async def claim(self, stream_id: str) -> Origin | None:
        """Make this node the stream's origin; the node that already is, if another.
        Call inside :meth:`exclusive`."""
        holder = await self._claim(keys=[self._key(stream_id)], args=[self._record, self._ttl_ms])
        if holder is not None:
            return Origin.from_record(holder)
        self.claimed.add(stream_id)
        return None

    async def release(self, stream_id: str) -> None:
        """This node is no longer the stream's origin (its record goes, if still its).
        Call inside :meth:`exclusive`, after checking the claim is no longer needed."""
        self.claimed.discard(stream_id)
        await self._release(keys=[self._key(stream_id)], args=[self._record])

    async def note_published(self, stream_id: str) -> None:
        """This node accepted a publisher of the stream (it holds the claim): from now
        on, a stream without an origin record is one whose origin went away. The
        heartbeat keeps the note fresh while the claim lasts."""
        await self._seen(keys=[self._seen_key(stream_id)], args=[self._seen_ttl_ms, ""])

    async def lookup(self, stream_id: str) -> Origin | None:
        """The stream's origin node, if any node has a live claim."""
        raw = await self._redis.get(self._key(stream_id))
        return None if raw is None else Origin.from_record(raw)

    async def orphaned(self, stream_ids: Iterable[str], grace_s: float) -> dict[str, float]:
        """Of ``stream_ids``, those noted as published that have no origin now, and
        have had none for longer than the claim's TTL plus ``grace_s`` (the record
        expires after the TTL; the grace counts from then): how many seconds since an
        origin last answered for each. A stream never published is never one of them."""
        ids = list(stream_ids)
        if not ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for stream_id in ids:
                pipe.exists(self._key(stream_id))
                pipe.get(self._seen_key(stream_id))
            (seconds, micros), *replies = await pipe.execute()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        over_s = self._ttl_ms / 1000 + grace_s
        orphans: dict[str, float] = {}
        for stream_id, has_origin, seen in zip(ids, replies[::2], replies[1::2], strict=True):
            if has_origin or seen is None:
                continue
            away_s = (now_ms - int(seen)) / 1000
            if away_s > over_s:
                orphans[stream_id] = away_s
        return orphans

    def start(self, on_lost: Callable[[str], None]) -> None:
        """Start the heartbeat; :meth:`close` stops it."""
        self._heartbeat = asyncio.create_task(self._beat(on_lost), name="media-origin-heartbeat")

    async def close(self) -> None:
        """Stop the heartbeat and give up every claim (clean shutdown), so publishers
        may go live through another node at once."""
        await cancel_and_wait(self._heartbeat)
        self._heartbeat = None
        for stream_id in list(self.claimed):
            try:
                await self.release(stream_id)
            except (RedisError, OSError) as exc:
                log.warning("stream %s: origin claim not released: %s", stream_id, exc)

    async def _beat(self, on_lost: Callable[[str], None]) -> None:
        """Refresh this node's claims every third of the TTL, all in one pipeline, each
        beat starting a third of the TTL after the last one started.

        A claim found held by another node (this node was cut off from Redis for longer
        than the TTL and the stream went live elsewhere) is dropped, and
        ``on_lost(stream_id)`` lets the caller give the stream up. Every failure is
        logged; the heartbeat only stops when cancelled.
        """
        loop = asyncio.get_running_loop()
        interval = self._ttl_ms / 3000
        beat_at = loop.time()
        while True:
            beat_at = max(beat_at + interval, loop.time())
            await asyncio.sleep(beat_at - loop.time())
            try:
                await self._refresh(on_lost)
            except (RedisError, OSError) as exc:
                log.warning("origin claims not refreshed: %s", exc)
            except Exception:
                log.exception("origin claims not refreshed")

    async def _refresh(self, on_lost: Callable[[str], None]) -> None:
        claimed = list(self.claimed)
        if not claimed:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id in claimed:
                await self._claim(
                    keys=[self._key(stream_id)], args=[self._record, self._ttl_ms], client=pipe
                )
            for stream_id in claimed:
                await self._seen(
                    keys=[self._seen_key(stream_id)],
                    args=[self._seen_ttl_ms, "refresh"],
                    client=pipe,
                )
            replies = await pipe.execute(raise_on_error=False)
        holders = replies[: len(claimed)]
        for stream_id, holder in zip(claimed, holders, strict=True):
            if isinstance(holder, Exception):
                log.warning("stream %s: origin claim not refreshed: %s", stream_id, holder)
            elif holder is None and stream_id not in self.claimed:
                # released while this refresh ran: leave no record behind
                await self._release(keys=[self._key(stream_id)], args=[self._record])
            elif holder is not None and stream_id in self.claimed:
                self.claimed.discard(stream_id)
                holder_id = Origin.from_record(holder).node_id
                log.warning("stream %s: origin claim lost to node %s", stream_id, holder_id)
                on_lost(stream_id)
