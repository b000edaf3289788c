"""Stock and flash deals over any sequence of operations: a Hypothesis state machine on
real Redis (every Redis of the run), through the services the app uses.

Steps: start a deal, reserve (several buyers, with and without a deal, with and without a
per-buyer limit, holds that last or expire soon), release, commit, end a deal, let time
pass (short holds and short deals run out and the real sweeper expires and ends them),
pin, end a stream (the stream registry's real transition, whose listener ends the
stream's deals and clears its pin), or end one on a node that dies before its listeners
run (the next full sweep must end its deals). The model predicts every outcome; where
the Redis clock decides (a short hold or deal at the edge of its time) the outcome must
be the one the model gives for a moment between just before and just after the call.

Each example runs on its own event loop, Redis client and key prefix (deleted after).

After every step: each counter equals the model's and none is negative, available +
held + sold + in deals = total, each deal's counters match, no buyer is past a deal's
per-buyer limit, and no deal of an ended stream (or past its end time, once swept) runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    invariant,
    rule,
)

from livecast.errors import ApiError
from livecast.events import EventPublisher
from livecast.inventory.catalog import Catalog, ProductFields
from livecast.inventory.deals import Deal, Deals
from livecast.inventory.money import Money
from livecast.inventory.notify import StockNotifier
from livecast.inventory.ownership import Ownership
from livecast.inventory.pins import Pins
from livecast.inventory.reserve import Hold, Reservations
from livecast.inventory.service import Inventory
from livecast.inventory.sweeper import Sweeper
from livecast.streams.registry import StreamRegistry, StreamState
from livecast.timeline import Timeline
from tests.redis_machine import RedisMachine, run_machine

T = TypeVar("T")

BUYERS = ("ann", "bob", "cy")
SKUS = ("MX-A", "MX-B")
PRICE = 2000
DEAL_PRICE = 1500
LONG_TTL_S = 300.0
SHORT_TTL_S = 0.06
LONG_DEAL_S = 600.0
SHORT_DEAL_S = 0.1


@dataclass
class SkuModel:
    total: int
    available: int
    held: int = 0
    sold: int = 0
    deal_reserved: int = 0
    users: dict[str, int] = field(default_factory=dict)


@dataclass
class DealModel:
    id: str
    sku: str
    stream: str
    quantity: int
    per_buyer: int
    ends_ms: int
    short: bool
    remaining: int
    held: int = 0
    sold: int = 0
    active: bool = True
    users: dict[str, int] = field(default_factory=dict)


@dataclass
class HoldModel:
    sku: str
    hold_id: str
    user: str
    qty: int
    deal: DealModel | None
    short: bool
    expires_ms: int
    state: str = "held"


def _add(counts: dict[str, int], user: str, qty: int) -> None:
    counts[user] = counts.get(user, 0) + qty
    if counts[user] <= 0:
        del counts[user]


def _counts(raw: dict[Any, Any]) -> dict[str, int]:
    return {key.decode(): int(value) for key, value in raw.items()}


class DealsMachine(RedisMachine):
    def __init__(self) -> None:
        super().__init__()
        self.skus: dict[str, SkuModel] = {}
        self.deals: list[DealModel] = []
        self.holds: list[HoldModel] = []
        self.live: list[str] = []
        self.ended: list[str] = []
        # Ended by a node that died before its listeners ran: the next full sweep ends
        # their deals (their pins stay).
        self.ended_unannounced: list[str] = []
        self.pinned: dict[str, str] = {}
        self.run(self._build())

    async def _build(self) -> None:
        keys = self.keys
        self.reservations = Reservations(self.redis, keys, hold_ttl_s=LONG_TTL_S)
        self.closers.append(self.reservations.batcher.aclose)
        self.catalog = Catalog(self.redis, keys, self.reservations)
        events = EventPublisher(self.redis, keys)
        timeline = Timeline(self.redis, keys, max_entries=100, retention_s=0)
        self.deal_service = Deals(
            self.redis, keys, self.reservations, self.catalog, events, timeline
        )
        self.pins = Pins(self.redis, keys, self.catalog, self.deal_service, events, timeline)
        self.sweeper = Sweeper(
            self.redis,
            keys,
            self.reservations,
            self.deal_service,
            catalog_index_key=self.catalog.index_key,
            interval_s=1,
            full_interval_s=1,
            stream_ended=self._stream_ended,
        )
        notifier = StockNotifier(
            self.redis,
            self.reservations,
            self.deal_service,
            self.pins,
            events,
            due_key=self.sweeper.due_key,
            interval_s=1,
        )
        self.streams = StreamRegistry(self.redis, keys)
        inventory = Inventory(
            reservations=self.reservations,
            catalog=self.catalog,
            deals=self.deal_service,
            pins=self.pins,
            sweeper=self.sweeper,
            notifier=notifier,
            ownership=Ownership(
                self.redis,
                self.reservations,
                self.catalog,
                self.deal_service,
                self.pins,
                self.streams,
            ),
        )
        self.streams_without_listeners = StreamRegistry(self.redis, keys)
        self.streams.on_state_change(inventory.on_stream_state)

    async def _stream_ended(self, stream_id: str) -> bool:
        stream = await self.streams.find(stream_id)
        return stream is not None and stream.state is StreamState.ENDED

    async def _now(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def _timed(self, coro: Coroutine[Any, Any, T]) -> tuple[T | ApiError, int, int]:
        """Run ``coro``; its result (or ApiError) with the Redis clock just before and after."""
        before = await self._now()
        try:
            result: T | ApiError = await coro
        except ApiError as exc:
            result = exc
        return result, before, await self._now()

    # -- set-up ----------------------------------------------------------------------------

    @initialize(
        stocks=st.tuples(st.integers(0, 8), st.integers(1, 8)),
        streams=st.integers(2, 3),
        opening=st.lists(
            st.tuples(st.sampled_from(SKUS), st.integers(1, 3), st.integers(0, 2), st.booleans()),
            max_size=2,
        ),
    )
    def set_up(
        self, stocks: tuple[int, int], streams: int, opening: list[tuple[str, int, int, bool]]
    ) -> None:
        """Products and live streams, and deals open from the start (most steps then have
        a deal to act on)."""

        async def go() -> None:
            for sku, stock in zip(SKUS, stocks, strict=True):
                fields = ProductFields(
                    title=sku, price=Money(amount_minor=PRICE, currency="EUR"), stock=stock
                )
                await self.catalog.put(sku, fields)
                self.skus[sku] = SkuModel(total=stock, available=stock)
            for _ in range(streams):
                stream = await self.streams.create(
                    title="machine",
                    description="",
                    seller_id="seller",
                    seller_name="Seller",
                    scheduled_start_ms=None,
                    featured_skus=[],
                )
                await self.streams.transition(stream.id, StreamState.LIVE)
                self.live.append(stream.id)

        self.run(go())
        for n, (sku, quantity, per_buyer, short) in enumerate(opening):
            self.start_deal(n, sku, quantity, per_buyer, short)

    # -- steps -----------------------------------------------------------------------------
    # No preconditions: a step with nothing to act on does nothing, so what Hypothesis
    # draws never depends on an outcome the Redis clock decided (replays stay the same).

    @rule(
        pick=st.integers(0, 100),
        sku=st.sampled_from(SKUS),
        quantity=st.integers(1, 3),
        per_buyer=st.integers(0, 2),
        short=st.sampled_from([False, False, True]),
    )
    def start_deal(self, pick: int, sku: str, quantity: int, per_buyer: int, short: bool) -> None:
        if not self.live:
            return
        stream = self.live[pick % len(self.live)]
        model = self.skus[sku]
        result = self.run(
            self._try(
                self.deal_service.start(
                    stream_id=stream,
                    sku=sku,
                    price=Money(amount_minor=DEAL_PRICE, currency="EUR"),
                    quantity=quantity,
                    duration_s=SHORT_DEAL_S if short else LONG_DEAL_S,
                    per_buyer_limit=per_buyer,
                )
            )
        )
        if model.available < quantity:
            assert isinstance(result, ApiError), result
            assert result.code == "insufficient_stock"
            return
        assert isinstance(result, Deal), result
        model.available -= quantity
        model.deal_reserved += quantity
        self.deals.append(
            DealModel(
                id=result.id,
                sku=sku,
                stream=stream,
                quantity=quantity,
                per_buyer=per_buyer,
                ends_ms=result.ends_at_ms,
                short=short,
                remaining=quantity,
            )
        )

    @staticmethod
    async def _try(coro: Coroutine[Any, Any, T]) -> T | ApiError:
        try:
            return await coro
        except ApiError as exc:
            return exc

    def _reserve_outcome(
        self, sku: str, user: str, qty: int, limit: int, deal: DealModel | None, now: int
    ) -> str:
        """What ``reserve.lua`` answers at Redis time ``now`` (its checks, in its order)."""
        model = self.skus[sku]
        if limit > 0 and model.users.get(user, 0) + qty > limit:
            return "over_limit"
        if deal is not None:
            if not deal.active or now >= deal.ends_ms:
                return "deal_ended"
            if deal.per_buyer > 0 and deal.users.get(user, 0) + qty > deal.per_buyer:
                return "over_limit"
            left = deal.remaining
        else:
            left = model.available
        if left < qty:
            return "sold_out" if left == 0 else "insufficient_stock"
        return "ok"

    @rule(
        user=st.sampled_from(BUYERS),
        sku=st.sampled_from(SKUS),
        qty=st.integers(1, 3),
        limit=st.one_of(st.just(0), st.integers(1, 4)),
        # A deal (if any), twice as often as none.
        deal_pick=st.one_of(st.none(), st.integers(0, 100), st.integers(0, 100)),
        short=st.booleans(),
    )
    def reserve(
        self, user: str, sku: str, qty: int, limit: int, deal_pick: int | None, short: bool
    ) -> None:
        deal = None
        # Running deals first; ended ones once none runs.
        deals = [d for d in self.deals if d.active] or self.deals
        if deal_pick is not None and deals:
            deal = deals[deal_pick % len(deals)]
            sku = deal.sku
        hold_id = f"h{len(self.holds)}-{uuid.uuid4().hex[:6]}"
        result, before, after = self.run(
            self._timed(
                self.reservations.reserve(
                    sku,
                    qty,
                    user,
                    hold_id,
                    ttl_s=SHORT_TTL_S if short else None,
                    per_user_limit=limit,
                    deal_id=deal.id if deal else None,
                )
            )
        )
        possible = {
            self._reserve_outcome(sku, user, qty, limit, deal, before),
            self._reserve_outcome(sku, user, qty, limit, deal, after),
        }
        outcome = result.code if isinstance(result, ApiError) else "ok"
        assert outcome in possible, (outcome, possible)
        if not isinstance(result, Hold):
            return
        assert result.price.amount_minor == (DEAL_PRICE if deal else PRICE)
        model = self.skus[sku]
        _add(model.users, user, qty)
        model.held += qty
        if deal is not None:
            _add(deal.users, user, qty)
            deal.remaining -= qty
            deal.held += qty
            model.deal_reserved -= qty
        else:
            model.available -= qty
        if limit > 0:
            assert model.users[user] <= limit
        self.holds.append(
            HoldModel(sku, hold_id, user, qty, deal, short, expires_ms=result.expires_at_ms)
        )

    @rule(
        user=st.sampled_from(BUYERS),
        pick=st.integers(0, 100),
        qty=st.integers(1, 2),
        short=st.booleans(),
    )
    def reserve_from_deal(self, user: str, pick: int, qty: int, short: bool) -> None:
        """A crowd on a deal: more of these than other reservations, so deals sell out."""
        self.reserve(user, SKUS[0], qty, 0, pick, short)

    def _give_back(self, hold: HoldModel, state: str) -> None:
        model = self.skus[hold.sku]
        model.held -= hold.qty
        _add(model.users, hold.user, -hold.qty)
        deal = hold.deal
        if deal is None:
            model.available += hold.qty
        else:
            deal.held -= hold.qty
            _add(deal.users, hold.user, -hold.qty)
            if deal.active:
                deal.remaining += hold.qty
                model.deal_reserved += hold.qty
            else:
                model.available += hold.qty
        hold.state = state

    @rule(pick=st.integers(0, 1000))
    def release(self, pick: int) -> None:
        if not self.holds:
            return
        hold = self.holds[pick % len(self.holds)]
        result = self.run(self._try(self.reservations.release(hold.sku, hold.hold_id)))
        if hold.state in ("held", "released"):
            assert not isinstance(result, ApiError), result
            if hold.state == "held":
                self._give_back(hold, "released")
        else:
            assert isinstance(result, ApiError), result
            assert result.code == "not_held"

    @rule(pick=st.integers(0, 1000))
    def commit(self, pick: int) -> None:
        if not self.holds:
            return
        hold = self.holds[pick % len(self.holds)]
        result, before, after = self.run(
            self._timed(self.reservations.commit(hold.sku, hold.hold_id))
        )
        outcome = result.code if isinstance(result, ApiError) else "ok"
        if hold.state == "held":
            possible = {"ok" if t < hold.expires_ms else "hold_expired" for t in (before, after)}
        else:
            possible = {"ok" if hold.state == "committed" else "not_held"}
        assert outcome in possible, (outcome, possible, hold.state)
        if outcome == "ok" and hold.state == "held":
            model = self.skus[hold.sku]
            model.held -= hold.qty
            model.sold += hold.qty
            if hold.deal is not None:
                hold.deal.held -= hold.qty
                hold.deal.sold += hold.qty
            hold.state = "committed"

    def _end(self, deal: DealModel) -> None:
        if deal.active:
            model = self.skus[deal.sku]
            model.available += deal.remaining
            model.deal_reserved -= deal.remaining
            deal.remaining = 0
            deal.active = False

    @rule(pick=st.integers(0, 100))
    def end_deal(self, pick: int) -> None:
        if not self.deals:
            return
        deal = self.deals[pick % len(self.deals)]
        was_active = deal.active
        ended, before, after = self.run(self._timed(self.deal_service.end(deal.id, "host")))
        assert isinstance(ended, Deal), ended
        assert (ended.state.value, ended.left) == ("ended", 0)
        if was_active:
            if after < deal.ends_ms:
                assert ended.ended_reason == "host"
            elif before >= deal.ends_ms:
                assert ended.ended_reason == "time"
        self._end(deal)

    @rule(probe=st.integers(0, 1000))
    def time_passes(self, probe: int) -> None:
        """Every short hold and short deal runs out; the real sweeper expires and ends them.

        Before the sweep, one of them is probed: a run-out hold cannot be committed and a
        run-out deal sells nothing, though neither is swept yet.
        """
        holds = [h for h in self.holds if h.short and h.state == "held"]
        deals = [d for d in self.deals if d.short and d.active]
        until = max([h.expires_ms for h in holds] + [d.ends_ms for d in deals], default=0)

        async def go() -> Any:
            for _ in range(100):
                now = await self._now()
                if now > until:
                    break
                await asyncio.sleep((until + 1 - now) / 1000)
            if holds:
                hold = holds[probe % len(holds)]
                with pytest.raises(ApiError) as refused:
                    await self.reservations.commit(hold.sku, hold.hold_id)
                assert refused.value.code == "hold_expired"
            if deals:
                deal = deals[probe % len(deals)]
                with pytest.raises(ApiError) as refused:
                    await self.reservations.reserve(
                        deal.sku, 1, "late", f"late-{probe}", deal_id=deal.id
                    )
                assert refused.value.code == "deal_ended"
            return await self.sweeper.sweep_once(full=True)

        report = self.run(go())
        orphans = [
            d
            for d in self.deals
            if d.active and d.stream in self.ended_unannounced and d not in deals
        ]
        assert report.expired == len(holds)
        assert report.deals_ended == len(deals) + len(orphans)
        for hold in holds:
            self._give_back(hold, "expired")
        for deal in deals + orphans:
            self._end(deal)
        for deal, reason in [(d, "time") for d in deals] + [(d, "stream_ended") for d in orphans]:
            found = self.run(self.deal_service.get(deal.id))
            assert (found.state.value, found.ended_reason) == ("ended", reason)
        self.ended += self.ended_unannounced
        self.ended_unannounced.clear()

    @rule(pick=st.integers(0, 100), sku=st.sampled_from(SKUS))
    def pin(self, pick: int, sku: str) -> None:
        if not self.live:
            return
        stream = self.live[pick % len(self.live)]
        card = self.run(self.pins.pin(stream, sku))
        assert card.stock_left == self.skus[sku].available
        self.pinned[stream] = sku

    @rule(pick=st.integers(0, 100))
    def end_stream(self, pick: int) -> None:
        if not self.live:
            return
        stream = self.live.pop(pick % len(self.live))
        self.run(self.streams.transition(stream, StreamState.ENDED))
        self.ended.append(stream)
        self.pinned.pop(stream, None)
        for deal in self.deals:
            if deal.stream == stream:
                self._end(deal)

    @rule(pick=st.integers(0, 100), probe=st.integers(0, 1000))
    def end_stream_and_die(self, pick: int, probe: int) -> None:
        """The stream ends but the node dies before its listeners end its deals; time
        passes and the next full sweep ends them."""
        if not self.live:
            return
        stream = self.live.pop(pick % len(self.live))
        self.run(self.streams_without_listeners.transition(stream, StreamState.ENDED))
        self.ended_unannounced.append(stream)
        self.time_passes(probe)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def stock_adds_up(self) -> None:
        async def check() -> None:
            for sku, model in self.skus.items():
                levels = await self.reservations.stock(sku)
                assert levels is not None
                got = (levels.available, levels.held, levels.sold, levels.deal_reserved)
                want = (model.available, model.held, model.sold, model.deal_reserved)
                assert got == want, (sku, got, want)
                assert min(got) >= 0
                assert levels.total == model.total
                users = await self.redis.hgetall(self.reservations.base(sku) + ":users")
                assert _counts(users) == model.users

        self.run(check())

    @invariant()
    def deals_add_up_and_limits_hold(self) -> None:
        async def check() -> None:
            for deal in self.deals:
                key = self.reservations.base(deal.sku) + ":deal:" + deal.id
                raw: list[Any] = await self.redis.hmget(key, ["state", "remaining", "held", "sold"])
                got = (raw[0].decode(), int(raw[1]), int(raw[2]), int(raw[3]))
                want = (
                    "active" if deal.active else "ended",
                    deal.remaining,
                    deal.held,
                    deal.sold,
                )
                assert got == want, (deal.id, got, want)
                assert deal.remaining + deal.held + deal.sold <= deal.quantity
                if deal.active:
                    assert deal.remaining + deal.held + deal.sold == deal.quantity
                assert _counts(await self.redis.hgetall(key + ":users")) == deal.users
                if deal.per_buyer:
                    for user in BUYERS:
                        units = sum(
                            h.qty
                            for h in self.holds
                            if h.deal is deal
                            and h.user == user
                            and h.state in ("held", "committed")
                        )
                        assert units <= deal.per_buyer, (deal.id, user, units)

        self.run(check())

    @invariant()
    def ended_streams_have_no_running_deal_or_pin(self) -> None:
        async def check() -> None:
            for stream in self.ended:
                assert await self.deal_service.for_stream(stream, active_only=True) == []
                if stream not in self.pinned:
                    assert await self.redis.get(self.pins.pin_key(stream)) is None
            for stream, sku in self.pinned.items():
                raw: Any = await self.redis.get(self.pins.pin_key(stream))
                assert raw is not None
                assert raw.decode() == sku

        self.run(check())


def test_stock_and_deals_over_any_sequence(any_redis_url: str) -> None:
    run_machine(DealsMachine, any_redis_url, examples=30, steps=40)
