"""A checkout stopped between any two of its steps is finished or voided by the recovery
pass, the buyer's retry returns the order, and money and stock reconcile.

The node "dies" mid-checkout: right after a step applied, the step blocks (the node is
frozen and stops refreshing nothing; its lease runs out) and later fails (it is gone).
Faults come through a payment-provider subclass and wrappers around livecast's own stores,
over the real Redis; nothing of Redis is mocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from livecast.appkeys import KEYS, REDIS
from livecast.cart import payments
from livecast.cart.payments import Payment
from livecast.cart.service import CART
from livecast.config import Settings
from livecast.inventory.money import Money
from livecast.inventory.service import INVENTORY
from tests.cart.conftest import Shop, new_buyer, sub_of
from tests.conftest import MakeToken, bearer, make_settings
from tests.ingest.conftest import eventually


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(
        redis_url,
        key_prefix,
        tmp_path,
        cart__checkout_lease_s=0.5,
        cart__recovery_interval_s=0.05,
    )


class Freeze:
    """Where the node stops: ``hit`` is set when the step ran; the step then waits for
    ``release`` and fails, as a node that froze and then died."""

    def __init__(self) -> None:
        self.hit = asyncio.Event()
        self.release = asyncio.Event()
        self.armed = True

    async def stop_here(self) -> None:
        if not self.armed:
            return
        self.armed = False
        self.hit.set()
        await self.release.wait()
        raise RedisConnectionError("the node went away")


class FreezingProvider(payments.TestPaymentProvider):
    """The built-in test provider, stopping before or after one of its calls."""

    def __init__(self, base: payments.TestPaymentProvider, freeze: Freeze, at: str) -> None:
        self.__dict__.update(base.__dict__)
        self._freeze = freeze
        self._at = at

    async def authorize(
        self, payment_id: str, amount: Money, *, buyer: str, card_number: str | None
    ) -> Payment:
        if self._at == "journaled":
            await self._freeze.stop_here()
        payment = await super().authorize(payment_id, amount, buyer=buyer, card_number=card_number)
        if self._at == "authorized":
            await self._freeze.stop_here()
        return payment

    async def capture(self, payment_id: str) -> Payment:
        payment = await super().capture(payment_id)
        if self._at == "captured":
            await self._freeze.stop_here()
        return payment


def _freeze_after(target: Any, name: str, freeze: Freeze, monkeypatch: pytest.MonkeyPatch) -> None:
    real: Callable[..., Awaitable[Any]] = getattr(target, name)

    async def then_stop(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        await freeze.stop_here()
        return result

    monkeypatch.setattr(target, name, then_stop)


def _install(shop: Shop, step: str, freeze: Freeze, monkeypatch: pytest.MonkeyPatch) -> None:
    service = shop.app[CART]
    reservations = shop.app[INVENTORY].reservations
    if step in ("journaled", "authorized", "captured"):
        provider = FreezingProvider(service.payments, freeze, step)  # type: ignore[arg-type]
        monkeypatch.setattr(service.checkout, "_payments", provider)
        return
    if step in ("prepared", "decided"):
        real_decide = reservations._decide

        async def decide(txn: str, outcome: str) -> str:
            if outcome == "commit" and step == "prepared":
                await freeze.stop_here()
            decided = await real_decide(txn, outcome)
            if outcome == "commit" and step == "decided":
                await freeze.stop_here()
            return decided

        monkeypatch.setattr(reservations, "_decide", decide)
        return
    target, name = {
        "committed": (reservations, "commit_holds"),
        "order_indexed": (service.orders, "index"),
        "order_saved": (service.orders, "save"),
        "counted": (service.sales, "count_order"),
        "enqueued": (service.webhooks, "enqueue"),
        "cart_cleared": (service.carts, "remove"),
    }[step]
    _freeze_after(target, name, freeze, monkeypatch)


async def _ledger(shop: Shop) -> dict[str, str]:
    """The test provider's payments: id -> state."""
    ledger: dict[str, str] = {}
    provider: Any = shop.app[CART].payments
    async for key in shop.app[REDIS].scan_iter(match=shop.app[KEYS].key("payments", "test", "*")):
        payment = await provider.get(key.decode().rsplit(":", 1)[1])
        ledger[payment.id] = payment.state.value
    return ledger


async def _orders(shop: Shop, buyer: str) -> list[dict[str, Any]]:
    resp = await shop.client.get("/api/orders", headers=bearer(buyer))
    assert resp.status == 200
    orders: list[dict[str, Any]] = (await resp.json())["orders"]
    return orders


async def _open_checkouts(shop: Shop) -> int:
    count: int = await shop.app[REDIS].zcard(shop.app[CART].checkout.open_key)
    return count


FINISHED = [
    "decided",
    "committed",
    "captured",
    "order_indexed",
    "order_saved",
    "counted",
    "enqueued",
    "cart_cleared",
]
VOIDED = ["journaled", "authorized", "prepared"]


