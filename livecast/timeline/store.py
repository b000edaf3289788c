"""A stream's commerce timeline: what the host did, and where on the video it happened.

Media time
----------
Every commerce event (a pin, an unpin, a deal's start, numbers and end, a SKU's stock,
the start and end of an auction, poll, giveaway, group buy or knock-down, and a group
buy's or knock-down's updates) carries ``media_time_ms``: the program date time (Unix ms)
of the video that was live when it happened, the same clock as the
``EXT-X-PROGRAM-DATE-TIME`` of the LL-HLS playlist. The packager stamps each segment with
the wall-clock arrival of its first frame at the node that packages it; an action may be
handled by any node, so its media time is read from the one clock every node shares, the
Redis server's (``TIME``, :meth:`Timeline.media_now`). The two agree as far as the
servers' clocks do: **the nodes and Redis keep their clocks synchronised (NTP)**, as any
deployment of several nodes already must for tokens and deal countdowns; a skew of
*d* ms shows as a card *d* ms early or late on HLS players. What happens at a set time
rather than at a host's click (a deal or auction ending at its end time, handled by the
sweeper a moment later) has that time as its media time. A stream with no media (no
node is its origin: before the publisher comes, or a chat-only pre-show) has
``media_time_ms`` null.

The stored timeline
-------------------
Each such event is also appended, in the same MULTI that publishes it, to the stream's
timeline (a group buy's or knock-down's updates only when its price changed): a Redis
stream ``<prefix>live:{<id>}:timeline`` (under the stream's hash tag, beside its chat
and state), each entry one msgpack :class:`Moment` under field ``e``. The
entry's id is the Redis stream id (``<server ms>-<seq>``): ordered, unique, and the
cursor to read on from. It holds ``timeline.max_entries`` entries (the oldest go first)
and, with ``timeline.retention_s``, expires that long after its last entry; otherwise it
is kept like the stream's other live keys. Any node reads it, after any restart.

API (``app[TIMELINE]``, :class:`Timeline`)::

    media = await timeline.media_now(stream_id)          # int ms, or None: no media
    await events.set_state(slot, doc, event, also=timeline.appending(stream_id, moment))
    await timeline.append(stream_id, moment)             # alone, outside an event's MULTI
    await timeline.entries(stream_id, since="1733480000000-0", limit=500)  # oldest first

Readers: ``GET /api/streams/{id}/timeline`` (:mod:`livecast.timeline.api`), the LL-HLS
packager's ``EXT-X-DATERANGE`` tags (:mod:`livecast.hls.dateranges`), and replay and clips,
which cut the video where its entries say.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Final

import msgspec
import redis.asyncio as aioredis

from livecast.redisdb import KeySpace

__all__ = [
    "MediaTimeMs",
    "Moment",
    "MomentKind",
    "ShownPrice",
    "Timeline",
    "TimelineEntry",
    "is_entry_id",
]

MediaTimeMs = Annotated[
    int | None,
    msgspec.Meta(
        description="Where on the stream's video it happened: the program date time (Unix "
        "ms) of the picture that was live then, as in the LL-HLS playlist's "
        "EXT-X-PROGRAM-DATE-TIME; null when the stream had no media."
    ),
]

_ENTRY_ID: Final = re.compile(r"[0-9]{1,15}(-[0-9]{1,15})?")
_FIELD: Final = b"e"


def is_entry_id(value: str) -> bool:
    """Whether ``value`` is a timeline cursor: ``<ms>-<seq>`` or ``<ms>``."""
    return _ENTRY_ID.fullmatch(value) is not None


class MomentKind(StrEnum):
    """What happened: the ``type`` of the live event it was announced with."""

    PIN_SET = "pin.set"
    PIN_CLEARED = "pin.cleared"
    DEAL_STARTED = "deal.started"
    DEAL_UPDATED = "deal.updated"
    DEAL_ENDED = "deal.ended"
    STOCK = "stock"
    AUCTION_STARTED = "auction.started"
    AUCTION_ENDED = "auction.ended"
    AUCTION_CANCELLED = "auction.cancelled"
    POLL_STARTED = "poll.started"
    POLL_CLOSED = "poll.closed"
    POLL_CANCELLED = "poll.cancelled"
    GIVEAWAY_STARTED = "giveaway.started"
    GIVEAWAY_DRAWN = "giveaway.drawn"
    GIVEAWAY_CANCELLED = "giveaway.cancelled"
    GROUPBUY_STARTED = "groupbuy.started"
    GROUPBUY_UPDATED = "groupbuy.updated"
    GROUPBUY_ENDED = "groupbuy.ended"
    KNOCKDOWN_STARTED = "knockdown.started"
    KNOCKDOWN_UPDATED = "knockdown.updated"
    KNOCKDOWN_ENDED = "knockdown.ended"


class ShownPrice(msgspec.Struct, frozen=True, kw_only=True):
    """A price as the card showed it (the shape of ``Money``)."""

    amount_minor: int
    currency: str


class Moment(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One thing that happened on a stream, as its timeline keeps it."""

    kind: MomentKind
    media_time_ms: MediaTimeMs
    sku: str | None = None
    deal_id: str | None = None
    auction_id: str | None = None
    title: Annotated[
        str | None, msgspec.Meta(description="the product as shown; a poll's question")
    ] = None
    price: Annotated[
        ShownPrice | None,
        msgspec.Meta(
            description="the price shown: the deal's, the product's, the auction's, the "
            "group buy's or knock-down's price then"
        ),
    ] = None
    left: Annotated[int | None, msgspec.Meta(description="units left (stock, deals)")] = None
    sold_out: bool | None = None
    poll_id: str | None = None
    giveaway_id: str | None = None
    groupbuy_id: str | None = None
    knockdown_id: str | None = None
    state: Annotated[
        str | None,
        msgspec.Meta(
            description="how a selling format ended: closed, drawn, no_entries, capturing, "
            "voiding, sold_out, ended, cancelled"
        ),
    ] = None


