"""The one small API through which every capability tells viewers that something changed.

An event is ``{"type": str, "stream": str, "data": {...}}`` encoded once with msgpack and
published on the stream's channel; each node's live-events hub decodes it once and fans
it out to its local sockets.

Current state (the snapshot contract)
-------------------------------------
A viewer who connects gets one ``hello`` snapshot, so whatever a viewer must see on
arrival (the pinned card, running deals, stock) is also kept as *current state*: one
Redis hash per stream, ``<prefix>live:{<stream id>}:state``, mapping a *slot* name to a
msgpack document. :meth:`EventPublisher.set_state` writes a slot and publishes the event
in one MULTI, :meth:`EventPublisher.clear_state` deletes it and publishes; a viewer who
connects at any moment sees either the state before or after, and every later event.

Slots and how the hello shows them:

=================  ============================================  =====================
slot               document                                      hello field
=================  ============================================  =====================
``pin``            the pinned card                               ``pinned`` (or null)
``deal:<deal id>`` a running deal (price, stock left, ends_at)   ``deals`` (a list)
anything else      any document                                  ``state[<slot>]``
=================  ============================================  =====================

Events that only describe a change (``stock`` after a sale) should also refresh the slot
they change (the deal's ``stock_left``) through ``set_state``, so a late viewer sees it.
Documents and event data are maps of plain values (str, int, bool, None, lists, maps;
money as ``{"amount_minor", "currency"}``), the same in JSON and msgpack. Only chat
events carry offsets and are replayed after a reconnect; for everything else a
reconnecting viewer relies on the hello, so the state hash must be complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack
import redis.asyncio as aioredis

from livecast.redisdb import KeySpace

__all__ = ["EventPublisher"]


class EventPublisher:
    def __init__(self, redis: aioredis.Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys

    def channel(self, stream_id: str) -> str:
        return self._keys.key("events", stream_id)

    def state_key(self, stream_id: str) -> str:
        """The hash of current-state documents the hello snapshot reads (see module doc)."""
        return self._keys.key("live", "{" + stream_id + "}", "state")

    def _payload(self, stream_id: str, event_type: str, data: Mapping[str, Any]) -> bytes:
        payload: bytes = msgpack.packb(
            {"type": event_type, "stream": stream_id, "data": dict(data)}, use_bin_type=True
        )
        return payload

    async def publish(self, stream_id: str, event_type: str, data: Mapping[str, Any]) -> None:
        """Tell every viewer of the stream, on every node, that ``event_type`` happened."""
        await self._redis.publish(
            self.channel(stream_id), self._payload(stream_id, event_type, data)
        )

    async def set_state(
        self,
        stream_id: str,
        slot: str,
        data: Mapping[str, Any],
        *,
        event_type: str,
        event_data: Mapping[str, Any] | None = None,
    ) -> None:
        """Store ``data`` as the current ``slot`` document and publish ``event_type``.

        The event carries ``event_data`` (``data`` when not given). Both happen in one
        MULTI, so a viewer's snapshot is never older than an event it missed.
        """
        payload = self._payload(stream_id, event_type, data if event_data is None else event_data)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.state_key(stream_id), slot, msgpack.packb(dict(data), use_bin_type=True))
            pipe.publish(self.channel(stream_id), payload)
            await pipe.execute()

    async def clear_state(
        self, stream_id: str, slot: str, *, event_type: str, event_data: Mapping[str, Any]
    ) -> None:
        """Delete the current ``slot`` document and publish ``event_type``, in one MULTI."""
        payload = self._payload(stream_id, event_type, event_data)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.state_key(stream_id), slot)
            pipe.publish(self.channel(stream_id), payload)
            await pipe.execute()

    async def drop_state(self, stream_id: str, slot: str) -> None:
        """Delete the current ``slot`` document without an event (it was already sent)."""
        await self._redis.hdel(self.state_key(stream_id), slot)
