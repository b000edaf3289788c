"""Background tasks end when cancelled, even a loop around Redis commands, which can lose a
single cancellation on Python 3.11 (see livecast.aio)."""

from __future__ import annotations

import asyncio
import random

import pytest

from livecast import aio
from livecast.aio import cancel_and_wait
from livecast.config import RedisSettings
from livecast.redisdb import open_redis


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks still running after a cancellation are cancelled again after
    :data:`~livecast.aio.RECANCEL_S` rather than the first :data:`~livecast.aio.GRACE_S`:
    these tests show that they end, not how long their clean-up may take."""
    monkeypatch.setattr(aio, "GRACE_S", aio.RECANCEL_S)


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again(short_grace: None) -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as asyncio.wait_for on 3.11 can, once

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_and_wait(task, None)
    assert task.cancelled()
    assert swallowed == 1


async def test_loops_around_redis_commands_always_end(
    redis_url: str, key_prefix: str, short_grace: None
) -> None:
    """A loop as the app's background tasks are (a command, a pause), cancelled a few
    dozen times at any point: every one ends. On 3.11 a single cancel() landing while
    a command is sent is usually lost there."""
    redis = await open_redis(redis_url, RedisSettings())
    key = f"{key_prefix}aio"
    commands = 0

    async def loop() -> None:
        nonlocal commands
        while True:
            await redis.incr(key)
            commands += 1
            await asyncio.sleep(0.001)

    try:
        for _ in range(60):
            task = asyncio.create_task(loop())
            await asyncio.sleep(random.uniform(0, 0.003))
            async with asyncio.timeout(10):
                await cancel_and_wait(task)
            assert task.cancelled()
        assert commands > 0
    finally:
        await redis.delete(key)
        await redis.aclose()


async def test_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise ValueError("broken")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert "ended with ValueError('broken')" in caplog.text
