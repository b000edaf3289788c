"""Per-stream sales numbers on real Redis: each order counted once, GMV and average order
value per currency, conversion as buyers over unique viewers; over HTTP, a thousand buyers'
numbers equal what their orders say."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from aiohttp import web

from livecast.auth import Role
from livecast.cart.orders import Order, OrderLine, OrderStatus, OrderStore
from livecast.cart.service import CART
from livecast.cart.stats import Audience, SalesStats
from livecast.inventory.money import Money
from livecast.redisdb import KeySpace
from tests.conftest import Client, MakeToken, bearer


async def test_orders_count_once_into_the_stream_numbers(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    sales = SalesStats(redis_client, KeySpace(key_prefix))
    for _ in range(5):
        await sales.add_to_cart("s1")
    eur, usd = "EUR", "USD"
    orders = [
        ("ord_a", 2, Money(amount_minor=3000, currency=eur), "ann"),
        ("ord_a", 2, Money(amount_minor=3000, currency=eur), "ann"),  # a retried checkout
        ("ord_b", 1, Money(amount_minor=1001, currency=eur), "bob"),
        ("ord_c", 1, Money(amount_minor=500, currency=usd), "ann"),
    ]
    for order_id, units, amount, buyer in orders:
        await sales.count_order("s1", order_id, units=units, amount=amount, buyer_id=buyer)
    await sales.count_order(
        "s2", "ord_d", units=9, amount=Money(amount_minor=9, currency=eur), buyer_id="cy"
    )
    audience = Audience(viewers_now=3, viewers_peak=7, unique_viewers=4, likes=9, chat_messages=11)

    stats = await sales.stream_stats("s1", audience)

    assert (stats.viewers_now, stats.viewers_peak, stats.unique_viewers) == (3, 7, 4)
    assert (stats.likes, stats.chat_messages, stats.add_to_carts) == (9, 11, 5)
    assert (stats.orders, stats.buyers, stats.units_sold) == (3, 2, 4)
    assert stats.gmv == [
        Money(amount_minor=4001, currency=eur),
        Money(amount_minor=500, currency=usd),
    ]
    assert stats.average_order_value == [
        Money(amount_minor=2000, currency=eur),  # integer minor units, rounded down
        Money(amount_minor=500, currency=usd),
    ]
    assert stats.conversion == 0.5


async def test_a_quiet_stream_has_zeros_and_no_division(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    sales = SalesStats(redis_client, KeySpace(key_prefix))
    stats = await sales.stream_stats("quiet", Audience())
    assert (stats.orders, stats.units_sold, stats.gmv, stats.average_order_value) == (0, 0, [], [])
    assert stats.conversion == 0.0
    # buyers who never showed up in the audience count (an API checkout) keep it at most 1
    await sales.count_order(
        "quiet", "ord_q", units=1, amount=Money(amount_minor=100, currency="EUR"), buyer_id="dee"
    )
    assert (await sales.stream_stats("quiet", Audience())).conversion == 1.0


def _order(order_id: str, stream_id: str, buyer: str, units: int, amount: Money) -> Order:
    line = OrderLine(
        sku="TEE",
        title="Tee",
        quantity=units,
        unit_price=Money(amount_minor=amount.amount_minor // units, currency=amount.currency),
        line_total=amount,
        stream_id=stream_id,
        hold_id=f"h_{order_id}",
    )
    return Order(
        id=order_id,
        status=OrderStatus.PAID,
        buyer_id=buyer,
        buyer_name=buyer.title(),
        stream_id=stream_id,
        stream_ids=[stream_id],
        seller_ids=["seller-1"],
        lines=[line],
        units=units,
        total=amount,
        payment_provider="test",
        payment_id=f"pay_{order_id}",
        created_at="2026-01-01T00:00:00Z",
    )


async def test_a_stream_counted_before_buyers_were_exact_gets_them_from_the_ledger(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    """Data written by the former scheme: buyers in a HyperLogLog, one marker per counted
    order. The first read rebuilds the exact buyers from the orders ledger, and an order
    counted then is still not counted twice."""
    keys, eur = KeySpace(key_prefix), Money(amount_minor=1000, currency="EUR")
    ledger = OrderStore(redis_client, keys)
    old = [_order(f"ord_{i}", "s9", f"buyer-{i % 7}", 1, eur) for i in range(20)]
    for i, order in enumerate(old):
        await ledger.save(order, created_ms=i)
        await redis_client.set(f"{key_prefix}{{st:s9}}:counted:{order.id}", "1", px=60_000)
    await redis_client.hset(
        f"{key_prefix}{{st:s9}}:stats",
        mapping={"orders": 20, "units_sold": 20, "gmv_minor:EUR": 20_000, "orders:EUR": 20},
    )
    await redis_client.pfadd(f"{key_prefix}{{st:s9}}:buyers", *(o.buyer_id for o in old))
    sales = SalesStats(redis_client, keys)

    # a checkout of the former scheme resumed after the upgrade: not counted again
    await sales.count_order("s9", "ord_3", units=1, amount=eur, buyer_id="buyer-3")
    new = _order("ord_new", "s9", "buyer-new", 2, Money(amount_minor=3000, currency="EUR"))
    await ledger.save(new, created_ms=99)
    await sales.count_order("s9", new.id, units=2, amount=new.total, buyer_id="buyer-new")

    stats = await sales.stream_stats("s9", Audience())
    assert (stats.orders, stats.buyers, stats.units_sold) == (21, 8, 22)
    assert stats.gmv == [Money(amount_minor=23_000, currency="EUR")]
    assert not await redis_client.exists(f"{key_prefix}{{st:s9}}:buyers")
    assert (await sales.stream_stats("s9", Audience())).buyers == 8


async def test_stats_of_a_thousand_buyers_reconcile_with_their_orders(
    client: Client, app: web.Application, make_token: MakeToken
) -> None:
    """1,000 buyers, some buying twice, some retrying a checkout, in two currencies: every
    sales figure equals what the stream's orders say, to the unit and the minor unit."""
    seller = make_token(Role.SELLER, sub="seller-st", name="Sam")
    resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(seller))
    stream_id = (await resp.json())["id"]
    await client.post(f"/api/streams/{stream_id}/start", headers=bearer(seller))
    for sku, price, currency in (("TEE", 1999, "EUR"), ("CAP", 1250, "USD")):
        resp = await client.put(
            f"/api/products/{sku}",
            json={
                "title": sku,
                "price": {"amount_minor": price, "currency": currency},
                "stock": 10_000,
            },
            headers=bearer(seller),
        )
        assert resp.status in (200, 201), await resp.text()

    async def buy(n: int, round_: int) -> None:
        buyer = make_token(Role.VIEWER, sub=f"buyer-{n}", name=f"B{n}")
        sku = "CAP" if n % 4 == 0 else "TEE"
        body = {"stream_id": stream_id, "sku": sku, "quantity": n % 3 + 1}
        resp = await client.post("/api/cart/items", json=body, headers=bearer(buyer))
        assert resp.status == 201, await resp.text()
        headers = {**bearer(buyer), "Idempotency-Key": f"k-{n}-{round_}"}
        for _ in range(2 if n % 5 == 0 else 1):  # a retried checkout: one order
            resp = await client.post("/api/checkout", headers=headers)
            assert resp.status == 201, await resp.text()

    jobs = [(n, 0) for n in range(1000)] + [(n, 1) for n in range(0, 1000, 10)]
    for start in range(0, len(jobs), 50):
        await asyncio.gather(*(buy(n, r) for n, r in jobs[start : start + 50]))

    resp = await client.get(f"/api/streams/{stream_id}/stats", headers=bearer(seller))
    assert resp.status == 200
    stats = await resp.json()
    orders = await app[CART].orders.for_stream(stream_id, limit=10_000)
    assert len(orders) == 1100
    gmv: dict[str, int] = {}
    count: dict[str, int] = {}
    for order in orders:
        gmv[order.total.currency] = gmv.get(order.total.currency, 0) + order.total.amount_minor
        count[order.total.currency] = count.get(order.total.currency, 0) + 1
    assert stats["orders"] == len(orders)
    assert stats["buyers"] == len({order.buyer_id for order in orders}) == 1000
    assert stats["units_sold"] == sum(order.units for order in orders)
    assert stats["gmv"] == [{"amount_minor": gmv[c], "currency": c} for c in sorted(gmv)]
    assert stats["average_order_value"] == [
        {"amount_minor": gmv[c] // count[c], "currency": c} for c in sorted(gmv)
    ]