@pytest.mark.parametrize("step", VOIDED + FINISHED)
async def test_a_checkout_stopped_after_any_step_is_settled_by_the_recovery_pass(
    shop: Shop, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    await shop.product("VASE", price=3100, stock=4)
    await shop.product("BOWL", price=1200, stock=4)
    buyer = new_buyer(make_token)
    await shop.add(buyer, "VASE")
    await shop.add(buyer, "BOWL", 2)
    freeze = Freeze()
    _install(shop, step, freeze, monkeypatch)

    stopped = asyncio.create_task(shop.checkout(buyer, "k1"))
    async with asyncio.timeout(10):
        await freeze.hit.wait()

    if step in FINISHED:
        # The holds were the order's: the order is finished without the buyer.
        async def finished() -> bool:
            return len(await _orders(shop, buyer)) == 1 and await _open_checkouts(shop) == 0

        await eventually(finished, within=10)
        (order,) = await _orders(shop, buyer)
        assert await _ledger(shop) == {order["id"]: "captured"}
        assert await shop.stock("VASE") == {"stock": 3, "held": 0, "sold": 1}
        assert await shop.stock("BOWL") == {"stock": 2, "held": 0, "sold": 2}
        cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
        assert (cart["lines"], cart["expired"]) == ([], [])
    else:
        # Nothing was committed: the payment is voided and the holds stay in the cart.
        async def voided() -> bool:
            ledger = await _ledger(shop)
            return list(ledger.values()) == ["voided"] and await _open_checkouts(shop) == 0

        await eventually(voided, within=10)
        assert await _orders(shop, buyer) == []
        assert await shop.stock("VASE") == {"stock": 3, "held": 1, "sold": 0}
        assert await shop.stock("BOWL") == {"stock": 2, "held": 2, "sold": 0}
        cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
        assert sorted(line["state"] for line in cart["lines"]) == ["held", "held"]

    freeze.release.set()  # the frozen node's request now fails
    assert (await stopped).status == 503

    resp = await shop.checkout(buyer, "k1")
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    assert order["total"] == {"amount_minor": 5500, "currency": "EUR"}
    assert resp.headers["Idempotent-Replayed"] == ("true" if step in FINISHED else "false")
    again = await shop.checkout(buyer, "k1")
    assert await again.json() == order
    assert [o["id"] for o in await _orders(shop, buyer)] == [order["id"]]

    # Money and stock reconcile: one captured payment, for the one order; the rest voided.
    ledger = await _ledger(shop)
    assert ledger.pop(order["id"]) == "captured"
    assert set(ledger.values()) <= {"voided"}
    assert len(ledger) == (0 if step in FINISHED else 1)
    assert await shop.stock("VASE") == {"stock": 3, "held": 0, "sold": 1}
    assert await shop.stock("BOWL") == {"stock": 2, "held": 0, "sold": 2}
    stats = await (
        await shop.client.get(f"/api/streams/{shop.stream_id}/stats", headers=bearer(shop.seller))
    ).json()
    assert (stats["orders"], stats["units_sold"]) == (1, 3)
    assert sub_of(buyer, shop) == order["buyer_id"]


async def test_a_node_that_outlives_its_lease_starts_over_after_the_void(
    shop: Shop, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node frozen before the payment call past its lease: the recovery pass voids the
    checkout; when the node wakes, its late authorization is refused and it starts over,
    so the buyer still gets exactly one order and one captured payment."""
    await shop.product("LAMP", price=4900, stock=2)
    buyer = new_buyer(make_token)
    await shop.add(buyer, "LAMP")
    freeze = Freeze()
    service = shop.app[CART]

    class WakingProvider(FreezingProvider):
        async def authorize(
            self, payment_id: str, amount: Money, *, buyer: str, card_number: str | None
        ) -> Payment:
            if self._freeze.armed:
                self._freeze.armed = False
                self._freeze.hit.set()
                await self._freeze.release.wait()  # then carries on, late
            return await payments.TestPaymentProvider.authorize(
                self, payment_id, amount, buyer=buyer, card_number=card_number
            )

    provider = WakingProvider(service.payments, freeze, "")  # type: ignore[arg-type]
    monkeypatch.setattr(service.checkout, "_payments", provider)
    late = asyncio.create_task(shop.checkout(buyer, "slow"))
    async with asyncio.timeout(10):
        await freeze.hit.wait()

    async def voided() -> bool:
        return list((await _ledger(shop)).values()) == ["voided"]

    await eventually(voided, within=10)
    freeze.release.set()
    resp = await late
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    ledger = await _ledger(shop)
    assert ledger.pop(order["id"]) == "captured"
    assert list(ledger.values()) == ["voided"]
    assert [o["id"] for o in await _orders(shop, buyer)] == [order["id"]]
    assert await shop.stock("LAMP") == {"stock": 1, "held": 0, "sold": 1}
