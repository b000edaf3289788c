"""Flash deals: a price, a quantity carved out of a SKU's stock, a countdown, a per-buyer
limit, on a live stream.

Starting a deal moves its quantity out of the SKU's free stock and puts the deal on the
SKU's own deal schedule (``{sku:S}:deals``) in one script (``deal_start.lua``); buyers
reserve from it with ``reserve(..., deal_id=...)``, which also checks its window and
limit; ending it (early, at its end time, or when its stream ends) returns what is neither
held nor sold (``deal_end.lua``). Only the call that actually ends a deal gets ``ended_now``
(:meth:`Deals.end_due` answers it), so exactly one node announces and counts it.

The indexes below live outside the SKU's hash tag, so they are written after the carve and
a crash in between can leave a deal out of them. Nothing is lost: the sweeper ends deals
from the SKU's schedule (``expire.lua`` reports the due ones; a full sweep walks every
SKU), repairs the deal's entries in ``deals:sku`` and its stream's list as it ends it, and
drops ``deals:due`` entries the index cannot resolve.

Keys besides the per-SKU ones of :mod:`livecast.inventory.reserve`::

    <prefix>deals:sku                   hash: deal id -> SKU
    <prefix>deals:due                   sorted set: active deal ids by end time (ms); the
                                        sweeper's fast path, not its source of truth
    <prefix>stream:<id>:deals           sorted set: a stream's deal ids by start time
    <prefix>sku:<SKU>:streams           set: streams pinning the SKU or dealing it (who
                                        gets its ``stock`` events)

Events on the stream's channel (``app[EVENTS]``): :class:`DealStarted` and
:class:`DealEnded` carry the :class:`Deal`; :class:`DealUpdated` (``{id, sku, left, sold,
sold_out}``) is sent by the notifier, coalesced per node.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import msgspec
import redis.asyncio as aioredis

from livecast.error_codes import ErrorCode
from livecast.errors import NotFound
from livecast.events import Event, EventPublisher
from livecast.ids import is_sku, new_id
from livecast.inventory._private import due_ids, server_now_ms, text
from livecast.inventory.catalog import Catalog
from livecast.inventory.errors import raise_for_status
from livecast.inventory.money import Money
from livecast.inventory.reserve import Reservations
from livecast.redisdb import KeySpace, load_lua
from livecast.streams.registry import IsoTime, iso_time
from livecast.timeline import MediaTimeMs, Moment, MomentKind, ShownPrice, Timeline

__all__ = [
    "Deal",
    "DealEnded",
    "DealStarted",
    "DealState",
    "DealUpdated",
    "DealUpdatedData",
    "Deals",
]

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent


class DealState(StrEnum):
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    ENDED = "ended"


class Deal(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    stream_id: str
    sku: str
    title: str
    image_url: str | None
    price: Money
    regular_price: Money
    quantity: int
    left: int
    held: int
    sold: int
    per_buyer_limit: int
    state: DealState
    starts_at: IsoTime | None
    ends_at: IsoTime | None
    starts_at_ms: int
    ends_at_ms: int
    ended_at: IsoTime | None = None
    ended_reason: Annotated[
        str | None,
        msgspec.Meta(
            description="Who ended it: the host, its end time (also when the host or the "
            "stream's end came after that time, before the sweeper), or the end of its "
            "stream. Any deal ends, sold out or not."
        ),
    ] = None


class DealStarted(Event, tag="deal.started", frozen=True, kw_only=True):
    """A flash deal was started (it may be scheduled to open later: ``state``)."""

    data: Deal
    media_time_ms: MediaTimeMs = None


class DealEnded(Event, tag="deal.ended", frozen=True, kw_only=True):
    """A flash deal ended (``ended_reason``); what was neither held nor sold went back."""

    data: Deal
    media_time_ms: MediaTimeMs = None


class DealUpdatedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The deal's units ``left`` and ``sold`` now."""

    id: str
    sku: str
    left: int
    sold: int
    sold_out: bool


class DealUpdated(Event, tag="deal.updated", frozen=True, kw_only=True):
    """A deal's numbers changed (coalesced: a few times a second at most)."""

    data: DealUpdatedData
    media_time_ms: MediaTimeMs = None


