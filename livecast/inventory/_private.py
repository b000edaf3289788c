"""Small helpers only the inventory package uses."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis


def text(value: Any) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


async def server_now_ms(redis: aioredis.Redis) -> int:
    """The Redis server's clock, the one clock every node and script agrees on."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000
