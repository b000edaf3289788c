"""The base of the Hypothesis state machines that drive a service on real Redis.

Each machine runs on its own event loop (Hypothesis calls rules synchronously) under a key
prefix of its own, which teardown sweeps; ``run`` awaits a call, ``attempt`` awaits it and
hands back the :class:`~livecast.errors.ApiError` it was refused with instead of raising.
A test runs a machine on a Redis with :func:`run_machine`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from livecast.errors import ApiError
from livecast.redisdb import KeySpace

T = TypeVar("T")

__all__ = ["RedisMachine", "run_machine"]


class RedisMachine(RuleBasedStateMachine):
    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.prefix = f"t-{uuid.uuid4().hex[:12]}:"
        self.keys = KeySpace(self.prefix)
        self.redis = aioredis.Redis.from_url(self.redis_url)
        # What the machine's services need closed before the keys go (batchers, say).
        self.closers: list[Callable[[], Awaitable[None]]] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def attempt(self, coro: Coroutine[Any, Any, T]) -> T | ApiError:
        """The call's result, or the error it was refused with."""

        async def call() -> T | ApiError:
            try:
                return await coro
            except ApiError as exc:
                return exc

        return self.run(call())

    def stock_levels(self, product_key: str) -> dict[str, int]:
        """A product's counters as the scripts keep them (``available``, ``held``, ``sold``,
        ``deal_reserved``, ...), read from its hash at ``product_key``."""

        async def read() -> dict[Any, Any]:
            found: dict[Any, Any] = await self.redis.hgetall(product_key)
            return found

        return {k.decode(): int(v) for k, v in self.run(read()).items() if v.isdigit()}

    def teardown(self) -> None:
        try:
            self.run(self._clean_up())
        finally:
            self.loop.close()

    async def _clean_up(self) -> None:
        for close in self.closers:
            await close()
        async for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            await self.redis.delete(key)
        await self.redis.aclose()


def run_machine(machine: type[RedisMachine], redis_url: str, *, examples: int, steps: int) -> None:
    """Run ``machine`` on ``redis_url``: ``examples`` sequences of up to ``steps`` steps. No
    shrinking: a failing sequence is printed as found (steps that Redis's clock decides do
    not replay exactly, which makes shrinking slow and noisy); no example database kept
    between runs."""

    class OnThisRedis(machine):  # type: ignore[valid-type,misc]
        pass

    OnThisRedis.redis_url = redis_url
    run_state_machine_as_test(
        OnThisRedis,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
