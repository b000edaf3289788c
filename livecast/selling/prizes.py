"""Prize orders: a unit someone won becomes a zero-priced order, through the steps a
checkout's order takes, so everything that reads orders sees it: the orders ledger (the
winner's and the stream's lists), the stream's sales stats, and the ``order.created`` and
``order.paid`` webhooks. No payment: ``payment_provider`` is ``prize``.

Every step is idempotent by the order id (the hold's commit takes it as its txn, the
ledger and the stats count an order once, the webhook events' ids are made from it), so
a caller that stopped midway makes the same order again, and only once.
"""

from __future__ import annotations

import asyncio

import msgspec
import redis.asyncio as aioredis

from livecast.cart.orders import Order, OrderLine, OrderStatus, OrderStore
from livecast.cart.stats import SalesStats
from livecast.cart.webhooks import WebhookDispatcher
from livecast.inventory._private import server_now_ms
from livecast.inventory.money import Money
from livecast.inventory.reserve import HoldRef, Reservations
from livecast.streams.registry import iso_time

__all__ = ["Prize", "PrizeOrders"]


class Prize(msgspec.Struct, frozen=True, kw_only=True):
    """A won unit: the winner's hold of it, and where it was won."""

    order_id: str
    sku: str
    hold_id: str
    title: str
    winner_id: str
    winner_name: str
    stream_id: str
    seller_id: str
    won_at_ms: int


class PrizeOrders:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        reservations: Reservations,
        orders: OrderStore,
        sales: SalesStats,
        webhooks: WebhookDispatcher,
    ) -> None:
        self._redis = redis
        self._reservations = reservations
        self._orders = orders
        self._sales = sales
        self._webhooks = webhooks

    async def make(self, prize: Prize) -> Order:
        """Commit the winner's hold into the prize's zero-priced order (see the module doc)."""
        committed = await self._reservations.commit_holds(
            [HoldRef(sku=prize.sku, hold_id=prize.hold_id)], txn=prize.order_id
        )
        zero = Money(amount_minor=0, currency=committed[0].price.currency)
        created_ms = prize.won_at_ms or await server_now_ms(self._redis)
        order = Order(
            id=prize.order_id,
            status=OrderStatus.PAID,
            buyer_id=prize.winner_id,
            buyer_name=prize.winner_name,
            stream_id=prize.stream_id,
            stream_ids=[prize.stream_id],
            seller_ids=[prize.seller_id],
            lines=[
                OrderLine(
                    sku=prize.sku,
                    title=prize.title,
                    quantity=1,
                    unit_price=zero,
                    line_total=zero,
                    stream_id=prize.stream_id,
                    hold_id=prize.hold_id,
                )
            ],
            units=1,
            total=zero,
            payment_provider="prize",
            payment_id="",
            created_at=iso_time(created_ms) or "",
        )
        await self._orders.save(order, created_ms)
        await self._sales.count_order(
            prize.stream_id, order.id, units=1, amount=zero, buyer_id=order.buyer_id
        )
        if self._webhooks.enabled:
            payload = msgspec.to_builtins(order)
            await asyncio.gather(
                *(
                    self._webhooks.enqueue(event, payload, event_id=f"evt_{order.id}_{suffix}")
                    for event, suffix in (("order.created", "created"), ("order.paid", "paid"))
                )
            )
        self._reservations.dirty_skus.setdefault(prize.sku, 0)
        return order
