"""The shared Redis connection, on every Redis of the run."""

from __future__ import annotations

import asyncio

import pytest

from livecast.config import RedisSettings
from livecast.redisdb import RedisUnavailable, open_redis
from tests.conftest import free_port


async def test_more_callers_than_connections_wait_their_turn(any_redis_url: str) -> None:
    client = await open_redis(any_redis_url, RedisSettings(max_connections=4))
    try:
        replies = await asyncio.gather(*(client.ping() for _ in range(300)))
        assert replies == [True] * 300
    finally:
        await client.aclose()


async def test_a_saturated_pool_waits_past_the_command_timeout(redis_url: str) -> None:
    """Every connection busy: a command queues for one for up to ``pool_timeout_s``, not
    failing after the (much shorter) command timeout, and runs once one is free."""
    settings = RedisSettings(max_connections=4, command_timeout_s=0.3, pool_timeout_s=10)
    client = await open_redis(redis_url, settings)
    pool = client.connection_pool
    try:
        take = pool.get_connection
        busy = [await take() for _ in range(4)]  # type: ignore[no-untyped-call]
        waiting: asyncio.Task[bool] = asyncio.ensure_future(client.ping())
        done, _ = await asyncio.wait({waiting}, timeout=1.0)  # over 3 command timeouts
        assert not done, waiting.exception() if waiting.done() else None
        await pool.release(busy.pop())
        async with asyncio.timeout(5):
            assert await waiting is True
        for connection in busy:
            await pool.release(connection)
    finally:
        await client.aclose()


async def test_unreachable_server_is_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(RedisUnavailable, match=f"cannot reach Redis at redis://127.0.0.1:{port}"):
        await open_redis(f"redis://127.0.0.1:{port}/0", RedisSettings())


async def test_password_is_not_shown_in_errors() -> None:
    port = free_port()
    with pytest.raises(RedisUnavailable) as info:
        await open_redis(f"redis://user:hunter2@127.0.0.1:{port}/0", RedisSettings())
    assert "hunter2" not in str(info.value)
