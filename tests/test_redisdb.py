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


async def test_unreachable_server_is_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(RedisUnavailable, match=f"cannot reach Redis at redis://127.0.0.1:{port}"):
        await open_redis(f"redis://127.0.0.1:{port}/0", RedisSettings())


async def test_password_is_not_shown_in_errors() -> None:
    port = free_port()
    with pytest.raises(RedisUnavailable) as info:
        await open_redis(f"redis://user:hunter2@127.0.0.1:{port}/0", RedisSettings())
    assert "hunter2" not in str(info.value)