class TimelineEntry(Moment, frozen=True, kw_only=True):
    """A :class:`Moment` as stored: ``id`` orders entries and is the ``since`` cursor;
    ``at_ms`` is when it was recorded (the Redis server's clock)."""

    id: str
    at_ms: int


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Moment).decode


class Timeline:
    """Stamps commerce events with media time and keeps each stream's timeline."""

    def __init__(
        self, redis: aioredis.Redis, keys: KeySpace, *, max_entries: int, retention_s: float
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.max_entries = max_entries
        self._retention_ms = round(retention_s * 1000)

    def key(self, stream_id: str) -> str:
        return self._keys.key("live", "{" + stream_id + "}", "timeline")

    def _origin_key(self, stream_id: str) -> str:
        # the origin claim of livecast.ingest.origin.OriginRegistry: present while a node
        # holds the stream's media (its publisher, or waiting for it to come back)
        return self._keys.key("media", "origin", stream_id)

    async def media_now(self, stream_id: str, *, at_ms: int | None = None) -> int | None:
        """The stream's media time now (the Redis server's clock, in ms), or at ``at_ms``
        (something due at a set time); None if the stream has no media."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.exists(self._origin_key(stream_id))
            (seconds, micros), has_media = await pipe.execute()
        if not has_media:
            return None
        return at_ms if at_ms is not None else int(seconds) * 1000 + int(micros) // 1000

    def appending(self, stream_id: str, moment: Moment) -> Callable[[Any], object]:
        """Queue the append of ``moment`` on a pipeline (the event's MULTI: ``also=``)."""

        def queue(pipe: Any) -> None:
            key = self.key(stream_id)
            pipe.xadd(key, {_FIELD: _encode(moment)}, maxlen=self.max_entries, approximate=False)
            if self._retention_ms:
                pipe.pexpire(key, self._retention_ms)

        return queue

    async def append(self, stream_id: str, moment: Moment) -> None:
        """Append ``moment`` to the stream's timeline on its own."""
        async with self._redis.pipeline(transaction=True) as pipe:
            self.appending(stream_id, moment)(pipe)
            await pipe.execute()

    async def entries(
        self, stream_id: str, *, since: str | None = None, limit: int = 1000
    ) -> list[TimelineEntry]:
        """Up to ``limit`` entries, oldest first: after entry ``since`` (an id), or from
        the time ``since`` on (ms, no ``-``: those recorded then or later), or from the
        oldest kept."""
        if since is None:
            start = "-"
        elif "-" in since:
            start = "(" + since
        else:
            start = since + "-0"
        rows: Any = await self._redis.xrange(self.key(stream_id), start, "+", count=limit)
        return [_entry(raw_id, fields) for raw_id, fields in rows or ()]


def _entry(raw_id: bytes | str, fields: dict[Any, Any]) -> TimelineEntry:
    entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
    moment = _decode(fields[_FIELD])
    return TimelineEntry(
        **msgspec.structs.asdict(moment), id=entry_id, at_ms=int(entry_id.partition("-")[0])
    )
