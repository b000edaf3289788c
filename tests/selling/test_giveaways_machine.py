"""Giveaways over any sequence of operations: a Hypothesis state machine on real Redis
(every Redis of the run), through the service the app uses, with the real order path for
the prize.

Steps: start a giveaway (for everyone, the seller's followers or the stream's buyers;
drawn by the host, or at a time far enough away that no sweep in the run reaches it),
enter (three viewers and the seller, any giveaway of the run), follow and unfollow the
seller, buy on the stream, draw, cancel, a sweep on any node, and the stream ending.

After every step: available + in giveaways + sold = stock, each the model's; each
giveaway's state and entrants (in entry order) are the model's; one entry per person, and
only eligible people entered (or those who entered while eligible); the seller never.
Once drawn: the revealed seed hashes to the commitment published at the start, the
winner is ``winner_index(seed, entrants)`` of the entry list, and the winner has exactly
one zero-priced order for the prize; with no entries the unit went back to stock. A draw
happens once: a sweep or a stream end after it changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    invariant,
    precondition,
    rule,
)

from livecast.auth import Identity, Role
from livecast.cart.orders import OrderStore
from livecast.cart.stats import SalesStats
from livecast.cart.webhooks import WebhookDispatcher
from livecast.chat.history import ChatHistory
from livecast.config import ChatSettings
from livecast.errors import ApiError
from livecast.events import EventPublisher
from livecast.inventory.catalog import Catalog, ProductFields
from livecast.inventory.money import Money
from livecast.inventory.reserve import Reservations
from livecast.selling.follows import Follows
from livecast.selling.giveaway_types import Eligibility, Giveaway, GiveawayState
from livecast.selling.giveaways import Giveaways, winner_index
from livecast.selling.prizes import PrizeOrders
from livecast.streams.registry import StreamRegistry
from livecast.timeline import Timeline
from tests.redis_machine import RedisMachine, run_machine

T = TypeVar("T")

SKU = "GIFT-1"
STOCK = 2
SELLER = "seller-1"
VIEWERS = ("ann", "bob", "cy")
EUR = Money(amount_minor=1000, currency="EUR")


@dataclass
class GiveawayModel:
    id: str
    eligibility: Eligibility
    commitment: str
    state: GiveawayState = GiveawayState.RUNNING
    entrants: list[str] = field(default_factory=list)
    winner: str | None = None


class GiveawaysMachine(RedisMachine):
    def __init__(self) -> None:
        super().__init__()
        self.giveaways: list[GiveawayModel] = []
        self.available, self.carved, self.sold = STOCK, 0, 0
        self.followers: set[str] = set()
        self.buyers: set[str] = set()
        self.orders_bought = 0
        self.run(self._build())

    async def _build(self) -> None:
        keys = self.keys
        self.reservations = Reservations(self.redis, keys)
        self.closers.append(self.reservations.batcher.aclose)
        catalog = Catalog(self.redis, keys, self.reservations)
        await catalog.put(SKU, ProductFields(title="Scarf", price=EUR, stock=STOCK))
        streams = StreamRegistry(self.redis, keys)
        stream = await streams.create(
            title="Gifts",
            description="",
            seller_id=SELLER,
            seller_name="Shop",
            scheduled_start_ms=None,
            featured_skus=[SKU],
        )
        self.stream_id = stream.id
        events = EventPublisher(self.redis, keys)
        self.orders = OrderStore(self.redis, keys)
        self.sales = SalesStats(self.redis, keys, batcher=self.reservations.batcher)
        webhooks = WebhookDispatcher(
            self.redis,
            keys,
            urls=(),
            secret="s",
            timeout_s=1,
            max_attempts=1,
            backoff_base_s=1,
            backoff_cap_s=1,
            poll_interval_s=1,
        )
        self.follows = Follows(self.redis, keys)
        self.service = Giveaways(
            self.redis,
            keys,
            reservations=self.reservations,
            catalog=catalog,
            prizes=PrizeOrders(
                self.redis,
                reservations=self.reservations,
                orders=self.orders,
                sales=self.sales,
                webhooks=webhooks,
            ),
            streams=streams,
            chat=ChatHistory(self.redis, keys, events, ChatSettings()),
            follows=self.follows,
            events=events,
            timeline=Timeline(self.redis, keys, max_entries=100, retention_s=0),
        )

    @property
    def running(self) -> GiveawayModel | None:
        if self.giveaways and self.giveaways[-1].state is GiveawayState.RUNNING:
            return self.giveaways[-1]
        return None

    def _eligible(self, model: GiveawayModel, user: str) -> bool:
        if model.eligibility is Eligibility.FOLLOWERS:
            return user in self.followers
        if model.eligibility is Eligibility.BUYERS:
            return user in self.buyers
        return True

    # -- steps ------------------------------------------------------------------------

    @rule(eligibility=st.sampled_from(list(Eligibility)), timed=st.booleans())
    def start(self, eligibility: Eligibility, timed: bool) -> None:
        result = self.attempt(
            self.service.start(
                stream_id=self.stream_id,
                seller_id=SELLER,
                sku=SKU,
                eligibility=eligibility,
                duration_s=3600 if timed else 0,
            )
        )
        if self.running is not None:
            assert isinstance(result, ApiError)
            assert result.code == "giveaway_running"
            return
        if self.available == 0:
            assert isinstance(result, ApiError)
            assert result.code == "sold_out"
            return
        assert not isinstance(result, ApiError), result
        assert result.state is GiveawayState.RUNNING
        assert result.seed is None  # only its commitment until the draw
        self.available -= 1
        self.carved += 1
        self.giveaways.append(
            GiveawayModel(id=result.id, eligibility=eligibility, commitment=result.seed_sha256)
        )

    @precondition(lambda self: bool(self.giveaways))
    @rule(data=st.data(), user=st.sampled_from((*VIEWERS, SELLER)))
    def enter(self, data: st.DataObject, user: str) -> None:
        model = data.draw(st.sampled_from(self.giveaways))
        role = Role.SELLER if user == SELLER else Role.VIEWER
        result = self.attempt(
            self.service.enter(model.id, Identity(sub=user, name=user.title(), role=role))
        )
        entered = user in model.entrants
        if user == SELLER:
            want = "own_giveaway"
        elif not self._eligible(model, user) and not entered:
            want = "not_eligible"
        elif model.state is not GiveawayState.RUNNING:
            want = "giveaway_ended"
        else:
            assert not isinstance(result, ApiError), result
            assert result.replayed is entered
            if not entered:
                model.entrants.append(user)
            assert result.entries == len(model.entrants)
            return
        assert isinstance(result, ApiError), (user, model)
        assert result.code == want, (result, model)

    @rule(user=st.sampled_from(VIEWERS), follow=st.booleans())
    def follow(self, user: str, follow: bool) -> None:
        if follow:
            self.run(self.follows.follow(user, SELLER))
            self.followers.add(user)
        else:
            self.run(self.follows.unfollow(user, SELLER))
            self.followers.discard(user)

    @rule(user=st.sampled_from(VIEWERS))
    def buy(self, user: str) -> None:
        """An order of ``user``'s on this stream, counted as checkout counts it."""
        self.orders_bought += 1
        order_id = f"ord_bought-{self.orders_bought}"
        self.run(self._count_order(order_id, user))
        self.buyers.add(user)

    async def _count_order(self, order_id: str, user: str) -> None:
        await self.sales.count_order(self.stream_id, order_id, units=1, amount=EUR, buyer_id=user)

    def _drawn(self, model: GiveawayModel, giveaway: Giveaway) -> None:
        """The model after ``model`` was drawn (by the host or with its stream)."""
        if model.entrants:
            model.state = GiveawayState.DRAWN
            model.winner = giveaway.winner_id
            assert model.winner in model.entrants
            self.buyers.add(model.winner)  # the prize order makes the winner a buyer here
            self.carved -= 1
            self.sold += 1
        else:
            model.state = GiveawayState.NO_ENTRIES
            self.carved -= 1
            self.available += 1

    @precondition(lambda self: bool(self.giveaways))
    @rule(data=st.data())
    def draw(self, data: st.DataObject) -> None:
        model = data.draw(st.sampled_from(self.giveaways))
        result = self.attempt(self.service.draw(model.id))
        if model.state is not GiveawayState.RUNNING:
            assert isinstance(result, ApiError)
            assert result.code == "giveaway_ended"
            return
        assert not isinstance(result, ApiError), result
        self._drawn(model, result)
        assert result.state is model.state

    @precondition(lambda self: bool(self.giveaways))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        model = data.draw(st.sampled_from(self.giveaways))
        result = self.attempt(self.service.cancel(model.id))
        if model.state is not GiveawayState.RUNNING:
            assert isinstance(result, ApiError)
            assert result.code == "giveaway_ended"
            return
        assert not isinstance(result, ApiError), result
        assert result.state is GiveawayState.CANCELLED
        model.state = GiveawayState.CANCELLED
        self.carved -= 1
        self.available += 1

    @precondition(lambda self: bool(self.giveaways))
    @rule()
    def sweep(self) -> None:
        """Any node's sweep: nothing is due (host draws, or an hour away), and a drawn
        giveaway is never drawn or settled again."""
        for model in self.giveaways:
            assert self.run(self.service.draw_due(model.id)) is None

    @rule()
    def stream_ends(self) -> None:
        model = self.running
        drawn = self.run(self.service.draw_for_stream(self.stream_id))
        if model is None:
            assert drawn is None
            return
        assert drawn is not None
        assert drawn.id == model.id
        self._drawn(model, drawn)

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def stock_is_exact(self) -> None:
        levels = self.stock_levels(self.reservations.base(SKU) + ":product")
        assert (levels["available"], levels["deal_reserved"], levels["sold"]) == (
            self.available,
            self.carved,
            self.sold,
        )
        assert levels["held"] == 0
        assert self.available + self.carved + self.sold == STOCK

    @invariant()
    def each_giveaway_is_its_model(self) -> None:
        for model in self.giveaways:
            giveaway = self.run(self.service.get(model.id))
            assert giveaway.state is model.state, (giveaway, model)
            assert giveaway.entries == len(model.entrants)
            assert SELLER not in model.entrants
            audit = self.run(self.service.audit(model.id))
            assert audit.seed_sha256 == model.commitment
            if model.state is not GiveawayState.DRAWN:
                assert giveaway.winner_id is None
                assert giveaway.order_id is None
                continue
            assert audit.seed is not None
            assert audit.entrants == model.entrants
            assert hashlib.sha256(audit.seed.encode()).hexdigest() == model.commitment
            index = winner_index(audit.seed, model.entrants)
            assert (audit.winner_index, audit.winner_id) == (index, model.entrants[index])
            assert giveaway.winner_id == model.winner == model.entrants[index]

    @invariant()
    def every_winner_has_one_free_order_per_prize(self) -> None:
        prizes: dict[str, list[str]] = {}
        for model in self.giveaways:
            if model.winner is not None:
                prizes.setdefault(model.winner, []).append("ord_giveaway-" + model.id)
        for user in VIEWERS:
            orders = self.run(self.orders.for_buyer(user))
            won = sorted(o.id for o in orders if o.id.startswith("ord_giveaway-"))
            assert won == sorted(prizes.get(user, [])), (user, won)
            for order in orders:
                if order.id in won:
                    assert (order.total.amount_minor, order.units) == (0, 1)
                    assert [line.sku for line in order.lines] == [SKU]


def test_giveaways_over_any_sequence(any_redis_url: str) -> None:
    run_machine(GiveawaysMachine, any_redis_url, examples=20, steps=30)
