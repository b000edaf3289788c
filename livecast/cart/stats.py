"""Per-stream sales numbers and the live stats a host watches.

Sales counters live in Redis under the stream's hash tag, updated once per order by a Lua
script (a resumed checkout counts nothing twice)::

    <prefix>{st:<id>}:stats            hash: add_to_carts, orders, units_sold,
                                       gmv_minor:<CUR>, orders:<CUR>
    <prefix>{st:<id>}:buyer-ids        set of the ids of buyers with an order here
    <prefix>{st:<id>}:counted-orders   set of the ids of the orders counted

Every sales figure is exact and reconciles with the orders ledger (the stream's orders
list): orders, buyers, units, GMV and average order value per currency. Only the
audience's unique viewers are an estimate (a HyperLogLog, about 1% off).

Streams counted before buyers were exact kept them in a HyperLogLog (``buyers``) and
marked counted orders one key each (``counted:<order>``): the first read of such a
stream's stats rebuilds its buyer set from the ledger, and the old markers still keep
those orders from being counted again.

Audience numbers (viewers now and peak, unique viewers, likes, chat messages) come from
the live-events package through :class:`AudienceSource`. Conversion is buyers over unique
viewers; average order value is GMV over orders, per currency, rounded down.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Protocol

import msgspec
import redis.asyncio as aioredis

from livecast.cart.orders import OrderStore
from livecast.events import Event
from livecast.inventory.batch import ScriptBatcher, Steps
from livecast.inventory.money import Money
from livecast.redisdb import KeySpace, load_lua

__all__ = [
    "Audience",
    "AudienceSource",
    "SalesStats",
    "SourceStats",
    "StatsEvent",
    "StreamStats",
    "source_totals",
]

_HERE = Path(__file__).parent


class Audience(msgspec.Struct, frozen=True, kw_only=True):
    viewers_now: int = 0
    viewers_peak: int = 0
    unique_viewers: int = 0
    likes: int = 0
    chat_messages: int = 0
    # unique viewers of the replay and of the clips, by source (live: unique_viewers)
    views: dict[str, int] = msgspec.field(default_factory=dict)


class AudienceSource(Protocol):
    async def audience(self, stream_id: str) -> Audience: ...


def _said(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class SourceStats(msgspec.Struct, frozen=True, kw_only=True):
    """The part of a stream's sales made where the buyer was: ``live`` or ``replay``."""

    source: str
    views: Annotated[
        int,
        _said(
            "Unique viewers who watched from this source (live: the stream's unique viewers; "
            "replay and clip: pages that opened the stream's live events there; estimated)."
        ),
    ] = 0
    add_to_carts: int
    orders: Annotated[int, _said("Orders with a line bought from this source (exact).")]
    units_sold: int
    gmv: list[Money]


def source_totals(lines: list[Any]) -> list[tuple[str, int, int]]:
    """(source, units, amount in minor units) of an order's lines of one stream, for
    every source but ``live`` (live is the rest of the totals)."""
    totals: dict[str, tuple[int, int]] = {}
    for line in lines:
        if line.source != "live":
            units, amount = totals.get(line.source, (0, 0))
            totals[line.source] = (units + line.quantity, amount + line.line_total.amount_minor)
    return [(source, units, amount) for source, (units, amount) in sorted(totals.items())]


