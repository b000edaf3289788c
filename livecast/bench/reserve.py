"""``livecast bench reserve``: flash-deal load on the reservation path of one process.

``--concurrency`` buyers, each reserving one unit at a time as fast as answers come, for
``--seconds``, all on one hot SKU (the flash-deal case: every call hits one slot and one
hash). Calls go through the same :class:`~livecast.inventory.reserve.Reservations` the
server uses (batched EVALSHA pipelines). Afterwards the stock is read back and checked
against the holds made: ``oversold`` counts units promised beyond the stock, and must be 0.

Server ceilings measured in the same run, with pre-encoded commands written down one
connection as fast as the server answers and replies counted by hiredis, so client work
is not in them: ``evalsha_ceiling_per_s`` is the raw EVALSHA rate (a one-key script that
reads the clock and returns), ``reserve_evalsha_ceiling_per_s`` the rate of
``reserve.lua`` called with one reservation per call. Reservations on a hot SKU are
folded into one script run per loop tick (see :mod:`livecast.inventory.batch`), so
``reservations_per_s`` can pass the second.

Redis: ``--redis-url``, or an embedded redis-server started in a temporary directory.
Keys go under a fresh prefix and are deleted at the end. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import hiredis
import redis.asyncio as aioredis

from livecast.config import RedisSettings
from livecast.embedded_redis import EmbeddedRedis
from livecast.errors import ApiError
from livecast.inventory.catalog import Catalog, ProductFields
from livecast.inventory.money import Money
from livecast.inventory.reserve import Reservations
from livecast.redisdb import KeySpace, open_redis

__all__ = ["main"]

_SKU = "BENCH-HOT"
_CEILING_SKU = "BENCH-CEILING"
# The raw EVALSHA rate: a script that does what every reservation must (read the clock).
_RAW_SCRIPT = "redis.call('TIME') return KEYS[1]"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livecast bench reserve", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=200, help="concurrent buyers")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to run (max 120)")
    parser.add_argument("--stock", type=int, default=1_000_000_000, help="units of the SKU")
    parser.add_argument("--redis-url", help="Redis to use (default: a temporary embedded one)")
    parser.add_argument(
        "--ceiling-calls", type=int, default=100_000, help="EVALSHA calls in the ceiling run"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if not 1 <= args.concurrency <= 5000 or not 0 < args.seconds <= 120:
        print("concurrency must be 1-5000 and seconds 0-120", flush=True)
        return 2
    if args.redis_url:
        result = _run(_bench(args, args.redis_url))
    else:
        with tempfile.TemporaryDirectory(prefix="lcb-", dir="/tmp") as tmp:
            server = EmbeddedRedis(Path(tmp))
            server.start()
            try:
                result = _run(_bench(args, server.url))
            finally:
                server.stop()
    print(json.dumps(result), flush=True)
    return 0 if result["oversold"] == 0 and result["consistent"] else 1


def _run(main: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main)
    return uvloop.run(main)


async def _bench(args: argparse.Namespace, url: str) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:10]}:"
    keys = KeySpace(prefix)
    redis = await open_redis(url, RedisSettings(url=url, max_connections=64))
    reservations = Reservations(redis, keys, hold_ttl_s=3600)
    catalog = Catalog(redis, keys, reservations)
    price = Money(amount_minor=999, currency="EUR")
    await catalog.put(_SKU, ProductFields(title="Hot item", price=price, stock=args.stock))
    await catalog.put(_CEILING_SKU, ProductFields(title="Ceiling", price=price, stock=10**12))
    try:
        load = await _load(reservations, args.concurrency, args.seconds)
        check = await _check(redis, reservations, args.stock, load["succeeded"])
        raw_sha = await redis.script_load(_RAW_SCRIPT)
        ceiling = await _ceiling(url, args.ceiling_calls, lambda n: (raw_sha, b"1", b"x"))
        reserve = reservations._reserve
        await redis.script_load(reserve.script)
        base = reservations.base(_CEILING_SKU)
        run = uuid.uuid4().hex[:6]
        reserve_ceiling = await _ceiling(
            url,
            args.ceiling_calls,
            lambda n: (reserve.sha, "1", base, f"c{run}-{n}", "1", f"u{n % 1000}", "3600000",
                       "0", "", "", ""),
        )  # fmt: skip
    finally:
        await reservations.batcher.aclose()
        async for key in redis.scan_iter(match=f"{prefix}*", count=5000):
            await redis.unlink(key)
        await redis.aclose()
    return {
        "benchmark": "reserve",
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        **load,
        **check,
        "evalsha_ceiling_per_s": round(ceiling),
        "reserve_evalsha_ceiling_per_s": round(reserve_ceiling),
        "ratio_to_ceiling": round(load["reservations_per_s"] / ceiling, 3),
        "redis": "external" if args.redis_url else "embedded",
        "pid": os.getpid(),
    }


async def _load(reservations: Reservations, concurrency: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    refused: dict[str, int] = {}
    clock = time.perf_counter
    deadline = clock() + seconds

    async def buyer(number: int) -> None:
        user = f"buyer-{number}"
        n = 0
        while clock() < deadline:
            n += 1
            started = clock()
            try:
                await reservations.reserve(_SKU, 1, user, f"b{number}-{n}")
            except ApiError as exc:
                refused[exc.code] = refused.get(exc.code, 0) + 1
                continue
            latencies.append(clock() - started)

    batcher = reservations.batcher
    batches_before, scripts_before = batcher.batches_sent, batcher.scripts_sent
    calls_before = batcher.calls_sent
    began = clock()
    await asyncio.gather(*(buyer(n) for n in range(concurrency)))
    elapsed = clock() - began
    latencies.sort()
    batches = batcher.batches_sent - batches_before
    scripts = batcher.scripts_sent - scripts_before
    calls = batcher.calls_sent - calls_before

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3)

    return {
        "succeeded": len(latencies),
        "refused": refused,
        "reservations_per_s": round(len(latencies) / elapsed),
        "latency_ms_p50": pct(0.50),
        "latency_ms_p99": pct(0.99),
        "latency_ms_max": pct(1.0),
        "latency_ms_mean": round(statistics.fmean(latencies) * 1000, 3) if latencies else 0.0,
        "mean_reservations_per_pipeline": round(calls / batches, 1) if batches else 0.0,
        "mean_reservations_per_script_run": round(calls / scripts, 1) if scripts else 0.0,
    }


async def _check(
    redis: aioredis.Redis, reservations: Reservations, stock: int, succeeded: int
) -> dict[str, Any]:
    """Read back what Redis says was promised and compare with the stock and the holds."""
    levels = await reservations.stock(_SKU)
    assert levels is not None
    live = int(await redis.zcard(reservations.base(_SKU) + ":live"))
    promised = levels.held + levels.sold
    oversold = max(0, promised - stock) + max(0, -levels.available)
    return {
        "oversold": oversold,
        "consistent": levels.total == stock and levels.held == live == succeeded,
        "stock_left": levels.available,
        "held": levels.held,
    }


async def _ceiling(url: str, calls: int, command: Callable[[int], tuple[Any, ...]]) -> float:
    """Calls per second the server answers for ``EVALSHA *command(n)``, n = 0..calls-1."""
    commands = [_resp(b"EVALSHA", *command(n)) for n in range(calls)]
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        reader, writer = await asyncio.open_unix_connection(parsed.path)
    else:
        reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port or 6379)
        if parsed.password:
            writer.write(_resp(b"AUTH", parsed.username or "default", parsed.password))
            await reader.readuntil(b"\r\n")
        if parsed.path.strip("/"):
            writer.write(_resp(b"SELECT", parsed.path.strip("/")))
            await reader.readuntil(b"\r\n")
    parser = hiredis.Reader()
    window = 2000
    started = time.perf_counter()
    received = 0
    for start in range(0, calls, window):
        writer.write(b"".join(commands[start : start + window]))
        expected = min(calls, start + window)
        while received < expected:
            parser.feed(await reader.read(1 << 20))
            while parser.gets() is not False:
                received += 1
    elapsed = time.perf_counter() - started
    writer.close()
    await writer.wait_closed()
    return calls / elapsed


def _resp(*parts: Any) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)
