"""Orders: what a checkout sold, to whom, at what price, from which stream.

Orders are JSON documents in Redis (durable with the append-only file), indexed by
buyer and by stream::

    <prefix>order:<id>              the Order JSON
    <prefix>orders:buyer:<sub>      sorted set of order ids by creation time
    <prefix>orders:stream:<id>      sorted set of order ids by creation time
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import msgspec
import redis.asyncio as aioredis

from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest, NotFound
from livecast.inventory.batch import ScriptBatcher, Steps
from livecast.inventory.money import Money
from livecast.redisdb import KeySpace, load_lua
from livecast.streams.registry import IsoTime

__all__ = ["Order", "OrderEvent", "OrderLine", "OrderStatus", "OrderStore"]


class OrderStatus(StrEnum):
    PAID = "paid"


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    title: str
    quantity: int
    unit_price: Money
    line_total: Money
    stream_id: str
    hold_id: str
    deal_id: str | None = None
    source: Annotated[
        Literal["live", "replay", "clip"],
        msgspec.Meta(
            description="Bought while watching the stream live, its replay, or a product clip."
        ),
    ] = "live"


LineSource = Literal["live", "replay", "clip"]


def line_source(value: str) -> LineSource:
    """A cart entry's ``source`` as an order line's (anything unknown is live)."""
    return "replay" if value == "replay" else "clip" if value == "clip" else "live"


class Order(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: OrderStatus
    buyer_id: str
    buyer_name: str
    stream_id: Annotated[
        str, msgspec.Meta(description="The stream the first line was bought from.")
    ]
    stream_ids: Annotated[
        list[str], msgspec.Meta(description="Every stream a line was bought from (attribution).")
    ]
    seller_ids: list[str]
    lines: list[OrderLine]
    units: int
    total: Money
    payment_provider: str
    payment_id: str
    created_at: IsoTime
    receipt_url: Annotated[
        str | None,
        msgspec.Meta(
            description="The order's video receipt: the stream around the moment it was "
            "bought (a VOD playlist once the stream's replay exists; 404 before)."
        ),
    ] = None

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "receipt_url", f"/receipt/{self.id}/index.m3u8")


class OrderEvent(msgspec.Struct, frozen=True, kw_only=True):
    """POSTed to each configured webhook URL for order.created and order.paid. Headers:
    Livecast-Event-Id (deduplicate on it), Livecast-Event-Type, Livecast-Signature:
    t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>. Answer 2xx to
    acknowledge; anything else is retried with exponential backoff."""

    id: str
    type: Literal["order.created", "order.paid"]
    created_at: IsoTime
    data: Order


class OrderStore:
    def __init__(
        self, redis: aioredis.Redis, keys: KeySpace, *, batcher: ScriptBatcher | None = None
    ) -> None:
        self._redis = redis
        self._keys = keys
        # Writes and single reads ride in the app's batched pipelines.
        self._batcher = batcher or ScriptBatcher(redis)
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Order)
        self._after = load_lua(redis, Path(__file__).parent / "orders_after.lua")

    def _key(self, order_id: str) -> str:
        return self._keys.key("order", order_id)

    async def save(self, order: Order, created_ms: int, *, indexed: bool = False) -> None:
        """Index the order (unless the caller did: ``indexed``), then store it; idempotent
        (the same order saved twice is one).

        The record and its indexes live in different slots (one per buyer, one per
        stream), so no transaction spans them on Redis Cluster. The indexes go first: an
        index entry without its record is skipped by readers, and a checkout resumed
        after a crash finds no record and saves again, so the record never lacks them.
        """
        if not indexed:
            await self.index(order, created_ms)
        await self.put(order)

    def index(self, order: Order, created_ms: int) -> asyncio.Future[list[Any]]:
        """List the order under its buyer and its streams (the first half of :meth:`save`),
        queued in the loop tick's batch."""
        steps = Steps().command(
            "ZADD", self._keys.key("orders", "buyer", order.buyer_id), created_ms, order.id
        )
        for stream_id in order.stream_ids:
            steps.command(
                "ZADD", self._keys.key("orders", "stream", stream_id), created_ms, order.id
            )
        return self._batcher.send(steps)

    def put(self, order: Order) -> asyncio.Future[Any]:
        """Store the record of an order already indexed (the second half of :meth:`save`),
        queued in the loop tick's batch."""
        return self._batcher.send(self.add_put(Steps(), order))

    def add_put(self, steps: Steps, order: Order) -> Steps:
        """Add :meth:`put` to a request's steps."""
        return steps.command("SET", self._key(order.id), self._encoder.encode(order))

    async def find(self, order_id: str) -> Order | None:
        if not order_id.startswith("ord_") or len(order_id) > 64:
            return None
        raw = await self._batcher.command("GET", self._key(order_id))
        return self._decoder.decode(raw) if raw is not None else None

    async def get(self, order_id: str) -> Order:
        order = await self.find(order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}", code=ErrorCode.ORDER_NOT_FOUND)
        return order

    async def for_stream(
        self, stream_id: str, *, limit: int = 100, after: str | None = None
    ) -> list[Order]:
        """The stream's orders, newest first: ``limit`` of them, after the order ``after``
        (a page's last) when given; 400 ``invalid_query`` if that is not one of them."""
        return await self._many(self._keys.key("orders", "stream", stream_id), limit, after)

    async def for_buyer(
        self, buyer_id: str, *, limit: int = 100, after: str | None = None
    ) -> list[Order]:
        """The buyer's orders, newest first, paged as :meth:`for_stream`."""
        return await self._many(self._keys.key("orders", "buyer", buyer_id), limit, after)

    async def _many(self, index: str, limit: int, after: str | None) -> list[Order]:
        if after is None:
            ids = cast(list[bytes], await self._redis.zrevrange(index, 0, limit - 1))
        else:
            found = await self._after(keys=[index], args=[after, limit])
            if found is None:
                raise BadRequest(
                    f"after={after!r} names no order of this list", code=ErrorCode.INVALID_QUERY
                )
            ids = cast(list[bytes], found)
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for order_id in ids:
                pipe.get(self._key(order_id.decode()))
            raws = await pipe.execute()
        return [self._decoder.decode(raw) for raw in raws if raw is not None]
