"""A buyer's cart: lines that each point at a stock hold.

The hold (in :mod:`livecast.inventory.reserve`) is the truth about quantity, price, title
and expiry; the cart only remembers which holds are the buyer's and where they came from::

    <prefix>cart:<sub>     hash: hold id -> CartEntry JSON

An add-to-cart writes its line first (``cart_add.lua``: idempotent by hold id, never past
``max_lines``) and reserves after, so no hold exists that no cart lists: a refused
reservation drops the line again, and a line whose hold was never made reads as gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis

from livecast.inventory.batch import ScriptBatcher, Steps
from livecast.redisdb import KeySpace, load_lua

_HERE = Path(__file__).parent

__all__ = ["CartEntry", "CartStore"]


class CartEntry(msgspec.Struct, frozen=True, kw_only=True):
    hold_id: str
    sku: str
    stream_id: str
    # Lines written before holds kept the title; the hold has it now.
    title: str = ""
    deal_id: str | None = None
    # Where the buyer was: the live stream, or its replay (attribution).
    source: str = "live"


class CartStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        *,
        max_lines: int = 50,
        batcher: ScriptBatcher | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.max_lines = max_lines
        self._batcher = batcher or ScriptBatcher(redis)
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(CartEntry)
        self._add_line = load_lua(redis, _HERE / "cart_add.lua")

    def _key(self, buyer_id: str) -> str:
        return self._keys.key("cart", buyer_id)

    def stage(self, buyer_id: str, entry: CartEntry) -> asyncio.Future[Any]:
        """Queue ``cart_add.lua`` for the line (sent with the loop tick's other commands);
        the future gets ``b"added"``, ``b"exists"``, ``b"cart_full"`` or
        ``[b"hold_conflict", sku]``."""
        return self._batcher.call(self._add_line, self._stage_args(buyer_id, entry))

    def add_stage(self, steps: Steps, buyer_id: str, entry: CartEntry) -> Steps:
        """Add :meth:`stage` of the line to a request's steps."""
        return steps.call(self._add_line, self._stage_args(buyer_id, entry))

    def _stage_args(self, buyer_id: str, entry: CartEntry) -> tuple[Any, ...]:
        return (
            self._key(buyer_id),
            entry.hold_id,
            self._encoder.encode(entry),
            entry.sku,
            self.max_lines,
        )

    def drop(self, buyer_id: str, hold_id: str) -> asyncio.Future[Any]:
        """Remove a staged line whose reservation was refused, queued in the loop tick's
        batch (awaited as it is, without a coroutine of its own)."""
        return self._batcher.command("HDEL", self._key(buyer_id), hold_id)

    async def add(self, buyer_id: str, entry: CartEntry) -> None:
        await self._redis.hset(self._key(buyer_id), entry.hold_id, self._encoder.encode(entry))

    async def entries(self, buyer_id: str) -> list[CartEntry]:
        return self.decode_entries(await self.read_entries(buyer_id))

    def read_entries(self, buyer_id: str) -> asyncio.Future[Any]:
        """Queue the cart's read with the loop tick's other commands (a coroutine would
        be scheduled after the tick's batch is sent); :meth:`decode_entries` reads its reply."""
        return self._batcher.command("HGETALL", self._key(buyer_id))

    def add_read(self, steps: Steps, buyer_id: str) -> Steps:
        """Add the cart's read to a request's steps (:meth:`decode_entries` reads its reply)."""
        return steps.command("HGETALL", self._key(buyer_id))

    def decode_entries(self, raw: Any) -> list[CartEntry]:
        # A map (RESP3) or a flat field, value... list (RESP2), as the connection speaks.
        values = raw.values() if isinstance(raw, dict) else raw[1::2]
        return sorted((self._decoder.decode(v) for v in values), key=lambda e: e.hold_id)

    async def find(self, buyer_id: str, hold_id: str) -> CartEntry | None:
        raw = await self._redis.hget(self._key(buyer_id), hold_id)
        return self._decoder.decode(raw) if raw is not None else None

    async def size(self, buyer_id: str) -> int:
        count: int = await self._redis.hlen(self._key(buyer_id))
        return count

    def add_remove(self, steps: Steps, buyer_id: str, *hold_ids: str) -> Steps:
        """Add dropping the lines to a request's steps."""
        return steps.command("HDEL", self._key(buyer_id), *hold_ids) if hold_ids else steps

    def remove(self, buyer_id: str, *hold_ids: str) -> Awaitable[Any]:
        """Drop the lines, queued in the loop tick's batch."""
        if hold_ids:
            return self._batcher.command("HDEL", self._key(buyer_id), *hold_ids)
        return asyncio.sleep(0)
