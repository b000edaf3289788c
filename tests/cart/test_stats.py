"""Per-stream sales numbers on real Redis: each order counted once, GMV and average order
value per currency, conversion as buyers over unique viewers."""

from __future__ import annotations

import redis.asyncio as aioredis

from livecast.cart.stats import Audience, SalesStats
from livecast.inventory.money import Money
from livecast.redisdb import KeySpace


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
