"""The per-node hub: one Redis subscription per stream with local viewers, and fan-out.

Each node holds one pub/sub connection. The first local viewer of a stream subscribes
its channel (and waits for Redis to confirm, so the snapshot read after it cannot miss
an event); the last one to leave unsubscribes it.

Fan-out is flat. Each event is decoded once; its frame is built at most once per
subprotocol (a server frame is unmasked, so header and payload are the same bytes for
every socket; the msgpack frame reuses the published bytes as they came from Redis); then
the same bytes object is written to every local socket's transport. Events that arrive
from Redis together (already read, waiting to be parsed) go out as one batch: their
frames are concatenated once and each socket gets one write for all of them, so under
load the send calls per socket fall instead of piling up, while an event on an idle
stream is still sent at once. There is no task or queue per socket: the transport's own
send buffer is the queue, bounded by ``chat.max_send_buffer_bytes``; a viewer whose
buffer is past that is dropped with close code 1013 and recovers from its last offset
when it reconnects. Nothing on this path calls Redis.

permessage-deflate is off (``compress=False`` on every socket): compressing with one
zlib context per socket would cost a deflate per event per socket and break the "same
bytes to every socket" rule, while chat events are short (tens to hundreds of bytes) and
gain little from it.

The hub also owns the two per-node timers: like coalescing (taps are summed per stream
and flushed as one delta every ``like_flush_interval_s``) and presence (this node's
viewer count per stream, refreshed every ``presence_interval_s`` and expiring after
``presence_ttl_s`` if the node dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from livecast.aio import cancel_and_wait
from livecast.chat._keys import LiveKeys
from livecast.chat.wire import encode_event, parse_offset, ws_frame
from livecast.config import ChatSettings
from livecast.error_codes import CloseCode
from livecast.events import Event, EventPublisher
from livecast.redisdb import KeySpace, load_lua

__all__ = ["HOST_ONLY_EVENTS", "Hub", "Viewer"]

log = logging.getLogger(__name__)

_HERE = Path(__file__).parent
_decode_event = msgspec.msgpack.Decoder().decode
_encode_json = msgspec.json.Encoder().encode

# Events only a stream's hosts receive: sales numbers are the seller's business.
HOST_ONLY_EVENTS = frozenset({"stats"})

# Events a viewer may accumulate while its hello is being prepared.
_MAX_PENDING = 10_000


class Viewer:
    """One local socket. Until :meth:`Hub.go_live` it buffers events in ``pending``."""

    __slots__ = (
        "binary",
        "dropped",
        "floor",
        "host",
        "pending",
        "ready",
        "stream_id",
        "transport",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        stream_id: str,
        *,
        binary: bool,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.stream_id = stream_id
        self.binary = binary
        # Hosts also get the host-only events (live sales numbers).
        self.host = False
        self.ready = False
        self.dropped = False
        self.pending: list[tuple[str | None, bytes]] = []
        # Offset of the newest chat event the hello (or replay) already held; events at or
        # before it that were still on their way from Redis are skipped. Cleared by the
        # first newer one, since pub/sub delivers offsets in order.
        self.floor: tuple[int, int] | None = None

    def send_event(self, event: Event) -> None:
        """Send one event to this socket only (hello, errors, acks)."""
        self.write(ws_frame(encode_event(event, binary=self.binary), binary=self.binary))

    def write(self, frame: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(frame)


class _LocalStream:
    __slots__ = (
        "batch", "channel", "flush_scheduled", "keys", "stream_id", "subscribed", "viewers",
    )  # fmt: skip

    def __init__(self, stream_id: str, channel: bytes, keys: LiveKeys) -> None:
        self.stream_id = stream_id
        self.channel = channel
        self.keys = keys
        self.viewers: dict[Viewer, None] = {}
        self.batch: list[bytes] = []
        self.flush_scheduled = False
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class Hub:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        events: EventPublisher,
        settings: ChatSettings,
        *,
        node_id: str,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._events = events
        self._settings = settings
        self.node_id = node_id
        self._streams: dict[str, _LocalStream] = {}
        self._by_channel: dict[bytes, _LocalStream] = {}
        self._pending_subs: dict[bytes, int] = {}
        self._pubsub: Any = None
        self._node_channel = keys.key("node", node_id)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._likes: dict[str, int] = {}
        self._presence_dirty: set[str] = set()
        self._likes_script = load_lua(redis, _HERE / "likes.lua")
        self._presence_script = load_lua(redis, _HERE / "presence.lua")
        self._limit = settings.max_send_buffer_bytes
        self._loop = asyncio.get_running_loop()
        self.dropped_viewers = 0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self._open_pubsub()
        self._reader = asyncio.create_task(self._read_loop(), name="chat-hub-reader")
        self._ticker = asyncio.create_task(self._tick_loop(), name="chat-hub-ticker")

    async def close_sockets(
        self, code: CloseCode = CloseCode.GOING_AWAY, message: bytes = b""
    ) -> None:
        """Close every local socket (at shutdown: 1001)."""
        viewers = [v for local in self._streams.values() for v in local.viewers]
        await asyncio.gather(
            *(v.ws.close(code=code, message=message) for v in viewers), return_exceptions=True
        )

    async def stop(self) -> None:
        await cancel_and_wait(self._reader, self._ticker, *self._tasks)
        # Leave no counts behind: this node's viewers are gone now, not in presence_ttl_s.
        gone = set(self._streams) | self._presence_dirty
        self._streams.clear()
        with contextlib.suppress(RedisError, OSError):
            await self._flush_likes()
            await self._refresh_presence(gone)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()

    # -- viewers ---------------------------------------------------------------------

    async def join(self, viewer: Viewer) -> None:
        """Add a (not yet ready) viewer; return once its stream's channel is subscribed."""
        if self._pubsub is None:
            raise ConnectionError("live events are reconnecting to Redis")
        local = self._streams.get(viewer.stream_id)
        if local is None:
            channel = self._events.channel(viewer.stream_id).encode()
            local = _LocalStream(viewer.stream_id, channel, LiveKeys(self._keys, viewer.stream_id))
            self._streams[viewer.stream_id] = local
            self._by_channel[channel] = local
            self._pending_subs[channel] = self._pending_subs.get(channel, 0) + 1
            try:
                await self._pubsub.subscribe(channel)
            except BaseException as exc:
                self._forget(local)
                if not local.subscribed.done():
                    local.subscribed.set_exception(exc)
                raise
        local.viewers[viewer] = None
        self._presence_dirty.add(viewer.stream_id)
        await asyncio.shield(local.subscribed)

    def go_live(self, viewer: Viewer, after_offset: str | None) -> None:
        """Send what arrived while the hello was prepared, then stream events directly.

        Buffered events with an offset at or before ``after_offset`` were already in the
        hello or the replay and are skipped; events without one describe current state
        and are replayed in order. The hello is read from Redis after the subscription,
        so an event it holds may still be on its way here: until a newer offset arrives,
        :meth:`_fan_out` keeps skipping those for this viewer.
        """
        floor = parse_offset(after_offset) if after_offset else None
        frames, viewer.floor, _ = _skip_held(floor, viewer.pending)
        for frame in frames:
            viewer.write(frame)
        viewer.pending = []
        viewer.ready = True

    def leave(self, viewer: Viewer) -> None:
        local = self._streams.get(viewer.stream_id)
        if local is None or viewer not in local.viewers:
            return
        del local.viewers[viewer]
        self._presence_dirty.add(viewer.stream_id)
        if not local.viewers:
            self._forget(local)
            self._spawn(self._unsubscribe(local.channel))

    def _forget(self, local: _LocalStream) -> None:
        if self._streams.get(local.stream_id) is local:
            del self._streams[local.stream_id]
            del self._by_channel[local.channel]

    async def _unsubscribe(self, channel: bytes) -> None:
        if channel in self._by_channel or self._pubsub is None:
            return
        try:
            await self._pubsub.unsubscribe(channel)
        except (RedisError, OSError) as exc:
            log.warning("unsubscribe from %r failed: %s", channel, exc)

    def viewer_count(self, stream_id: str) -> int:
        """Viewers of the stream on this node."""
        local = self._streams.get(stream_id)
        return len(local.viewers) if local else 0

    def add_likes(self, stream_id: str, count: int) -> None:
        self._likes[stream_id] = self._likes.get(stream_id, 0) + count

    def drop(
        self, viewer: Viewer, code: CloseCode = CloseCode.TRY_AGAIN_LATER, message: bytes = b""
    ) -> None:
        """Stop sending to a viewer and close its socket in the background."""
        if viewer.dropped:
            return
        viewer.dropped = True
        self.leave(viewer)
        self._spawn(viewer.ws.close(code=code, message=message))

    # -- fan-out ---------------------------------------------------------------------

    def _enqueue(self, local: _LocalStream, payload: bytes) -> None:
        """Queue an event; the batch is fanned out once the reader has drained Redis."""
        local.batch.append(payload)
        if not local.flush_scheduled:
            local.flush_scheduled = True
            self._loop.call_soon(self._fan_out, local)

    def _fan_out(self, local: _LocalStream) -> None:
        """Write the queued events to every local socket: one write per socket per batch.

        Events that reached the reader together (all of Redis' reply bytes already read)
        leave as one ``write`` of the concatenated frames, so under load the number of
        send calls per socket falls while an idle stream still sends each event at once.
        """
        local.flush_scheduled = False
        payloads, local.batch = local.batch, []
        if not local.viewers:
            return
        events: list[dict[str, Any]] = []
        raw: list[bytes] = []
        for payload in payloads:
            try:
                events.append(_decode_event(payload))
                raw.append(payload)
            except (msgspec.DecodeError, TypeError, ValueError):
                log.exception("undeliverable event on %r", local.channel)
        if any(e.get("type") in HOST_ONLY_EVENTS for e in events):
            for_hosts = [i for i, e in enumerate(events) if e.get("type") in HOST_ONLY_EVENTS]
            self._send_to_hosts(local, [events[i] for i in for_hosts], [raw[i] for i in for_hosts])
            events = [e for e in events if e.get("type") not in HOST_ONLY_EVENTS]
            raw = [p for i, p in enumerate(raw) if i not in for_hosts]
        if not events:
            return
        json_frames: list[bytes] | None = None
        msgpack_frames: list[bytes] | None = None
        json_blob = msgpack_blob = b""
        # Chat events' offsets, for viewers still skipping what their hello held.
        offsets = [e.get("offset") for e in events]
        limit = self._limit
        behind: list[Viewer] | None = None
        for viewer in local.viewers:
            if viewer.binary:
                if msgpack_frames is None:
                    msgpack_frames = [ws_frame(p, binary=True) for p in raw]
                    msgpack_blob = b"".join(msgpack_frames)
                frames, blob = msgpack_frames, msgpack_blob
            else:
                if json_frames is None:
                    json_frames = [ws_frame(_encode_json(e), binary=False) for e in events]
                    json_blob = b"".join(json_frames)
                frames, blob = json_frames, json_blob
            if not viewer.ready:
                viewer.pending.extend(zip(offsets, frames, strict=True))
                if len(viewer.pending) > _MAX_PENDING:
                    behind = behind or []
                    behind.append(viewer)
                continue
            transport = viewer.transport
            if transport.get_write_buffer_size() > limit or transport.is_closing():
                behind = behind or []
                behind.append(viewer)
                continue
            if viewer.floor is not None:
                pairs = zip(offsets, frames, strict=True)
                kept, viewer.floor, skipped = _skip_held(viewer.floor, pairs)
                if skipped:
                    blob = b"".join(kept)
            transport.write(blob)
        if behind:
            for viewer in behind:
                self.dropped_viewers += 1
                self.drop(
                    viewer, CloseCode.TRY_AGAIN_LATER, b"too far behind; reconnect to recover"
                )

    def _send_to_hosts(
        self, local: _LocalStream, events: list[dict[str, Any]], raw: list[bytes]
    ) -> None:
        """Host-only events (periodic numbers): to ready host sockets with room, else skipped;
        the next one follows in a few seconds."""
        json_blob: bytes | None = None
        msgpack_blob: bytes | None = None
        for viewer in local.viewers:
            if not viewer.host or not viewer.ready:
                continue
            transport = viewer.transport
            if transport.is_closing() or transport.get_write_buffer_size() > self._limit:
                continue
            if viewer.binary:
                if msgpack_blob is None:
                    msgpack_blob = b"".join(ws_frame(p, binary=True) for p in raw)
                transport.write(msgpack_blob)
            else:
                if json_blob is None:
                    json_blob = b"".join(ws_frame(_encode_json(e), binary=False) for e in events)
                transport.write(json_blob)

    # -- pub/sub ---------------------------------------------------------------------

    async def _open_pubsub(self) -> None:
        pubsub: Any = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._node_channel)
        except BaseException:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
            raise
        self._pubsub = pubsub

    async def _read_loop(self) -> None:
        while True:
            try:
                await self._read_messages()
            except (RedisError, OSError) as exc:
                log.warning("live events subscription lost (%s); closing local sockets", exc)
            await self._reset_after_failure()

    async def _read_messages(self) -> None:
        pubsub = self._pubsub
        by_channel = self._by_channel
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                local = by_channel.get(message["channel"])
                if local is not None:
                    self._enqueue(local, message["data"])
            elif kind == "subscribe":
                self._confirm(message["channel"])

    def _confirm(self, channel: bytes) -> None:
        left = self._pending_subs.get(channel, 0) - 1
        if left > 0:
            self._pending_subs[channel] = left
            return
        self._pending_subs.pop(channel, None)
        local = self._by_channel.get(channel)
        if local is not None and not local.subscribed.done():
            local.subscribed.set_result(None)

    async def _reset_after_failure(self) -> None:
        """Events may have been missed: every local viewer reconnects and recovers."""
        pubsub, self._pubsub = self._pubsub, None
        streams = list(self._streams.values())
        self._streams.clear()
        self._by_channel.clear()
        self._pending_subs.clear()
        for local in streams:
            if not local.subscribed.done():
                local.subscribed.set_exception(ConnectionError("live events unavailable"))
            for viewer in local.viewers:
                viewer.dropped = True
                self._spawn(viewer.ws.close(code=CloseCode.SERVICE_RESTART, message=b"reconnect"))
        with contextlib.suppress(RedisError, OSError):
            await pubsub.aclose()
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._open_pubsub()
                return
            except (RedisError, OSError) as exc:
                log.warning("live events subscription still down: %s", exc)

    # -- likes and presence ----------------------------------------------------------

    async def _tick_loop(self) -> None:
        interval = self._settings.like_flush_interval_s
        refresh_every = self._settings.presence_interval_s
        next_refresh = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                await self._flush_likes()
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + refresh_every
                    streams = set(self._streams) | self._presence_dirty
                else:
                    streams = set(self._presence_dirty)
                self._presence_dirty.clear()
                await self._refresh_presence(streams)
            except (RedisError, OSError) as exc:
                log.warning("likes/presence flush failed: %s", exc)

    async def _flush_likes(self) -> None:
        pending, self._likes = self._likes, {}
        for stream_id, delta in pending.items():
            keys = LiveKeys(self._keys, stream_id)
            await self._likes_script(
                keys=[keys.likes], args=[delta, self._events.channel(stream_id), stream_id]
            )

    async def _refresh_presence(self, stream_ids: Iterable[str]) -> None:
        ttl_ms = int(self._settings.presence_ttl_s * 1000)
        for stream_id in stream_ids:
            keys = LiveKeys(self._keys, stream_id)
            await self._presence_script(
                keys=[keys.viewers, keys.viewers_last, keys.peak],
                args=[
                    self.node_id,
                    self.viewer_count(stream_id),
                    ttl_ms,
                    self._events.channel(stream_id),
                    stream_id,
                ],
            )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _skip_held(
    floor: tuple[int, int] | None, events: Iterable[tuple[str | None, bytes]]
) -> tuple[list[bytes], tuple[int, int] | None, bool]:
    """Drop the chat events at or before ``floor`` (the hello already held them).

    ``events`` are (offset, frame) pairs in arrival order; events without an offset are
    state and always kept. Returns the kept frames, the floor still in force (None once
    an event at or past it has arrived: pub/sub delivers offsets in order, so nothing
    older follows) and whether anything was skipped.
    """
    kept: list[bytes] = []
    skipped = False
    for offset, frame in events:
        if floor is not None and offset is not None:
            key = parse_offset(offset)
            if key <= floor:
                skipped = True
                if key == floor:
                    floor = None
                continue
            floor = None
        kept.append(frame)
    return kept, floor, skipped
