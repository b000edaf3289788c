"""Small helpers of the inventory package, which the selling formats' stores share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis


def text(value: Any) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


async def server_now_ms(redis: aioredis.Redis) -> int:
    """The Redis server's clock, the one clock every node and script agrees on."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def due_ids(redis: aioredis.Redis, key: str, now_ms: int, *, limit: int) -> list[str]:
    """Up to ``limit`` members of the sorted set ``key`` whose time (score) is ``now_ms``
    or earlier: the records a sweep has to act on."""
    found: list[Any] = await redis.zrangebyscore(key, "-inf", now_ms, start=0, num=limit)
    return [text(member) for member in found]


async def read_row(
    redis: aioredis.Redis, key: str, fields: Sequence[str]
) -> tuple[dict[str, str | None], int] | None:
    """The hash ``key``'s ``fields`` as text (None where missing) and the Redis server's
    clock in ms, in one round trip; None when the hash has no first field (no record)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(key, list(fields))
        pipe.time()
        raw, (seconds, micros) = await pipe.execute()
    if raw[0] is None:
        return None
    row = {field: None if v is None else text(v) for field, v in zip(fields, raw, strict=True)}
    return row, int(seconds) * 1000 + int(micros) // 1000
