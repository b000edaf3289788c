"""Auctions over any sequence of operations: a Hypothesis state machine on real Redis
(every Redis of the run), through the service the app uses.

Steps: start an auction (sudden death; soft close with a window longer than the
auction, so the first bid that moves the price extends it and the next do not; or a
short one that ends within the example), bid (three buyers, at the next step, above it,
below it, retried with the same key, by the seller), cancel, let a short auction's time
pass and sweep, pay the winner's hold, or walk away from it.

After every step: available + held + sold + in auctions = total and each counter is the
model's; the bid log rises strictly and by at least the increment each time; the leader
holds the highest maximum (the earlier one on a tie) and the price is within it; the end
time is the start's plus the window once per bid that moved the price; an ended auction
with a leader left exactly one hold, at the last price, for the leader.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    invariant,
    precondition,
    rule,
)

from livecast.cart.cart import CartStore
from livecast.errors import ApiError
from livecast.events import EventPublisher
from livecast.inventory.catalog import Catalog, ProductFields
from livecast.inventory.money import Money
from livecast.inventory.reserve import Reservations
from livecast.selling.auction_types import AuctionState
from livecast.selling.auctions import Auctions
from livecast.selling.increments import DEFAULT_INCREMENTS, step_for
from livecast.timeline import Timeline
from tests.redis_machine import RedisMachine, run_machine

T = TypeVar("T")

SKU = "AU-1"
STOCK = 3
SELLER = "seller-1"
BUYERS = ("ann", "bob", "cy")
START = 900
LONG_S = 600.0
SHORT_S = 0.15
# Longer than the auction: the first bid that moves the price is inside it, the next are
# not (the end is then 600 s past it).
WINDOW_S = 700.0


@dataclass
class AuctionModel:
    id: str
    ends_ms: int
    first_ends_ms: int
    soft_ms: int
    short: bool
    price: int = 0
    leader: str = ""
    leader_max: int = 0
    maxes: dict[str, int] = field(default_factory=dict)
    bids: int = 0
    extensions: int = 0
    state: AuctionState = AuctionState.RUNNING
    keys: dict[tuple[str, str], str] = field(default_factory=dict)


def _step(price: int) -> int:
    return step_for(DEFAULT_INCREMENTS, price)


class AuctionsMachine(RedisMachine):
    def __init__(self) -> None:
        super().__init__()
        self.auctions: list[AuctionModel] = []
        self.available, self.held, self.sold, self.carved = STOCK, 0, 0, 0
        self.hold: tuple[str, str, int] | None = None  # (hold id, winner, price), while held
        self.run(self._build())

    async def _build(self) -> None:
        keys = self.keys
        self.reservations = Reservations(self.redis, keys)
        self.closers.append(self.reservations.batcher.aclose)
        catalog = Catalog(self.redis, keys, self.reservations)
        await catalog.put(
            SKU,
            ProductFields(title="Lot", price=Money(amount_minor=5000, currency="EUR"), stock=STOCK),
        )
        self.service = Auctions(
            self.redis,
            keys,
            self.reservations,
            catalog,
            CartStore(self.redis, keys),
            EventPublisher(self.redis, keys),
            timeline=Timeline(self.redis, keys, max_entries=100, retention_s=0),
        )

    @property
    def running(self) -> AuctionModel | None:
        if self.auctions and self.auctions[-1].state is AuctionState.RUNNING:
            return self.auctions[-1]
        return None

    @rule(kind=st.sampled_from(["sudden", "soft", "short"]))
    def start(self, kind: str) -> None:
        auction = self.attempt(
            self.service.start(
                stream_id="st-1",
                seller_id=SELLER,
                sku=SKU,
                start_price=Money(amount_minor=START, currency="EUR"),
                duration_s=SHORT_S if kind == "short" else LONG_S,
                soft_close_s=WINDOW_S if kind == "soft" else 0,
                pay_within_s=LONG_S,
            )
        )
        if isinstance(auction, ApiError):
            want = "auction_running" if self.running else "sold_out"
            assert auction.code == want, auction
            assert self.running or self.available == 0
            return
        assert self.running is None
        assert self.available >= 1
        self.available -= 1
        self.carved += 1
        self.auctions.append(
            AuctionModel(
                id=auction.id,
                ends_ms=auction.ends_at_ms,
                first_ends_ms=auction.ends_at_ms,
                soft_ms=round(WINDOW_S * 1000) if kind == "soft" else 0,
                short=kind == "short",
            )
        )

    @precondition(lambda self: self.running is not None and not self.running.short)
    @rule(
        user=st.sampled_from((*BUYERS, SELLER)),
        over=st.sampled_from([-1, 0, 0, 1, 3, 40]),
        key=st.sampled_from(["k1", "k2", "k3", "k4", "k5", "k6"]),
    )
    def bid(self, user: str, over: int, key: str) -> None:
        """Bid the next step, ``over`` steps above it (a maximum), or one unit below."""
        model = self.running
        assert model is not None
        minimum = model.price + _step(model.price) if model.leader else START
        amount = minimum - 1 if over < 0 else minimum + over * _step(minimum)
        now_ms = self.run(self.service.now_ms())
        result = self.attempt(
            self.service.bid(
                model.id,
                user=user,
                name=user.title(),
                amount=Money(amount_minor=amount, currency="EUR"),
                key=key,
            )
        )
        if isinstance(result, ApiError):
            if user == SELLER:
                assert result.code == "own_auction"
            else:
                assert (user, key) not in model.keys, f"a retried key was refused: {result}"
                raising = user == model.leader and amount <= model.leader_max
                assert amount < minimum or raising, (result, amount, minimum)
                assert result.code == "bid_too_low"
            return
        assert user != SELLER
        if (user, key) in model.keys:
            assert result.replayed
            assert result.outcome == model.keys[(user, key)]
            return
        assert not result.replayed
        outcome = self._apply(model, user, amount, now_ms)
        assert result.outcome == outcome, (result, outcome)
        model.keys[(user, key)] = outcome
        assert result.price.amount_minor == model.price
        assert result.ends_at_ms == model.ends_ms

    def _apply(self, model: AuctionModel, user: str, amount: int, now_ms: int) -> str:
        """What the auction must do with the bid: the proxy rule of the module doc."""
        minimum = model.price + _step(model.price) if model.leader else START
        model.maxes[user] = max(model.maxes.get(user, 0), amount)
        if model.leader == user:
            model.leader_max = amount
            return "max_raised"
        if not model.leader:
            model.price, model.leader, model.leader_max = minimum, user, amount
            outcome = "accepted"
        elif amount > model.leader_max:
            price = min(amount, model.leader_max + _step(model.leader_max))
            model.price = max(minimum, price)
            model.leader, model.leader_max = user, amount
            outcome = "accepted"
        else:
            model.price = max(minimum, min(model.leader_max, amount + _step(amount)))
            outcome = "outbid"
        model.bids += 1
        # The first bid is within the window (longer than the auction); after it, the end
        # is 600 s past the window: a few seconds of test time cannot blur the boundary.
        if model.soft_ms and model.ends_ms - now_ms <= model.soft_ms:
            model.ends_ms += model.soft_ms
            model.extensions += 1
        return outcome

    # Not a short auction: whether its 0.15 s are up when the cancel lands depends on the
    # machine's speed, and a model that depends on timing is one Hypothesis cannot replay.
    @precondition(lambda self: self.running is not None and not self.running.short)
    @rule()
    def cancel(self) -> None:
        model = self.running
        assert model is not None
        auction = self.attempt(self.service.cancel(model.id))
        if isinstance(auction, ApiError):
            assert auction.code == "auction_has_bids", auction
            assert model.leader
            return
        assert not model.leader
        assert auction.state is AuctionState.CANCELLED
        model.state = AuctionState.CANCELLED
        self.carved -= 1
        self.available += 1

    @precondition(lambda self: self.running is not None)
    @rule()
    def sweep(self) -> None:
        """Any node's sweep ends an auction whose time is up, once; others say nothing."""
        model = self.running
        assert model is not None
        if model.short:
            self.run(asyncio.sleep(SHORT_S + 0.05))
        ended = [self.run(self.service.end_due(model.id)) for _ in range(2)]
        if not model.short:
            assert ended == [None, None]
            return
        want = AuctionState.SOLD if model.leader else AuctionState.UNSOLD
        assert ended == [want, None]
        model.state = want
        self.carved -= 1
        if model.leader:
            self.held += 1
            auction = self.run(self.service.get(model.id))
            assert auction.hold_id is not None
            self.hold = (auction.hold_id, model.leader, model.price)
        else:
            self.available += 1

    @precondition(lambda self: self.hold is not None)
    @rule(pay=st.booleans())
    def settle_hold(self, pay: bool) -> None:
        """The winner pays, or walks away (the hold is released, as an expiry would)."""
        assert self.hold is not None
        hold_id, _, price = self.hold
        stored = self.run(self.reservations.get_hold(SKU, hold_id))
        assert stored is not None
        assert (stored.qty, stored.price.amount_minor) == (1, price)
        if pay:
            self.run(self.reservations.commit(SKU, hold_id))
            self.sold += 1
        else:
            self.run(self.reservations.release(SKU, hold_id))
            self.available += 1
        self.held -= 1
        self.hold = None

    @invariant()
    def stock_is_exact(self) -> None:
        stock = self.run(self.reservations.stock(SKU))
        assert stock is not None
        got = (stock.available, stock.held, stock.sold, stock.deal_reserved)
        assert got == (self.available, self.held, self.sold, self.carved)
        assert stock.total == STOCK

    @invariant()
    def bids_rise_and_the_best_maximum_leads(self) -> None:
        if not self.auctions:
            return
        model = self.auctions[-1]
        log = self.run(self.service.bid_log(model.id))
        prices = [b.price.amount_minor for b in log]
        assert len(prices) == model.bids
        if prices:
            assert prices[0] == START
        for before, after in pairwise(prices):
            assert after >= before + _step(before), prices
        auction = self.run(self.service.get(model.id))
        assert auction.ends_at_ms == model.first_ends_ms + model.extensions * model.soft_ms
        assert auction.extensions == model.extensions
        assert [b.extended_ms for b in log].count(model.soft_ms or -1) == model.extensions
        assert auction.ends_at_ms == model.ends_ms
        if model.leader:
            best = max(model.maxes.values())
            assert model.maxes[model.leader] == best
            assert auction.leader_id == model.leader
            assert auction.price is not None
            assert auction.price.amount_minor == model.price <= best
            assert auction.bids == model.bids
        else:
            assert auction.price is None


def test_auctions_over_any_sequence(any_redis_url: str) -> None:
    run_machine(AuctionsMachine, any_redis_url, examples=25, steps=30)
