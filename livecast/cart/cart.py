"""A buyer's cart: lines that each point at a stock hold.

The hold (in :mod:`livecast.inventory.reserve`) is the truth about quantity, price and
expiry; the cart only remembers which holds are the buyer's and where they came from::

    <prefix>cart:<sub>     hash: hold id -> CartEntry JSON
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis

from livecast.redisdb import KeySpace

__all__ = ["CartEntry", "CartStore"]


class CartEntry(msgspec.Struct, frozen=True, kw_only=True):
    hold_id: str
    sku: str
    stream_id: str
    title: str
    deal_id: str | None = None


class CartStore:
    def __init__(self, redis: aioredis.Redis, keys: KeySpace, *, max_lines: int = 50) -> None:
        self._redis = redis
        self._keys = keys
        self.max_lines = max_lines
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(CartEntry)

    def _key(self, buyer_id: str) -> str:
        return self._keys.key("cart", buyer_id)

    async def add(self, buyer_id: str, entry: CartEntry) -> None:
        await self._redis.hset(self._key(buyer_id), entry.hold_id, self._encoder.encode(entry))

    async def entries(self, buyer_id: str) -> list[CartEntry]:
        raw = await self._redis.hgetall(self._key(buyer_id))
        return sorted((self._decoder.decode(v) for v in raw.values()), key=lambda e: e.hold_id)

    async def find(self, buyer_id: str, hold_id: str) -> CartEntry | None:
        raw = await self._redis.hget(self._key(buyer_id), hold_id)
        return self._decoder.decode(raw) if raw is not None else None

    async def size(self, buyer_id: str) -> int:
        count: int = await self._redis.hlen(self._key(buyer_id))
        return count

    async def remove(self, buyer_id: str, *hold_ids: str) -> None:
        if hold_ids:
            await self._redis.hdel(self._key(buyer_id), *hold_ids)