def deal_moment(kind: MomentKind, deal: Deal, media_time_ms: int | None) -> Moment:
    """The deal as the stream's timeline keeps it."""
    return Moment(
        kind=kind,
        media_time_ms=media_time_ms,
        sku=deal.sku,
        deal_id=deal.id,
        title=deal.title,
        price=ShownPrice(amount_minor=deal.price.amount_minor, currency=deal.price.currency),
        left=deal.left,
        sold_out=deal.left == 0,
    )


_DEAL_FIELDS = [
    "state",
    "stream",
    "quantity",
    "remaining",
    "held",
    "sold",
    "price_minor",
    "currency",
    "starts",
    "ends",
    "per_user",
    "ended",
    "end_reason",
]


class Deals:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        reservations: Reservations,
        catalog: Catalog,
        events: EventPublisher,
        timeline: Timeline,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._reservations = reservations
        self._catalog = catalog
        self._events = events
        self.timeline = timeline
        self._start = load_lua(redis, _HERE / "deal_start.lua")
        self._end = load_lua(redis, _HERE / "deal_end.lua")
        self.sku_index = keys.key("deals", "sku")
        self.due_key = keys.key("deals", "due")

    def stream_deals_key(self, stream_id: str) -> str:
        return self._keys.key("stream", stream_id, "deals")

    def watchers_key(self, sku: str) -> str:
        return self._keys.key("sku", sku, "streams")

    async def start(
        self,
        *,
        stream_id: str,
        sku: str,
        price: Money,
        quantity: int,
        duration_s: float,
        per_buyer_limit: int,
        start_in_s: float = 0,
    ) -> Deal:
        """Carve ``quantity`` out of the SKU's free stock and open the deal, ``start_in_s``
        from now for ``duration_s`` (both to the millisecond).

        The caller has checked the stream is live and the caller may manage it. Raises
        404 ``unknown_sku``, 409 ``insufficient_stock``, 422 ``currency_mismatch``.
        """
        if not is_sku(sku):
            raise_for_status("unknown_sku", sku)
        deal_id = new_id()
        reply = await self._start(
            keys=[self._reservations.base(sku)],
            args=[
                deal_id,
                stream_id,
                quantity,
                price.amount_minor,
                price.currency,
                round(start_in_s * 1000),
                round(duration_s * 1000),
                per_buyer_limit,
            ],
        )
        status = reply[0].decode()
        if status != "ok":
            details: dict[str, Any] = {"sku": sku}
            if status == "insufficient_stock":
                details["left"] = int(reply[3])
            raise_for_status(status, sku, **details)
        starts, ends = int(reply[1]), int(reply[2])
        # The deal is carved and on its SKU's schedule; these indexes (other slots) only
        # make it findable by id and by stream, and end it on time without a full sweep.
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.sku_index, deal_id, sku)
            pipe.zadd(self.due_key, {deal_id: ends})
            pipe.zadd(self.stream_deals_key(stream_id), {deal_id: starts})
            pipe.sadd(self.watchers_key(sku), stream_id)
            await pipe.execute()
        self._reservations.dirty_skus.setdefault(sku, 0)
        deal = await self.get(deal_id)
        media = await self.timeline.media_now(stream_id)
        await self._events.set_state(
            f"deal:{deal.id}",
            deal,
            DealStarted(stream=stream_id, data=deal, media_time_ms=media),
            also=self.timeline.appending(
                stream_id, deal_moment(MomentKind.DEAL_STARTED, deal, media)
            ),
        )
        return deal

    async def end(self, deal_id: str, reason: str, *, only_if_due: bool = False) -> Deal:
        """End the deal now (idempotent); announce it if this call ended it."""
        deal, _ = await self._finish(deal_id, await self._sku_of(deal_id), reason, only_if_due)
        if deal is None:
            raise_for_status("unknown_deal", deal_id)
        return deal

    async def end_for_stream(self, stream_id: str) -> int:
        """End every deal of the stream still running or scheduled (its stream ended);
        returns how many this call ended. A deal that cannot be ended is logged and the
        others are ended all the same (the sweeper tries it again)."""
        found: list[Any] = await self._redis.zrange(self.stream_deals_key(stream_id), 0, -1)
        ids = [text(i) for i in found]
        if not ids:
            return 0
        skus: list[Any] = await self._redis.hmget(self.sku_index, ids)
        ended = 0
        for deal_id, sku in zip(ids, skus, strict=True):
            if sku is None:
                continue
            try:
                _, ended_now = await self._finish(deal_id, text(sku), "stream_ended", False)
            except Exception:
                log.exception("could not end deal %s of ended stream %s", deal_id, stream_id)
                continue
            ended += ended_now
        return ended

    async def running_streams(self) -> set[str]:
        """The streams with a deal not yet ended (from ``deals:due``, which lists every
        deal started since its index was written)."""
        found: list[Any] = await self._redis.zrange(self.due_key, 0, -1)
        ids = [text(i) for i in found]
        if not ids:
            return set()
        skus: list[Any] = await self._redis.hmget(self.sku_index, ids)
        async with self._redis.pipeline(transaction=False) as pipe:
            for deal_id, sku in zip(ids, skus, strict=True):
                if sku is not None:
                    pipe.hget(self._reservations.base(text(sku)) + ":deal:" + deal_id, "stream")
            streams: list[Any] = await pipe.execute()
        return {text(stream) for stream in streams if stream is not None}

    async def end_due(self, deal_id: str, sku: str | None = None) -> bool:
        """End a deal whose time is up, as the sweeper does; True only if this call ended
        it (another node, or the host, may have ended it first).

        ``sku`` comes from the SKU's own deal schedule, written with the carve: the deal's
        ``deals:sku`` and stream entries are then restored if a crash after the carve left
        them out. Without it the deal is looked up in ``deals:sku``; an id found neither
        there nor as a deal is dropped from ``deals:due`` and left to the SKU's schedule.
        """
        repaired = False
        if sku is None:
            found = await self._redis.hget(self.sku_index, deal_id)
            if found is None:
                log.warning("deal %s is due but not indexed; left to its SKU's schedule", deal_id)
                await self._redis.zrem(self.due_key, deal_id)
                return False
            sku = text(found)
        else:
            repaired = bool(await self._redis.hsetnx(self.sku_index, deal_id, sku))
        deal, ended_now = await self._finish(deal_id, sku, "time", only_if_due=True)
        if deal is None:
            await self._redis.zrem(self.due_key, deal_id)
            if repaired:
                await self._redis.hdel(self.sku_index, deal_id)
            return False
        if repaired:
            log.warning("deal %s of %s was not indexed (a crash after its start)", deal_id, sku)
            await self._redis.zadd(
                self.stream_deals_key(deal.stream_id), {deal_id: deal.starts_at_ms}, nx=True
            )
        return ended_now

    async def _finish(
        self, deal_id: str, sku: str, reason: str, only_if_due: bool
    ) -> tuple[Deal | None, bool]:
        """Run ``deal_end.lua``; return the deal (None: no such deal) and whether this
        call ended it, and announce it if so."""
        reply = await self._end(
            keys=[self._reservations.base(sku)],
            args=[deal_id, reason, "1" if only_if_due else "0"],
        )
        status = reply[0].decode()
        if status == "unknown_deal":
            return None, False
        deal = await self._load(deal_id, sku, await self._now_ms())
        if deal is None:
            return None, False
        if status == "ok" or status == "already_ended":
            await self._redis.zrem(self.due_key, deal_id)
        if status == "ok":
            self._reservations.dirty_skus.setdefault(sku, 0)
            await self.unwatch_if_idle(sku, deal.stream_id)
            # ended at its time (the sweeper comes a moment later): that is its media time
            at = deal.ends_at_ms if reason == "time" else None
            media = await self.timeline.media_now(deal.stream_id, at_ms=at)
            await self._events.clear_state(
                f"deal:{deal.id}",
                DealEnded(stream=deal.stream_id, data=deal, media_time_ms=media),
                also=self.timeline.appending(
                    deal.stream_id, deal_moment(MomentKind.DEAL_ENDED, deal, media)
                ),
            )
        return deal, status == "ok"

    async def unwatch_if_idle(self, sku: str, stream_id: str) -> None:
        """Stop sending the SKU's stock events to the stream unless pinned or still dealt."""
        pinned = await self._redis.get(self._keys.key("stream", stream_id, "pin"))
        if pinned is not None and text(pinned) == sku:
            return
        if any(d.sku == sku for d in await self.for_stream(stream_id, active_only=True)):
            return
        await self._redis.srem(self.watchers_key(sku), stream_id)

    async def stream_of(self, deal_id: str) -> str:
        """The stream the deal runs on (fixed when it starts). 404 ``unknown_deal``."""
        sku = await self._sku_of(deal_id)
        found = await self._redis.hget(self._reservations.base(sku) + ":deal:" + deal_id, "stream")
        if found is None:
            raise NotFound(f"no deal {deal_id!r}", code=ErrorCode.UNKNOWN_DEAL)
        return text(found)

    async def _sku_of(self, deal_id: str) -> str:
        sku = await self._redis.hget(self.sku_index, deal_id) if len(deal_id) <= 64 else None
        if sku is None:
            raise NotFound(f"no deal {deal_id!r}", code=ErrorCode.UNKNOWN_DEAL)
        return text(sku)

    async def get(self, deal_id: str) -> Deal:
        sku = await self._sku_of(deal_id)
        deal = await self._load(deal_id, sku, await self._now_ms())
        if deal is None:
            raise NotFound(f"no deal {deal_id!r}", code=ErrorCode.UNKNOWN_DEAL)
        return deal

    async def _load(self, deal_id: str, sku: str, now_ms: int) -> Deal | None:
        base = self._reservations.base(sku)
        raw: list[Any] = await self._redis.hmget(base + ":deal:" + deal_id, _DEAL_FIELDS)
        if raw[0] is None:
            return None
        product = await self._catalog.find(sku)
        row = [v.decode() if isinstance(v, bytes) else v for v in raw]
        starts, ends = int(row[8]), int(row[9])
        if row[0] != "active" or now_ms >= ends:
            state = DealState.ENDED
        elif now_ms < starts:
            state = DealState.SCHEDULED
        else:
            state = DealState.ACTIVE
        currency = row[7]
        regular = product.price if product else Money(amount_minor=0, currency=currency)
        return Deal(
            id=deal_id,
            stream_id=row[1],
            sku=sku,
            title=product.title if product else sku,
            image_url=product.image_url if product else None,
            price=Money(amount_minor=int(row[6]), currency=currency),
            regular_price=regular,
            quantity=int(row[2]),
            left=int(row[3]),
            held=int(row[4]),
            sold=int(row[5]),
            per_buyer_limit=int(row[10]),
            state=state,
            starts_at=iso_time(starts),
            ends_at=iso_time(ends),
            starts_at_ms=starts,
            ends_at_ms=ends,
            ended_at=iso_time(int(row[11])) if row[11] else None,
            ended_reason=row[12] or None,
        )

    async def for_stream(self, stream_id: str, *, active_only: bool = False) -> list[Deal]:
        """The stream's deals, oldest first; ``active_only``: running or about to start."""
        found: list[Any] = await self._redis.zrange(self.stream_deals_key(stream_id), 0, -1)
        ids = [text(i) for i in found]
        if not ids:
            return []
        skus = await self._redis.hmget(self.sku_index, ids)
        now = await self._now_ms()
        deals = []
        for deal_id, sku in zip(ids, skus, strict=True):
            if sku is None:
                continue
            deal = await self._load(deal_id, text(sku), now)
            if deal is not None and (not active_only or deal.state is not DealState.ENDED):
                deals.append(deal)
        return deals

    async def due(self, now_ms: int, *, limit: int = 100) -> list[str]:
        return await due_ids(self._redis, self.due_key, now_ms, limit=limit)

    async def _now_ms(self) -> int:
        return await server_now_ms(self._redis)
