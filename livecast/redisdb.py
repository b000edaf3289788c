"""The Redis connection every part of livecast shares, and its key space.

Retry policy, decided deliberately: the client never re-sends a command by itself.
redis-py retries on connection errors and timeouts by default, and a re-sent command
that already ran (an INCRBY of likes, an XADD of chat) would apply twice. Writes that a
caller may repeat are made idempotent by id instead (holds, checkouts), and callers that
want a retry do it explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from livecast.config import RedisSettings

__all__ = ["UNAVAILABLE_ERRORS", "KeySpace", "RedisUnavailable", "load_lua", "open_redis"]

# The oldest server with the commands livecast uses (GETDEL, ZRANGE BYSCORE, XAUTOCLAIM).
_MIN_VERSION = (6, 2)


# Errors that say Redis cannot serve right now (down, loading, failing over, full), so the
# same request may succeed in a moment. Any other error Redis answers (a wrong type, a
# cross-slot command, a script error) is a defect in livecast, never a reason to retry.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # also BusyLoadingError
    RedisTimeoutError,
    ReadOnlyError,
    ClusterDownError,
    TryAgainError,
    OutOfMemoryError,
    ConnectionError,
)


class RedisUnavailable(Exception):
    """Redis did not answer, or is too old."""


class KeySpace:
    """Names of keys and channels, all under one configurable prefix.

    Keys that a Lua script touches together share a ``{hash tag}`` so they live in one
    Redis Cluster slot.
    """

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)


async def open_redis(url: str, settings: RedisSettings) -> aioredis.Redis:
    """Connect to ``url`` and check the server answers; fail fast and clearly if not."""
    # A blocking pool: past max_connections a caller waits for a free connection (up
    # to pool_timeout_s) instead of failing at once, as the default pool does. A burst
    # of buyers then queues for connections rather than failing steps midway.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout_s,
        socket_connect_timeout=settings.connect_timeout_s,
        socket_timeout=settings.command_timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)
    try:
        info = await client.info("server")
    except (RedisError, OSError) as exc:
        await client.aclose()
        raise RedisUnavailable(f"cannot reach Redis at {_redact(url)}: {exc}") from exc
    version = tuple(int(p) for p in str(info.get("redis_version", "0.0")).split(".")[:2])
    if version < _MIN_VERSION:
        await client.aclose()
        raise RedisUnavailable(
            f"Redis at {_redact(url)} is version {info.get('redis_version')}; "
            f"livecast needs {'.'.join(map(str, _MIN_VERSION))} or newer"
        )
    return client


def load_lua(client: aioredis.Redis, path: Path, *, prelude: Path | None = None) -> Any:
    """Register a Lua script kept beside its Python; ``prelude`` (local functions that
    several scripts share) is prepended to it.

    The returned callable runs ``EVALSHA`` and, on ``NOSCRIPT`` (a restarted or failed-over
    server), loads the script again and retries once: a script that did not run cannot
    have applied, so that retry is safe.
    """
    text = path.read_text()
    if prelude is not None:
        text = prelude.read_text() + text
    return client.register_script(text)


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"
