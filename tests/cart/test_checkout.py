"""A checkout stopped between any two of its steps is finished or voided by the recovery
pass, the buyer's retry returns the order, and money and stock reconcile.

The node "dies" mid-checkout: right after a step applied, the step blocks (the node is
frozen; its lease runs out) and later fails (it is gone).
Faults come through a payment-provider subclass and wrappers around livecast's own stores,
over the real Redis; nothing of Redis is mocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from livecast.app import create_app
from livecast.appkeys import KEYS, REDIS, TOKENS
from livecast.auth import Role
from livecast.cart import payments
from livecast.cart.payments import Payment
from livecast.cart.service import CART
from livecast.config import Settings
from livecast.embedded_redis import EmbeddedRedis
from livecast.inventory.money import Money
from livecast.inventory.service import INVENTORY
from tests.cart.conftest import Shop, new_buyer, sub_of
from tests.conftest import AiohttpClient, MakeToken, bearer, make_settings
from tests.ingest.conftest import eventually


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(
        redis_url,
        key_prefix,
        tmp_path,
        cart__checkout_lease_s=0.5,
        cart__recovery_interval_s=0.05,
        # A merchant endpoint, so that orders enqueue their events (nothing listens there:
        # deliveries wait to be retried, which is all these tests need).
        webhooks__urls=("http://127.0.0.1:9/hooks",),
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

    async def capture(self, payment_id: str, amount: Money | None = None) -> Payment:
        payment = await super().capture(payment_id, amount)
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
        # The order's record, its count and the cart's clearing are one entry of a batch:
        # the node stops after all of them or before.
        "finished": (service.checkout, "_finish"),
        "enqueued": (service.webhooks, "enqueue"),
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
    "finished",
    "enqueued",
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
        deliveries = await shop.app[REDIS].hkeys(shop.app[KEYS].key("{webhooks}", "deliveries"))
        assert sorted(deliveries) == [
            f"evt_{order['id']}_{event}.0".encode() for event in ("created", "paid")
        ]
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


async def _committed_holds(shop: Shop, sku: str) -> dict[str, tuple[str, int]]:
    """Committed holds of ``sku``: hold id -> (its order id, units)."""
    redis = shop.app[REDIS]
    base = shop.app[INVENTORY].reservations.base(sku)
    found: dict[str, tuple[str, int]] = {}
    async for key in redis.scan_iter(match=base + ":hold:*"):
        state, txn, qty = cast(list[Any], await redis.hmget(key, ["state", "txn", "qty"]))
        if state == b"committed":
            found[key.decode().rsplit(":", 1)[1]] = (txn.decode(), int(qty))
    return found


async def test_a_starved_pool_loses_no_paid_order(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
    make_token: MakeToken,
) -> None:
    """Four Redis connections, short command timeouts, and 120 buyers checking out at once
    over HTTP: whatever fails midway is settled, every committed hold belongs to an order
    its buyer sees, every captured payment is an order, and the stock adds up."""
    app = create_app(
        make_settings(
            redis_url,
            key_prefix,
            tmp_path,
            redis__max_connections=4,
            redis__command_timeout_s=0.15,
            cart__checkout_lease_s=0.5,
            cart__recovery_interval_s=0.05,
        )
    )
    client = await aiohttp_client(app)
    seller = app[TOKENS].issue(
        sub="s-1", name="S", role=Role.SELLER, streams=frozenset(), ttl_s=600
    )
    resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(seller))
    stream_id = (await resp.json())["id"]
    await client.post(f"/api/streams/{stream_id}/start", headers=bearer(seller))
    shop = Shop(client=client, app=app, seller=seller, stream_id=stream_id)
    await shop.product("HOT", price=2500, stock=90)
    buyers = [
        app[TOKENS].issue(sub=f"b-{n}", name="B", role=Role.VIEWER, streams=frozenset(), ttl_s=600)
        for n in range(120)
    ]

    async def add(buyer: str) -> None:
        for _ in range(20):  # a retry with the same hold id holds nothing twice
            resp = await shop.add(buyer, "HOT", hold_id="h-" + sub_of(buyer, shop))
            if resp.status != 503:
                assert resp.status in (201, 409), await resp.text()
                return
        raise AssertionError("add-to-cart never got through")

    await asyncio.gather(*(add(b) for b in buyers))
    first = await asyncio.gather(*(shop.checkout(b, "pay") for b in buyers))
    assert {r.status for r in first} <= {201, 409, 422, 503}, [r.status for r in first]

    async def settled() -> bool:
        return await _open_checkouts(shop) == 0

    await eventually(settled, within=20)
    orders = {o["id"]: o for b in buyers for o in await _orders(shop, b)}
    committed = await _committed_holds(shop, "HOT")
    assert {txn for txn, _ in committed.values()} == set(orders)
    ledger = await _ledger(shop)
    assert {p for p, state in ledger.items() if state == "captured"} == set(orders)
    assert set(ledger.values()) <= {"captured", "voided"}
    sold = sum(o["units"] for o in orders.values())
    stock = await shop.stock("HOT")
    assert stock["sold"] == sold == len(committed)
    assert stock["stock"] + stock["held"] + stock["sold"] == 90

    # Every buyer's retry answers with their order, or a clear 4xx (nothing to buy).
    again = await asyncio.gather(*(shop.checkout(b, "pay") for b in buyers))
    for buyer, resp in zip(buyers, again, strict=True):
        mine = await _orders(shop, buyer)
        if mine:
            assert resp.status == 201, await resp.text()
            assert [(await resp.json())["id"]] == [o["id"] for o in mine]
        else:
            assert resp.status in (409, 422), await resp.text()


@pytest.mark.parametrize("step", ["authorized", "committed"])
async def test_a_checkout_stopped_by_a_redis_restart_is_settled_after_it(
    aiohttp_client: AiohttpClient,
    tmp_path_factory: pytest.TempPathFactory,
    key_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    """Redis restarts (from its append-only file) while a checkout is midway: once it is
    back, the recovery pass voids or finishes that checkout, and the retry pays once."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("restarting"))
    await asyncio.to_thread(server.start)
    try:
        app = create_app(
            make_settings(
                server.url,
                key_prefix,
                tmp_path,
                cart__checkout_lease_s=0.5,
                cart__recovery_interval_s=0.05,
            )
        )
        client = await aiohttp_client(app)
        issue = app[TOKENS].issue
        seller = issue(sub="s-1", name="S", role=Role.SELLER, streams=frozenset(), ttl_s=600)
        resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(seller))
        stream_id = (await resp.json())["id"]
        await client.post(f"/api/streams/{stream_id}/start", headers=bearer(seller))
        shop = Shop(client=client, app=app, seller=seller, stream_id=stream_id)
        await shop.product("KILN", price=45000, stock=2)
        buyer = issue(sub="b-1", name="B", role=Role.VIEWER, streams=frozenset(), ttl_s=600)
        assert (await shop.add(buyer, "KILN")).status == 201
        freeze = Freeze()
        _install(shop, step, freeze, monkeypatch)

        stopped = asyncio.create_task(shop.checkout(buyer, "k1"))
        async with asyncio.timeout(10):
            await freeze.hit.wait()
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        freeze.release.set()
        assert (await stopped).status == 503

        async def settled() -> bool:
            try:
                return await _open_checkouts(shop) == 0
            except (RedisConnectionError, OSError):
                return False  # the old connections find Redis gone once

        await eventually(settled, within=15)
        expected = "captured" if step == "committed" else "voided"
        assert list((await _ledger(shop)).values()) == [expected]

        resp = await shop.checkout(buyer, "k1")
        assert resp.status == 201, await resp.text()
        order = await resp.json()
        assert [o["id"] for o in await _orders(shop, buyer)] == [order["id"]]
        ledger = await _ledger(shop)
        assert ledger.pop(order["id"]) == "captured"
        assert list(ledger.values()) == ([] if step == "committed" else ["voided"])
        assert await shop.stock("KILN") == {"stock": 1, "held": 0, "sold": 1}
    finally:
        await asyncio.to_thread(server.stop)
