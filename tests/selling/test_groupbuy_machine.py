"""Group buys over any sequence of operations: a Hypothesis state machine on real Redis
(every Redis of the run), through the service the app uses, with the built-in payment
provider.

Steps: start a group buy (its minimum one, two or three members), join (four buyers and
the seller, a good or a declined card, keys retried), leave, end it, or end it on a node
whose provider connection dies after its first, second or third capture or void, and
let another node's sweep finish the settlement.

After every step: available + held + sold + in group buys = total and each counter is
the model's; the group counts exactly its authorized members; every member's payment is
authorized at the top price while it runs. Once settled, each member is captured with
exactly one order at the final (lowest reached) price, or voided with no order and the
unit back; nobody else has an order or a payment.
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

from livecast.cart.orders import OrderStore
from livecast.cart.payments import Payment, PaymentState
from livecast.cart.payments import TestPaymentProvider as Provider
from livecast.cart.stats import SalesStats
from livecast.cart.webhooks import WebhookDispatcher
from livecast.errors import ApiError
from livecast.events import EventPublisher
from livecast.inventory.catalog import Catalog, ProductFields
from livecast.inventory.money import Money
from livecast.inventory.reserve import Reservations
from livecast.redisdb import KeySpace
from livecast.selling.groupbuy_types import GroupBuyState, MemberState, PriceTier
from livecast.selling.groupbuys import GroupBuys
from livecast.timeline import Timeline
from tests.redis_machine import RedisMachine, run_machine

T = TypeVar("T")

SKU = "GB-1"
STOCK = 3
CAP = 4
SELLER = "seller-1"
BUYERS = ("ann", "bob", "cy", "dee")
DECLINE = "4000000000000002"
TIERS = [
    PriceTier(min_buyers=1, price=Money(amount_minor=2000, currency="EUR")),
    PriceTier(min_buyers=2, price=Money(amount_minor=1700, currency="EUR")),
    PriceTier(min_buyers=3, price=Money(amount_minor=1500, currency="EUR")),
]


@dataclass
class GroupModel:
    id: str
    min_buyers: int
    # user -> payment (order) id of their membership now, and its state
    members: dict[str, tuple[str, MemberState]] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    # Keys whose join was declined: a retry answers that membership, void.
    declined: set[tuple[str, str]] = field(default_factory=set)
    state: GroupBuyState = GroupBuyState.RUNNING
    final: int = 0

    def authorized(self) -> list[str]:
        return [u for u, (_, s) in self.members.items() if s is MemberState.AUTHORIZED]


class DyingProvider(Provider):
    """The provider of a node whose connection dies right after its n-th capture or void."""

    def __init__(self, base: Provider, after: int) -> None:
        self.__dict__.update(base.__dict__)
        self.left = after

    def _check(self) -> None:
        if self.left <= 0:
            raise ConnectionError("the node is gone")

    def _count(self) -> None:
        self.left -= 1
        if self.left == 0:
            raise ConnectionError("the node went away")

    async def capture(self, payment_id: str, amount: Money | None = None) -> Payment:
        self._check()
        payment = await super().capture(payment_id, amount)
        self._count()
        return payment

    async def void(self, payment_id: str) -> Payment:
        self._check()
        payment = await super().void(payment_id)
        self._count()
        return payment


class GroupBuysMachine(RedisMachine):
    def __init__(self) -> None:
        super().__init__()
        self.groups: list[GroupModel] = []
        self.available, self.carved, self.sold = STOCK, 0, 0
        self.run(self._build())

    async def _build(self) -> None:
        keys = self.keys
        self.reservations = Reservations(self.redis, keys)
        self.closers.append(self.reservations.batcher.aclose)
        catalog = Catalog(self.redis, keys, self.reservations)
        await catalog.put(
            SKU,
            ProductFields(
                title="Kettle", price=Money(amount_minor=2500, currency="EUR"), stock=STOCK
            ),
        )
        self.provider = Provider(self.redis, keys, decline_card=DECLINE, decline_amount_minor=0)
        self.orders = OrderStore(self.redis, keys)
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
        self.parts = {
            "reservations": self.reservations,
            "catalog": catalog,
            "orders": self.orders,
            "sales": SalesStats(self.redis, keys),
            "webhooks": webhooks,
            "events": EventPublisher(self.redis, keys),
            "timeline": Timeline(self.redis, keys, max_entries=100, retention_s=0),
        }
        self.service = self.node(self.provider)

    def node(self, provider: Provider) -> GroupBuys:
        """The service as one node runs it, with this payment provider."""
        return GroupBuys(self.redis, KeySpace(self.prefix), payments=provider, **self.parts)  # type: ignore[arg-type]

    @property
    def running(self) -> GroupModel | None:
        if self.groups and self.groups[-1].state is GroupBuyState.RUNNING:
            return self.groups[-1]
        return None

    @precondition(lambda self: self.running is None)
    @rule(minimum=st.sampled_from([1, 2, 3]))
    def start(self, minimum: int) -> None:
        group = self.attempt(
            self.service.start(
                stream_id="st-1",
                seller_id=SELLER,
                sku=SKU,
                tiers=TIERS,
                min_buyers=minimum,
                cap=CAP,
                duration_s=600,
            )
        )
        if isinstance(group, ApiError):
            assert (group.code, self.available) == ("sold_out", 0)
            return
        self.groups.append(GroupModel(id=group.id, min_buyers=minimum))

    @precondition(lambda self: self.running is not None)
    @rule(
        user=st.sampled_from((*BUYERS, SELLER)),
        key=st.sampled_from(["k1", "k2", "k3"]),
        declined=st.booleans(),
    )
    def join(self, user: str, key: str, declined: bool) -> None:
        model = self.running
        assert model is not None
        result = self.attempt(
            self.service.join(
                model.id, user=user, name=user, key=key, card_number=DECLINE if declined else None
            )
        )
        if (user, key) in model.declined:
            assert not isinstance(result, ApiError), result
            assert (result.replayed, result.state) == (True, MemberState.VOIDED)
            return
        replay = model.keys.get((user, key))
        if replay is not None:
            assert not isinstance(result, ApiError), result
            assert (result.replayed, result.order_id) == (True, replay)
            return
        member = model.members.get(user)
        taken = sum(s is not MemberState.VOIDED for _, s in model.members.values())
        if user == SELLER:
            want = "own_groupbuy"
        elif member is not None and member[1] is MemberState.AUTHORIZED:
            want = "already_joined"
        elif taken >= CAP:
            want = "groupbuy_full"
        elif self.available < 1:
            want = "sold_out"
        elif declined:
            want = "payment_declined"
        else:
            want = ""
        if want:
            assert isinstance(result, ApiError), result
            assert result.code == want, result
            if want == "payment_declined":
                # The key was taken before the provider was asked; the membership is void.
                model.declined.add((user, key))
            return
        assert not isinstance(result, ApiError), result
        assert (result.state, result.replayed) == (MemberState.AUTHORIZED, False)
        model.members[user] = (result.order_id, MemberState.AUTHORIZED)
        model.keys[(user, key)] = result.order_id
        self.available -= 1
        self.carved += 1

    @precondition(lambda self: self.running is not None)
    @rule(user=st.sampled_from(BUYERS))
    def leave(self, user: str) -> None:
        model = self.running
        assert model is not None
        result = self.attempt(self.service.leave(model.id, user=user))
        member = model.members.get(user)
        if member is None or member[1] is not MemberState.AUTHORIZED:
            assert isinstance(result, ApiError), result
            assert result.code == "not_joined"
            return
        assert not isinstance(result, ApiError), result
        model.members[user] = (member[0], MemberState.VOIDED)
        self.available += 1
        self.carved -= 1

    def _expect_settled(self, model: GroupModel) -> None:
        authorized = model.authorized()
        succeeded = len(authorized) >= model.min_buyers
        final = TIERS[0].price.amount_minor
        for tier in TIERS:
            if len(authorized) >= tier.min_buyers:
                final = tier.price.amount_minor
        model.final = final
        model.state = GroupBuyState.SUCCEEDED if succeeded else GroupBuyState.FAILED
        for user in authorized:
            order_id = model.members[user][0]
            state = MemberState.CAPTURED if succeeded else MemberState.VOIDED
            model.members[user] = (order_id, state)
            self.carved -= 1
            if succeeded:
                self.sold += 1
            else:
                self.available += 1

    @precondition(lambda self: self.running is not None)
    @rule()
    def end(self) -> None:
        model = self.running
        assert model is not None
        group = self.run(self.service.end(model.id))
        self._expect_settled(model)
        assert group.state is model.state
        assert group.price.amount_minor == model.final

    @precondition(lambda self: self.running is not None)
    @rule(after=st.sampled_from([1, 2, 3]))
    def end_on_a_dying_node(self, after: int) -> None:
        """The node ending it dies midway; another node's sweep finishes the settlement."""
        model = self.running
        assert model is not None
        dying = self.node(DyingProvider(self.provider, after))
        try:
            self.run(dying.end(model.id))
        except ConnectionError:
            midway = self.run(self.service.get(model.id))
            assert midway.state in (GroupBuyState.CAPTURING, GroupBuyState.VOIDING)
        self._expect_settled(model)
        survivor = self.node(self.provider)
        self.run(survivor.sweep_one(model.id))
        group = self.run(self.service.get(model.id))
        assert group.state is model.state
        assert self.run(self._due_score(survivor.due_key, model.id)) is None

    async def _due_score(self, due_key: str, groupbuy_id: str) -> float | None:
        score: float | None = await self.redis.zscore(due_key, groupbuy_id)
        return score

    @invariant()
    def stock_is_exact(self) -> None:
        levels = self.stock_levels(self.reservations.base(SKU) + ":product")
        assert (levels["available"], levels["deal_reserved"], levels["sold"]) == (
            self.available,
            self.carved,
            self.sold,
        )
        assert levels["held"] == 0

    @invariant()
    def members_and_money_are_the_models(self) -> None:
        if not self.groups:
            return
        model = self.groups[-1]
        group = self.run(self.service.get(model.id))
        assert group.state is model.state
        assert group.members == len(model.authorized()) or group.state is not GroupBuyState.RUNNING
        for user, (order_id, state) in model.members.items():
            payment = self.run(self.provider.get(order_id))
            order = self.run(self.orders.find(order_id))
            assert payment is not None
            if state is MemberState.AUTHORIZED:
                assert (payment.state, payment.amount) == (PaymentState.AUTHORIZED, TIERS[0].price)
                assert order is None
            elif state is MemberState.CAPTURED:
                assert payment.state is PaymentState.CAPTURED
                assert payment.captured == Money(amount_minor=model.final, currency="EUR")
                assert order is not None
                assert (order.buyer_id, order.total.amount_minor) == (user, model.final)
                buyer_orders = self.run(self.orders.for_buyer(user))
                assert [o.id for o in buyer_orders if o.id == order_id] == [order_id]
            else:
                assert payment.state is PaymentState.VOIDED
                assert order is None
            assert self.run(self.service.member_state(model.id, user)) is state


def test_group_buys_over_any_sequence(any_redis_url: str) -> None:
    run_machine(GroupBuysMachine, any_redis_url, examples=12, steps=25)
