"""The one small API through which every capability tells viewers that something changed.

An event is an :class:`Event`: ``{"type": str, "stream": str, "data": {...}}``, a
:class:`msgspec.Struct` tagged by ``type``. Each capability declares the events it sends
beside the code that sends them (``PinSet`` in :mod:`livecast.inventory.pins`, ...);
:mod:`livecast.asyncapi` lists them all and describes them in the AsyncAPI document. An
event is encoded once with msgpack and published on the stream's channel; each node's
live-events hub decodes it once and fans it out to its local sockets.

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
Documents are Structs too (the pin slot holds a ``PinCard``, a deal slot a ``Deal``), so
documents and event data are maps of plain values (str, int, bool, None, lists, maps;
money as ``{"amount_minor", "currency"}``), the same in JSON and msgpack. Only chat
events carry offsets and are replayed after a reconnect; for everything else a
reconnecting viewer relies on the hello, so the state hash must be complete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec
import redis.asyncio as aioredis

from livecast.redisdb import KeySpace

__all__ = ["AlsoInTransaction", "Event", "EventPublisher"]

_encode = msgspec.msgpack.Encoder().encode

# Commands queued on the same MULTI as an event (the stream's timeline entry, say): they
# apply with the event or not at all. Their keys share the stream's ``{<id>}`` hash tag.
AlsoInTransaction = Callable[[Any], object]


class Event(
    msgspec.Struct, tag_field="type", frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """A server event: ``{"type": <tag>, "stream": <stream id>, "data": {...}}``.

    A subclass names its ``tag`` and declares ``data``; the events a client can miss and
    recover after a reconnect (chat entries) also carry ``offset``.
    """

    stream: Annotated[str, msgspec.Meta(description="The id of the stream it happened on.")]


class EventPublisher:
    def __init__(self, redis: aioredis.Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys

    def channel(self, stream_id: str) -> str:
        return self._keys.key("events", stream_id)

    def state_key(self, stream_id: str) -> str:
        """The hash of current-state documents the hello snapshot reads (see module doc)."""
        return self._keys.key("live", "{" + stream_id + "}", "state")

    async def publish(self, event: Event, *, also: AlsoInTransaction | None = None) -> None:
        """Tell every viewer of the event's stream, on every node, that it happened (with
        ``also``'s commands, in one MULTI)."""
        if also is None:
            await self._redis.publish(self.channel(event.stream), _encode(event))
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.publish(self.channel(event.stream), _encode(event))
            also(pipe)
            await pipe.execute()

    async def set_state(
        self,
        slot: str,
        document: msgspec.Struct,
        event: Event,
        *,
        also: AlsoInTransaction | None = None,
    ) -> None:
        """Store ``document`` as the current ``slot`` of the event's stream and publish
        ``event`` (and run ``also``'s commands), in one MULTI, so a viewer's snapshot is
        never older than an event it missed."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.state_key(event.stream), slot, _encode(document))
            pipe.publish(self.channel(event.stream), _encode(event))
            if also is not None:
                also(pipe)
            await pipe.execute()

    async def clear_state(
        self, slot: str, event: Event, *, also: AlsoInTransaction | None = None
    ) -> None:
        """Delete the current ``slot`` document of the event's stream and publish
        ``event`` (and run ``also``'s commands), in one MULTI."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.state_key(event.stream), slot)
            pipe.publish(self.channel(event.stream), _encode(event))
            if also is not None:
                also(pipe)
            await pipe.execute()

    async def drop_state(self, stream_id: str, slot: str) -> None:
        """Delete the current ``slot`` document without an event (it was already sent)."""
        await self._redis.hdel(self.state_key(stream_id), slot)
