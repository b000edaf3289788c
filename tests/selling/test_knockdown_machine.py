"""Price knock-downs over any sequence of operations: a Hypothesis state machine on real
Redis (every Redis of the run), through the service the app uses.

Steps: start a knock-down (taps mode; a quantity, with or without a quantity per price),
tap (from one to fifty at once), buy (three buyers and the seller, keys retried), end it,
or check out a buyer's cart.

After every step: available + held + sold + in knock-downs = total and each counter is the
model's; the price is the start less one step per taps_per_step taps, never under the
floor; no more units than the quantity, nor than per_price at one price, nor than the
limit per buyer; every buy is a cart hold at the price it was made at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from livecast.inventory.reserve import HoldRef, Reservations
from livecast.selling.knockdown_types import KnockdownMode, KnockdownState
from livecast.selling.knockdowns import Knockdowns
from livecast.timeline import Timeline
from tests.redis_machine import RedisMachine, run_machine

T = TypeVar("T")

SKU = "KD-1"
STOCK = 6
SELLER = "seller-1"
BUYERS = ("ann", "bob", "cy")
START, STEP, FLOOR, EVERY = 1000, 150, 500, 4


def eur(amount: int) -> Money:
    return Money(amount_minor=amount, currency="EUR")


@dataclass
class KnockModel:
    id: str
    quantity: int
    per_price: int
    taps: int = 0
    left: int = 0
    sold_at: dict[int, int] = field(default_factory=dict)
    bought: dict[str, int] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    state: KnockdownState = KnockdownState.RUNNING

    @property
    def price(self) -> int:
        return max(FLOOR, START - STEP * (self.taps // EVERY))


class KnockdownsMachine(RedisMachine):
    def __init__(self) -> None:
        super().__init__()
        self.runs: list[KnockModel] = []
        self.available, self.carved, self.held, self.sold = STOCK, 0, 0, 0
        # hold id -> (buyer, price)
        self.holds: dict[str, tuple[str, int]] = {}
        self.run(self._build())

    async def _build(self) -> None:
        keys = self.keys
        self.reservations = Reservations(self.redis, keys)
        self.closers.append(self.reservations.batcher.aclose)
        catalog = Catalog(self.redis, keys, self.reservations)
        await catalog.put(SKU, ProductFields(title="Scarf", price=eur(1500), stock=STOCK))
        self.carts = CartStore(self.redis, keys)
        self.service = Knockdowns(
            self.redis,
            keys,
            reservations=self.reservations,
            catalog=catalog,
            carts=self.carts,
            events=EventPublisher(self.redis, keys),
            timeline=Timeline(self.redis, keys, max_entries=100, retention_s=0),
        )

    @property
    def running(self) -> KnockModel | None:
        if self.runs and self.runs[-1].state is KnockdownState.RUNNING:
            return self.runs[-1]
        return None

    def _give_back(self, model: KnockModel) -> None:
        self.available += model.left
        self.carved -= model.left
        model.left = 0

    @precondition(lambda self: self.running is None)
    @rule(quantity=st.integers(1, 5), per_price=st.sampled_from([0, 1, 2]))
    def start(self, quantity: int, per_price: int) -> None:
        knock = self.attempt(
            self.service.start(
                stream_id="st-1",
                seller_id=SELLER,
                sku=SKU,
                start_price=eur(START),
                step=eur(STEP),
                floor=eur(FLOOR),
                mode=KnockdownMode.TAPS,
                taps_per_step=EVERY,
                step_every_s=0,
                quantity=quantity,
                per_price=per_price,
                per_buyer_limit=2,
                duration_s=600,
                pay_within_s=600,
            )
        )
        if isinstance(knock, ApiError):
            assert knock.code == "insufficient_stock"
            assert self.available < quantity
            return
        assert self.available >= quantity
        self.available -= quantity
        self.carved += quantity
        self.runs.append(
            KnockModel(id=knock.id, quantity=quantity, per_price=per_price, left=quantity)
        )

    @precondition(lambda self: self.running is not None)
    @rule(n=st.sampled_from([1, 2, 3, 5, 50]))
    def tap(self, n: int) -> None:
        model = self.running
        assert model is not None
        result = self.run(self.service.tap(model.id, n))
        model.taps += n
        assert (result.price.amount_minor, result.taps) == (model.price, model.taps)

    @precondition(lambda self: self.running is not None)
    @rule(user=st.sampled_from((*BUYERS, SELLER)), key=st.sampled_from(["k1", "k2", "k3"]))
    def buy(self, user: str, key: str) -> None:
        model = self.running
        assert model is not None
        result = self.attempt(self.service.buy(model.id, user=user, key=key))
        replay = model.keys.get((user, key))
        if replay is not None:
            assert not isinstance(result, ApiError), result
            assert (result.replayed, result.hold_id) == (True, replay)
            return
        price = model.price
        if user == SELLER:
            want = "own_knockdown"
        elif model.per_price and model.sold_at.get(price, 0) >= model.per_price:
            want = "price_sold_out"
        elif model.bought.get(user, 0) >= 2:
            want = "over_limit"
        else:
            want = ""
        if want:
            assert isinstance(result, ApiError), result
            assert result.code == want, result
            return
        assert not isinstance(result, ApiError), result
        assert (result.price.amount_minor, result.replayed) == (price, False)
        model.keys[(user, key)] = result.hold_id
        model.bought[user] = model.bought.get(user, 0) + 1
        model.sold_at[price] = model.sold_at.get(price, 0) + 1
        model.left -= 1
        self.carved -= 1
        self.held += 1
        self.holds[result.hold_id] = (user, price)
        floor_gone = price == FLOOR and model.per_price and model.sold_at[price] >= model.per_price
        if model.left == 0 or floor_gone:
            model.state = KnockdownState.SOLD_OUT
            self._give_back(model)

    @precondition(lambda self: self.running is not None)
    @rule()
    def end(self) -> None:
        model = self.running
        assert model is not None
        knock = self.run(self.service.end(model.id))
        assert knock.state is KnockdownState.ENDED
        model.state = KnockdownState.ENDED
        self._give_back(model)

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data())
    def pay(self, data: st.DataObject) -> None:
        """A buyer checks a hold out: it becomes a sale at its price."""
        hold_id = data.draw(st.sampled_from(sorted(self.holds)))
        _, price = self.holds.pop(hold_id)
        refs = [HoldRef(sku=SKU, hold_id=hold_id)]
        (hold,) = self.run(self.reservations.commit_holds(refs, txn=f"pay-{hold_id}"))
        assert (hold.price.amount_minor, hold.qty) == (price, 1)
        self.held -= 1
        self.sold += 1

    @invariant()
    def stock_is_exact(self) -> None:
        product = self.stock_levels(self.reservations.base(SKU) + ":product")
        assert (
            product["available"],
            product["deal_reserved"],
            product["held"],
            product["sold"],
        ) == (self.available, self.carved, self.held, self.sold)

    @invariant()
    def the_knockdown_is_the_models(self) -> None:
        if not self.runs:
            return
        model = self.runs[-1]
        knock = self.run(self.service.get(model.id))
        assert knock.state is model.state
        assert (knock.price.amount_minor, knock.taps, knock.left) == (
            model.price,
            model.taps,
            model.left,
        )
        assert knock.sold == sum(model.sold_at.values()) <= model.quantity
        if model.per_price:
            assert max(model.sold_at.values(), default=0) <= model.per_price

    @invariant()
    def every_hold_is_in_its_buyers_cart(self) -> None:
        for hold_id, (buyer, _) in self.holds.items():
            entries = self.run(self.carts.entries(buyer))
            assert hold_id in {e.hold_id for e in entries}


def test_knockdowns_over_any_sequence(any_redis_url: str) -> None:
    run_machine(KnockdownsMachine, any_redis_url, examples=12, steps=25)
