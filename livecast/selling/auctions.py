"""Auctions: one unit of a product, a starting price, a bid increment table, a clock, and
either soft close (a bid in the last N seconds moves the end N seconds later) or sudden
death (it ends at the bell).

An auction moves ``running -> sold | unsold | cancelled`` (:class:`AuctionState`), one Lua
script per move, each on the keys of the product's SKU (one hash slot):

* ``auction_start.lua``: takes one unit out of free stock (counted with flash deals'
  carves in ``deal_reserved``, so stock stays exact and the unit cannot be sold twice)
  and opens the auction;
* ``auction_bid.lua``: every bid is the buyer's maximum; the auction bids for them only
  as much as it takes to lead (proxy bidding, as eBay and Whatnot do). Scripts run one
  at a time, so bids are ordered by the server alone; on equal maximums the earlier one
  leads. Idempotent by the buyer's key: a retried bid is answered as the first time;
* ``auction_end.lua``: at the end time (any node's sweep, exactly once), or when the
  stream ends, the unit becomes the winner's cart hold at the winning price, with its
  own deadline (``pay_within_s``): the winner checks out as usual; unpaid, the hold
  expires and the unit returns to free stock. With no bid, the unit returns at once.
  The bid keys' answers are dropped a day after the end; the auction, its bid log and
  its bidders stay for the stats;
* ``auction_cancel.lua``: the host cancels before the first bid; the unit returns.

The host cannot end an auction early: sudden death ends at the bell, and a soft-close
auction when nobody bids in its last N seconds. Only the end of the stream ends it
sooner (:meth:`Auctions.end_for_stream`).

Keys besides the SKU's own (:mod:`livecast.inventory.reserve`)::

    <prefix>{sku:S}:auction:<id>          hash: the auction (state, prices, leader, clock)
    <prefix>{sku:S}:auction:<id>:log      list: every bid that moved the price, in order
                                          ("price leader at_ms ends_ms extended_ms")
    <prefix>{sku:S}:auction:<id>:bidder   hash: who bid (bidder count)
    <prefix>{sku:S}:auction:<id>:keys     hash: "<user> <key>" -> the bid's answer
                                          (expires a day after the end)
    <prefix>auctions:sku                  hash: auction id -> SKU
    <prefix>auctions:due                  sorted set: running auction ids by end time
    <prefix>stream:<id>:auction           string: the stream's latest auction id
    <prefix>stream:<id>:auctions          sorted set: the stream's auction ids by start
    <prefix>stream:<id>:auction-starting  string, for a moment: a start is under way

The two indexes are written before the start script runs (the id is made here), so a
crash between them leaves at most an index entry for an auction that never started,
which the sweeper drops; a running auction is never out of them.

Events on the stream's channel, each carrying the server's clock (``server_ms``) so that
pages show the countdown in server time: :class:`AuctionStarted`, :class:`AuctionBid`,
:class:`AuctionExtended`, :class:`AuctionEnded`, :class:`AuctionCancelled`. The running
auction is the stream's ``auction`` state slot (the hello's ``state.auction``). Its
start, end and cancellation carry ``media_time_ms`` (an end at the bell: the bell's
time) and go on the stream's timeline (:mod:`livecast.timeline`); bids are the
audience's and apply live, like stock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec
import redis.asyncio as aioredis

from livecast.cart.cart import CartEntry, CartStore
from livecast.error_codes import ErrorCode
from livecast.errors import NotFound
from livecast.events import EventPublisher
from livecast.ids import is_sku, new_id
from livecast.inventory._private import due_ids, read_row, server_now_ms, text
from livecast.inventory.catalog import Catalog
from livecast.inventory.errors import raise_for_status
from livecast.inventory.money import Money
from livecast.inventory.reserve import Reservations
from livecast.redisdb import KeySpace, load_lua
from livecast.selling.auction_types import (
    Auction,
    AuctionBid,
    AuctionBidData,
    AuctionCancelled,
    AuctionEnded,
    AuctionExtended,
    AuctionExtendedData,
    AuctionStarted,
    AuctionState,
    AuctionStats,
    BidOutcome,
    BidResult,
    LoggedBid,
)
from livecast.selling.increments import (
    DEFAULT_INCREMENTS,
    IncrementStep,
    check_increments,
    decode_steps,
    encode_steps,
    step_for,
)
from livecast.selling.starting import StartKeys, one_start_at_a_time, refuse_running, start_indexed
from livecast.timeline import Moment, MomentKind, ShownPrice, Timeline

__all__ = ["AuctionCounters", "Auctions"]

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent
_ID_MAX = 64
# How long after its end a bid's key still gets the first answer (a client retrying a
# bid it sent just before the bell).
_KEYS_KEPT_S = 86_400


# The script's answer for each move it made.
_MOVED = {
    "sold": AuctionState.SOLD,
    "unsold": AuctionState.UNSOLD,
    "cancelled": AuctionState.CANCELLED,
}


def _moved(status: str) -> AuctionState | None:
    """The state a script's answer moved a running auction to (None: it did not move it);
    a move the transition table does not allow is a defect in the script."""
    state = _MOVED.get(status)
    if state is not None and not AuctionState.RUNNING.can_become(state):
        raise RuntimeError(f"an auction script moved running to {state}")
    return state


class AuctionCounters(Protocol):
    """What a node counts for Prometheus (:mod:`livecast.selling.service` makes them)."""

    def bid(self, outcome: str) -> None: ...

    def ended(self, auction: Auction) -> None: ...


_FIELDS = [
    "state",
    "stream",
    "seller",
    "start_minor",
    "currency",
    "starts",
    "ends",
    "soft_ms",
    "steps",
    "pay_ms",
    "price",
    "leader",
    "leader_name",
    "bids",
    "bidders",
    "extensions",
    "ended",
    "hold",
    "title",
]


class Auctions:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        reservations: Reservations,
        catalog: Catalog,
        carts: CartStore,
        events: EventPublisher,
        counters: AuctionCounters | None = None,
        *,
        timeline: Timeline,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._reservations = reservations
        self._catalog = catalog
        self._carts = carts
        self._events = events
        self._counters = counters
        self._timeline = timeline
        self._start = load_lua(redis, _HERE / "auction_start.lua")
        self._bid = load_lua(redis, _HERE / "auction_bid.lua")
        self._end = load_lua(redis, _HERE / "auction_end.lua")
        self._cancel = load_lua(redis, _HERE / "auction_cancel.lua")
        self.sku_index = keys.key("auctions", "sku")
        self.due_key = keys.key("auctions", "due")
        # Per node: what never changes once an auction starts (read once per auction).
        self._fixed: dict[str, Auction] = {}
        # Per node: the highest bid count whose document went to the state slot, per
        # auction, and a lock that keeps those writes in order (answers to concurrent
        # bids come back in any order; an older document must not replace a newer one).
        self._announced: dict[str, int] = {}
        self._announcing = asyncio.Lock()

    def stream_key(self, stream_id: str) -> str:
        return self._keys.key("stream", stream_id, "auction")

    def stream_list_key(self, stream_id: str) -> str:
        return self._keys.key("stream", stream_id, "auctions")

    def _key(self, sku: str, auction_id: str) -> str:
        return self._reservations.base(sku) + ":auction:" + auction_id

    async def start(
        self,
        *,
        stream_id: str,
        seller_id: str,
        sku: str,
        start_price: Money,
        duration_s: float,
        soft_close_s: float,
        increments: list[IncrementStep] | tuple[IncrementStep, ...] = DEFAULT_INCREMENTS,
        pay_within_s: float = 600,
    ) -> Auction:
        """Open an auction of one unit of ``sku`` on the stream (the caller checked the
        stream is live and may be managed, and may sell the product). One running auction
        per stream: 409 ``auction_running``; also 404 ``unknown_sku``, 409 ``sold_out``,
        422 ``currency_mismatch``/``invalid_increments``."""
        if not is_sku(sku):
            raise_for_status("unknown_sku", sku)
        check_increments(increments)
        starting = self._keys.key("stream", stream_id, "auction-starting")
        async with one_start_at_a_time(
            self._redis, starting, what="auction", code=ErrorCode.AUCTION_RUNNING
        ):
            current = await self.current(stream_id)
            refuse_running(
                current.id if current and current.state is AuctionState.RUNNING else None,
                what="auction",
                code=ErrorCode.AUCTION_RUNNING,
                id_field="auction_id",
            )
            auction_id = new_id()
            duration_ms = round(duration_s * 1000)
            await start_indexed(
                self._redis,
                StartKeys.of(self, stream_id),
                record_id=auction_id,
                sku=sku,
                due_guess_ms=await server_now_ms(self._redis) + duration_ms,
                script=lambda: self._start(
                    keys=[self._reservations.base(sku)],
                    args=[
                        auction_id,
                        stream_id,
                        seller_id,
                        start_price.amount_minor,
                        start_price.currency,
                        duration_ms,
                        round(soft_close_s * 1000),
                        encode_steps(increments),
                        round(pay_within_s * 1000),
                    ],
                ),
            )
        self._reservations.dirty_skus.setdefault(sku, 0)
        auction = await self.get(auction_id)
        media = await self._timeline.media_now(stream_id)
        await self._events.set_state(
            "auction",
            auction,
            AuctionStarted(stream=stream_id, data=auction, media_time_ms=media),
            also=self._on_timeline(MomentKind.AUCTION_STARTED, auction, media),
        )
        return auction

    async def bid(
        self, auction_id: str, *, user: str, name: str, amount: Money, key: str
    ) -> BidResult:
        """Bid up to ``amount`` for ``user`` (see the module doc). 404
        ``unknown_auction``; 409 ``auction_ended``, ``bid_too_low``; 403 ``own_auction``;
        422 ``currency_mismatch``."""
        fixed = await self.fixed_part(auction_id)
        reply = await self._reservations.batcher.call(
            self._bid,
            (
                self._reservations.base(fixed.sku),
                auction_id,
                user,
                name,
                amount.amount_minor,
                amount.currency,
                key,
            ),
        )
        status = text(reply[0])
        if status not in BidOutcome.__members__.values():
            details: dict[str, Any] = {"auction_id": auction_id}
            if status == "bid_too_low":
                details["next_bid"] = msgspec.to_builtins(
                    self._next_bid(fixed, int(reply[1]), text(reply[2]) != "")
                )
            raise_for_status(status, auction_id, **details)
        price, leader, leader_name = int(reply[1]), text(reply[2]), text(reply[3])
        ends, bids, bidders, now = int(reply[4]), int(reply[5]), int(reply[6]), int(reply[7])
        extended, replayed = int(reply[8]), bool(int(reply[10]))
        currency = fixed.start_price.currency
        next_bid = self._next_bid(fixed, price, True)
        outcome = BidOutcome(status)
        if self._counters is not None and not replayed:
            self._counters.bid(outcome.value)
        if outcome is not BidOutcome.MAX_RAISED and not replayed:
            await self._announce_bid(
                fixed,
                AuctionBidData(
                    id=auction_id,
                    price=Money(amount_minor=price, currency=currency),
                    next_bid=next_bid,
                    leader_id=leader,
                    leader_name=leader_name,
                    bids=bids,
                    bidders=bidders,
                    ends_at_ms=ends,
                    extended_ms=extended,
                    server_ms=now,
                ),
            )
        return BidResult(
            auction_id=auction_id,
            outcome=outcome,
            leading=leader == user,
            price=Money(amount_minor=price, currency=currency),
            next_bid=next_bid,
            your_max=Money(amount_minor=int(reply[9]), currency=currency),
            leader_name=leader_name,
            bids=bids,
            ends_at_ms=ends,
            server_ms=now,
            replayed=replayed,
        )

    async def _announce_bid(self, fixed: Auction, data: AuctionBidData) -> None:
        """The bid event, and the slot a joiner's hello reads, in one MULTI."""
        document = msgspec.structs.replace(
            fixed,
            price=data.price,
            next_bid=data.next_bid,
            leader_id=data.leader_id,
            leader_name=data.leader_name,
            bids=data.bids,
            bidders=data.bidders,
            ends_at_ms=data.ends_at_ms,
            server_ms=data.server_ms,
        )
        stream = fixed.stream_id
        encode = msgspec.msgpack.encode
        async with self._announcing, self._redis.pipeline(transaction=True) as pipe:
            if data.bids > self._announced.get(data.id, 0):
                if len(self._announced) > 10_000:
                    self._announced.clear()
                self._announced[data.id] = data.bids
                pipe.hset(self._events.state_key(stream), "auction", encode(document))
            pipe.publish(self._events.channel(stream), encode(AuctionBid(stream=stream, data=data)))
            if data.extended_ms:
                extended = AuctionExtendedData(
                    id=data.id,
                    ends_at_ms=data.ends_at_ms,
                    extended_ms=data.extended_ms,
                    server_ms=data.server_ms,
                )
                pipe.publish(
                    self._events.channel(stream),
                    encode(AuctionExtended(stream=stream, data=extended)),
                )
            await pipe.execute()

    def _on_timeline(
        self, kind: MomentKind, auction: Auction, media_time_ms: int | None
    ) -> Callable[[Any], object]:
        """The auction's entry on its stream's timeline, for the event's MULTI."""
        price = auction.price or auction.start_price
        moment = Moment(
            kind=kind,
            media_time_ms=media_time_ms,
            sku=auction.sku,
            auction_id=auction.id,
            title=auction.title,
            price=ShownPrice(amount_minor=price.amount_minor, currency=price.currency),
        )
        return self._timeline.appending(auction.stream_id, moment)

    def _next_bid(self, fixed: Auction, price: int, has_leader: bool) -> Money:
        currency = fixed.start_price.currency
        if not has_leader:
            return fixed.start_price
        return Money(amount_minor=price + step_for(fixed.increments, price), currency=currency)

    async def cancel(self, auction_id: str) -> Auction:
        """Cancel before the first bid (409 ``auction_has_bids``, ``auction_ended``)."""
        fixed = await self.fixed_part(auction_id)
        reply = await self._cancel(keys=[self._reservations.base(fixed.sku)], args=[auction_id])
        status = text(reply[0])
        if _moved(status) is not AuctionState.CANCELLED:
            raise_for_status(status, auction_id, auction_id=auction_id)
        await self._redis.zrem(self.due_key, auction_id)
        self._reservations.dirty_skus.setdefault(fixed.sku, 0)
        auction = await self.get(auction_id)
        media = await self._timeline.media_now(auction.stream_id)
        await self._events.clear_state(
            "auction",
            AuctionCancelled(stream=auction.stream_id, data=auction, media_time_ms=media),
            also=self._on_timeline(MomentKind.AUCTION_CANCELLED, auction, media),
        )
        return auction

    async def end_due(self, auction_id: str, *, early: bool = False) -> AuctionState | None:
        """End the auction if its time is up, as the sweeper does, or now with ``early``
        (its stream ended: the leader wins at the price reached); the state it moved to
        if this call ended it (exactly one call does), else None."""
        sku = await self._redis.hget(self.sku_index, auction_id)
        if sku is None:
            await self._redis.zrem(self.due_key, auction_id)
            return None
        base = self._reservations.base(text(sku))
        reply = await self._end(
            keys=[base],
            args=[auction_id, _hold_id(auction_id), "1" if early else "0", _KEYS_KEPT_S],
        )
        status = text(reply[0])
        if status == "not_due":
            # Soft close moved the end: look again then.
            await self._redis.zadd(self.due_key, {auction_id: int(reply[1])})
            return None
        await self._redis.zrem(self.due_key, auction_id)
        if _moved(status) is None:
            return None
        auction = await self.get(auction_id)
        if auction.state is AuctionState.SOLD and auction.leader_id and auction.hold_id:
            await self._carts.add(
                auction.leader_id,
                CartEntry(
                    hold_id=auction.hold_id,
                    sku=auction.sku,
                    stream_id=auction.stream_id,
                    title=auction.title,
                ),
            )
            self._reservations.dirty_skus[auction.sku] = int(reply[2])
        else:
            self._reservations.dirty_skus.setdefault(auction.sku, 0)
        # at the bell (the sweeper comes a moment later), or earlier if ended early
        bell = auction.ends_at_ms
        at = bell if auction.ended_at_ms is None else min(bell, auction.ended_at_ms)
        media = await self._timeline.media_now(auction.stream_id, at_ms=at)
        await self._events.clear_state(
            "auction",
            AuctionEnded(stream=auction.stream_id, data=auction, media_time_ms=media),
            also=self._on_timeline(MomentKind.AUCTION_ENDED, auction, media),
        )
        if self._counters is not None:
            self._counters.ended(auction)
        self._fixed.pop(auction_id, None)
        self._announced.pop(auction_id, None)
        return auction.state

    async def end_for_stream(self, stream_id: str) -> AuctionState | None:
        """End the stream's running auction now (its stream ended), as the bell would;
        the state it moved to if this call ended it, else None. An auction this misses
        (the node stopped first) still ends at its time, on any node's sweep."""
        auction_id = await self.current_id(stream_id)
        if auction_id is None:
            return None
        return await self.end_due(auction_id, early=True)

    async def due(self, now_ms: int, *, limit: int = 100) -> list[str]:
        return await due_ids(self._redis, self.due_key, now_ms, limit=limit)

    async def now_ms(self) -> int:
        """The Redis server's clock, the one every node and script agrees on."""
        return await server_now_ms(self._redis)

    async def current_id(self, stream_id: str) -> str | None:
        found = await self._redis.get(self.stream_key(stream_id))
        return None if found is None else text(found)

    async def current(self, stream_id: str) -> Auction | None:
        """The stream's latest auction (running or not), or None."""
        auction_id = await self.current_id(stream_id)
        return None if auction_id is None else await self.find(auction_id)

    async def get(self, auction_id: str) -> Auction:
        auction = await self.find(auction_id)
        if auction is None:
            raise NotFound(f"no auction {auction_id!r}", code=ErrorCode.UNKNOWN_AUCTION)
        return auction

    async def find(self, auction_id: str) -> Auction | None:
        if len(auction_id) > _ID_MAX:
            return None
        sku = await self._redis.hget(self.sku_index, auction_id)
        if sku is None:
            return None
        found = await read_row(self._redis, self._key(text(sku), auction_id), _FIELDS)
        if found is None:
            return None
        row, server_ms = found
        product = await self._catalog.find(text(sku))
        currency = row["currency"] or ""
        start = Money(amount_minor=int(row["start_minor"] or 0), currency=currency)
        steps = decode_steps(row["steps"] or "")
        leader = row["leader"] or None
        price = int(row["price"] or 0)
        auction = Auction(
            id=auction_id,
            stream_id=row["stream"] or "",
            seller_id=row["seller"] or "",
            sku=text(sku),
            title=row["title"] or (product.title if product else text(sku)),
            image_url=product.image_url if product else None,
            state=AuctionState(row["state"] or "running"),
            start_price=start,
            price=Money(amount_minor=price, currency=currency) if leader else None,
            next_bid=start,
            increments=steps,
            soft_close_s=int(row["soft_ms"] or 0) // 1000,
            leader_id=leader,
            leader_name=row["leader_name"] or None if leader else None,
            bids=int(row["bids"] or 0),
            bidders=int(row["bidders"] or 0),
            extensions=int(row["extensions"] or 0),
            starts_at_ms=int(row["starts"] or 0),
            ends_at_ms=int(row["ends"] or 0),
            ended_at_ms=int(row["ended"]) if row["ended"] else None,
            pay_within_s=int(row["pay_ms"] or 0) // 1000,
            hold_id=row["hold"] or None,
            server_ms=server_ms,
        )
        next_bid = self._next_bid(auction, price, leader is not None)
        auction = msgspec.structs.replace(auction, next_bid=next_bid)
        if auction.state is AuctionState.RUNNING:
            self._fixed.setdefault(auction_id, auction)
        return auction

    async def fixed_part(self, auction_id: str) -> Auction:
        """The auction as this node first read it: right for what never changes (its
        stream, seller, SKU, prices and increments), stale for the rest."""
        fixed = self._fixed.get(auction_id)
        if fixed is None:
            fixed = await self.get(auction_id)
            if len(self._fixed) > 10_000:
                self._fixed.clear()
            self._fixed[auction_id] = fixed
        return fixed

    async def stats(self, stream_id: str) -> AuctionStats:
        """The stream's auctions in numbers (read from each: a stream runs a few dozen)."""
        found: list[Any] = await self._redis.zrange(self.stream_list_key(stream_id), 0, -1)
        auctions = [a for a in [await self.find(text(i)) for i in found] if a is not None]
        states = [a.state for a in auctions]
        bidders: set[bytes | str] = set()
        for auction in auctions:
            bidders.update(await self._redis.hkeys(self._key(auction.sku, auction.id) + ":bidder"))
        gmv: dict[str, int] = {}
        for auction in auctions:
            if auction.state is AuctionState.SOLD and auction.price is not None:
                currency = auction.price.currency
                gmv[currency] = gmv.get(currency, 0) + auction.price.amount_minor
        return AuctionStats(
            stream_id=stream_id,
            auctions=len(auctions),
            running=states.count(AuctionState.RUNNING),
            sold=states.count(AuctionState.SOLD),
            unsold=states.count(AuctionState.UNSOLD),
            cancelled=states.count(AuctionState.CANCELLED),
            bids=sum(a.bids for a in auctions),
            bidders=len(bidders),
            gmv=[Money(amount_minor=v, currency=c) for c, v in sorted(gmv.items())],
        )

    async def bid_log(self, auction_id: str) -> list[LoggedBid]:
        """Every bid that moved the price, in the server's order."""
        fixed = await self.fixed_part(auction_id)
        rows: list[Any] = await self._redis.lrange(self._key(fixed.sku, auction_id) + ":log", 0, -1)
        currency = fixed.start_price.currency
        logged = []
        for row in rows:
            price, leader, at, ends, extended = text(row).split(" ")
            logged.append(
                LoggedBid(
                    price=Money(amount_minor=int(price), currency=currency),
                    leader_id=leader,
                    at_ms=int(at),
                    ends_at_ms=int(ends),
                    extended_ms=int(extended),
                )
            )
        return logged


def _hold_id(auction_id: str) -> str:
    """The winner's hold: one per auction, so ending twice cannot make two."""
    return "auction-" + auction_id