class StreamStats(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    viewers_now: int
    viewers_peak: int
    unique_viewers: Annotated[
        int, _said("An estimate (HyperLogLog, about 1% off); every sales figure is exact.")
    ]
    likes: int
    chat_messages: int
    add_to_carts: int
    orders: Annotated[
        int,
        _said("Orders with a line bought from this stream, exactly as its orders list has them."),
    ]
    buyers: Annotated[int, _said("Distinct buyers of those orders (exact).")]
    units_sold: Annotated[int, _said("Units of this stream's lines in those orders (exact).")]
    gmv: Annotated[
        list[Money],
        _said("Per currency, the sum of this stream's line totals in those orders (exact)."),
    ]
    average_order_value: Annotated[
        list[Money],
        _said("Per currency, GMV over orders in that currency, rounded down to a minor unit."),
    ]
    conversion: Annotated[
        float, _said("Buyers over unique viewers (so an estimate, as unique viewers is).")
    ]
    by_source: Annotated[
        list[SourceStats],
        _said("The sales split by where the buyer was: live, then replay (exact)."),
    ] = []


class StatsEvent(Event, tag="stats", frozen=True, kw_only=True):
    """Hosts only: the stream's live sales and audience numbers, every
    ``cart.stats_push_interval_s``."""

    data: StreamStats


class SalesStats:
    def __init__(
        self, redis: aioredis.Redis, keys: KeySpace, *, batcher: ScriptBatcher | None = None
    ) -> None:
        self._redis = redis
        self._keys = keys
        # Counting an order rides in the app's batched pipelines, beside the checkout's
        # other commands of the same step.
        self._batcher = batcher or ScriptBatcher(redis)
        self._orders = OrderStore(redis, keys)
        self._count_order = load_lua(redis, _HERE / "stats_order.lua")

    def _key(self, stream_id: str, *parts: str) -> str:
        return self._keys.key("{st:" + stream_id + "}", *parts)

    async def add_to_cart(self, stream_id: str, count: int = 1) -> None:
        await self._redis.hincrby(self._key(stream_id, "stats"), "add_to_carts", count)

    async def add_to_cart_from(self, stream_id: str, source: str) -> None:
        """One add-to-cart more from ``source`` (not live: live is the rest)."""
        await self._redis.hincrby(self._key(stream_id, "stats"), f"src:{source}:add_to_carts", 1)

    def count_order(
        self,
        stream_id: str,
        order_id: str,
        *,
        units: int,
        amount: Money,
        buyer_id: str,
        by_source: list[tuple[str, int, int]] = [],  # noqa: B006 (never changed)
    ) -> asyncio.Future[Any]:
        """Count the order's part bought from ``stream_id``; an order counted before is not.
        ``by_source``: (source, units, amount) of its lines bought elsewhere than live.
        Queued in the loop tick's batch."""
        steps = self.add_count_order(
            Steps(),
            stream_id,
            order_id,
            units=units,
            amount=amount,
            buyer_id=buyer_id,
            by_source=by_source,
        )
        return self._batcher.send(steps)

    def add_count_order(
        self,
        steps: Steps,
        stream_id: str,
        order_id: str,
        *,
        units: int,
        amount: Money,
        buyer_id: str,
        by_source: list[tuple[str, int, int]] = [],  # noqa: B006 (never changed)
    ) -> Steps:
        """Add :meth:`count_order` to a request's steps."""
        return steps.call(
            self._count_order,
            (
                self._key(stream_id, "counted-orders"),
                self._key(stream_id, "stats"),
                self._key(stream_id, "buyer-ids"),
                self._key(stream_id, "counted", order_id),
                order_id,
                units,
                amount.amount_minor,
                amount.currency,
                buyer_id,
                *(value for totals in by_source for value in totals),
            ),
            numkeys=4,
        )

    async def stream_stats(self, stream_id: str, audience: Audience) -> StreamStats:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._key(stream_id, "stats"))
            pipe.scard(self._key(stream_id, "buyer-ids"))
            pipe.exists(self._key(stream_id, "buyers"))
            raw, buyers, estimated = await pipe.execute()
        if estimated:
            buyers = await self._rebuild_buyers(stream_id)
        counters = {k.decode(): int(v) for k, v in raw.items()}
        orders = counters.get("orders", 0)
        gmv = sorted(
            (
                Money(amount_minor=value, currency=name.split(":", 1)[1])
                for name, value in counters.items()
                if name.startswith("gmv_minor:")
            ),
            key=lambda m: m.currency,
        )
        unique = max(audience.unique_viewers, int(buyers))
        return StreamStats(
            stream_id=stream_id,
            viewers_now=audience.viewers_now,
            viewers_peak=audience.viewers_peak,
            unique_viewers=audience.unique_viewers,
            likes=audience.likes,
            chat_messages=audience.chat_messages,
            add_to_carts=counters.get("add_to_carts", 0),
            orders=orders,
            buyers=int(buyers),
            units_sold=counters.get("units_sold", 0),
            gmv=gmv,
            average_order_value=[
                Money(
                    amount_minor=m.amount_minor // counters[f"orders:{m.currency}"],
                    currency=m.currency,
                )
                for m in gmv
                if counters.get(f"orders:{m.currency}")
            ],
            conversion=round(int(buyers) / unique, 4) if unique else 0.0,
            by_source=_by_source(counters, gmv, audience),
        )

    async def _rebuild_buyers(self, stream_id: str) -> int:
        """Fill the buyer set of a stream counted under the former scheme from the orders
        ledger, then drop its HyperLogLog. Adding a buyer twice changes nothing, so orders
        counted meanwhile and a second node doing the same are harmless."""
        index = self._keys.key("orders", "stream", stream_id)
        total = int(await self._redis.zcard(index))
        buyer_ids = {
            order.buyer_id for order in await self._orders.for_stream(stream_id, limit=total)
        }
        key = self._key(stream_id, "buyer-ids")
        async with self._redis.pipeline(transaction=False) as pipe:
            if buyer_ids:
                pipe.sadd(key, *buyer_ids)
            pipe.delete(self._key(stream_id, "buyers"))
            pipe.scard(key)
            replies = await pipe.execute()
        count: int = replies[-1]
        return count


_SOURCES = ("replay", "clip")


def _by_source(counters: dict[str, int], gmv: list[Money], audience: Audience) -> list[SourceStats]:
    """Live, then each other source: those are counted (``src:<source>:...``), live is
    what the totals have beyond them (orders counted before sources were are live)."""
    others = []
    for source in _SOURCES:
        prefix = f"src:{source}:"
        others.append(
            SourceStats(
                source=source,
                views=audience.views.get(source, 0),
                add_to_carts=counters.get(prefix + "add_to_carts", 0),
                orders=counters.get(prefix + "orders", 0),
                units_sold=counters.get(prefix + "units_sold", 0),
                gmv=sorted(
                    (
                        Money(amount_minor=value, currency=name.removeprefix(prefix + "gmv_minor:"))
                        for name, value in counters.items()
                        if name.startswith(prefix + "gmv_minor:")
                    ),
                    key=lambda m: m.currency,
                ),
            )
        )
    live_gmv = []
    for total in gmv:
        elsewhere = sum(
            m.amount_minor for o in others for m in o.gmv if m.currency == total.currency
        )
        live_gmv.append(Money(amount_minor=total.amount_minor - elsewhere, currency=total.currency))
    live = SourceStats(
        source="live",
        views=audience.unique_viewers,
        add_to_carts=counters.get("add_to_carts", 0) - sum(o.add_to_carts for o in others),
        orders=counters.get("orders", 0) - sum(o.orders for o in others),
        units_sold=counters.get("units_sold", 0) - sum(o.units_sold for o in others),
        gmv=[m for m in live_gmv if m.amount_minor],
    )
    return [live, *others]
