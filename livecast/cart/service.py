"""The cart package's services and background work (wired by :mod:`livecast.app`).

:func:`cart_ctx` is a cleanup context that builds the services from ``app[SETTINGS]``
and ``app[REDIS]`` (after the Redis, inventory and chat contexts) and owns the webhook
delivery, checkout recovery and add-to-cart tally tasks: started at start-up, cancelled
and awaited at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from redis.exceptions import RedisError

from livecast.aio import cancel_and_wait
from livecast.appkeys import EVENTS, KEYS, REDIS, SETTINGS, STREAMS
from livecast.auth import load_or_create_secret
from livecast.cart.cart import CartStore
from livecast.cart.checkout import Checkout
from livecast.cart.orders import OrderStore
from livecast.cart.payments import PaymentProvider, TestPaymentProvider
from livecast.cart.stats import Audience, AudienceSource, SalesStats, StatsEvent
from livecast.cart.tally import AddToCartTally
from livecast.cart.webhooks import WebhookDispatcher
from livecast.chat import CHAT, ChatHistory
from livecast.inventory.service import INVENTORY
from livecast.metrics import METRICS
from livecast.streams.registry import StreamState

__all__ = ["CART", "CartService", "cart_ctx"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CartService:
    carts: CartStore
    orders: OrderStore
    checkout: Checkout
    payments: PaymentProvider
    sales: SalesStats
    webhooks: WebhookDispatcher
    audience: AudienceSource
    tally: AddToCartTally


CART = web.AppKey("cart", CartService)


async def cart_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis, keys = app[REDIS], app[KEYS]
    hooks = settings.webhooks
    metrics = app[METRICS]
    webhooks = WebhookDispatcher(
        redis,
        keys,
        urls=hooks.urls,
        secret=load_or_create_secret(hooks.secret, settings.data_dir, "webhook-secret"),
        timeout_s=hooks.timeout_s,
        max_attempts=hooks.max_attempts,
        backoff_base_s=hooks.backoff_base_s,
        backoff_cap_s=hooks.backoff_cap_s,
        poll_interval_s=hooks.poll_interval_s,
        max_in_flight=hooks.max_in_flight,
        max_in_flight_per_endpoint=hooks.max_in_flight_per_endpoint,
        observe=lambda outcome: metrics.webhook_deliveries.labels(outcome).inc(),
    )
    reservations = app[INVENTORY].reservations
    payments = TestPaymentProvider(
        redis,
        keys,
        decline_card=settings.payments.test_decline_card,
        decline_amount_minor=settings.payments.test_decline_amount_minor,
        batcher=reservations.batcher,
    )
    carts = CartStore(redis, keys, max_lines=settings.cart.max_lines, batcher=reservations.batcher)
    orders = OrderStore(redis, keys, batcher=reservations.batcher)
    sales = SalesStats(redis, keys, batcher=reservations.batcher)
    app[CART] = CartService(
        carts=carts,
        orders=orders,
        checkout=Checkout(
            redis,
            keys,
            carts=carts,
            orders=orders,
            reservations=reservations,
            streams=app[STREAMS],
            payments=payments,
            stats=sales,
            webhooks=webhooks,
            lease_s=settings.cart.checkout_lease_s,
            recovery_interval_s=settings.cart.recovery_interval_s,
        ),
        payments=payments,
        sales=sales,
        webhooks=webhooks,
        audience=_ChatAudience(app[CHAT].history),
        tally=AddToCartTally(sales),
    )
    stopping = asyncio.Event()
    checkout = app[CART].checkout
    tasks = [
        asyncio.create_task(webhooks.run(), name="webhook-delivery"),
        asyncio.create_task(checkout.recover(), name="checkout-recovery"),
        asyncio.create_task(app[CART].tally.run(), name="add-to-cart-tally"),
        asyncio.create_task(
            _push_stats(app, settings.cart.stats_push_interval_s, stopping), name="stats-push"
        ),
    ]
    try:
        yield
    finally:
        # Stopped as well as cancelled: see WebhookDispatcher.stop.
        webhooks.stop()
        checkout.stop()
        app[CART].tally.stop()
        stopping.set()
        await cancel_and_wait(*tasks)
        try:
            await app[CART].tally.flush()
        except (RedisError, OSError):
            log.warning("add-to-cart counts of the last interval were not added to the stats")


async def _push_stats(app: web.Application, interval_s: float, stopping: asyncio.Event) -> None:
    """Every interval, publish each live stream's numbers as a host-only ``stats`` event.

    With several nodes, one of them pushes per stream and interval: the first to take the
    stream's short lock.
    """
    redis, keys, service = app[REDIS], app[KEYS], app[CART]
    lock_ms = max(100, int(interval_s * 1000) - 100)
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)
            return
        try:
            for stream in await app[STREAMS].list_streams(StreamState.LIVE, limit=200):
                lock = keys.key("{st:" + stream.id + "}", "stats-push")
                if not await redis.set(lock, "1", nx=True, px=lock_ms):
                    continue
                audience = await service.audience.audience(stream.id)
                await service.tally.flush()
                stats = await service.sales.stream_stats(stream.id, audience)
                await app[EVENTS].publish(StatsEvent(stream=stream.id, data=stats))
        except (RedisError, OSError):
            log.exception("pushing stream stats failed; trying again next interval")


class _ChatAudience:
    """Viewers, likes and chat numbers, as the live-events package counts them."""

    def __init__(self, history: ChatHistory) -> None:
        self._history = history

    async def audience(self, stream_id: str) -> Audience:
        numbers = await self._history.stats(stream_id)
        return Audience(
            viewers_now=numbers["viewers"],
            viewers_peak=numbers["peak_viewers"],
            unique_viewers=numbers["unique_viewers"],
            likes=numbers["likes"],
            chat_messages=numbers["chat_messages"],
            views={
                name.removeprefix("views:"): count
                for name, count in numbers.items()
                if name.startswith("views:")
            },
        )
