"""``livecast bench webhooks``: order webhooks to a prompt and a slow merchant endpoint.

Two real HTTP receivers on loopback: one answers at once, the other only after
``--slow-answer-s`` seconds (a merchant whose backend is struggling). ``--events`` events
are enqueued, one every ``--interval-ms``, through the same
:class:`~livecast.cart.webhooks.WebhookDispatcher` the server runs, each to both
endpoints. Reported: how late each event reached the prompt endpoint after it was
enqueued (p50, p99, max), and how many the slow one had answered by the time the prompt
one had them all (its backlog drains at its own pace, ``max_in_flight_per_endpoint`` per
answer time; the rest stays queued in Redis). The prompt endpoint's lateness should not
depend on the slow one's answer time.

Redis: ``--redis-url``, or an embedded redis-server started in a temporary directory.
Keys go under a fresh prefix and are deleted at the end. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from livecast.aio import cancel_and_wait
from livecast.cart.webhooks import WebhookDispatcher
from livecast.config import RedisSettings, WebhookSettings
from livecast.embedded_redis import EmbeddedRedis
from livecast.redisdb import KeySpace, open_redis

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livecast bench webhooks", description=__doc__)
    parser.add_argument("--events", type=int, default=50, help="events enqueued (max 10000)")
    parser.add_argument("--interval-ms", type=float, default=100.0, help="between two events")
    parser.add_argument(
        "--slow-answer-s", type=float, default=8.0, help="the slow endpoint's answer time"
    )
    parser.add_argument("--redis-url", help="Redis to use (default: a temporary embedded one)")
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if not 1 <= args.events <= 10_000 or args.interval_ms < 0 or not 0 <= args.slow_answer_s < 60:
        print("events must be 1-10000, interval-ms >= 0, slow-answer-s 0-60", flush=True)
        return 2
    if args.redis_url:
        result = asyncio.run(_bench(args, args.redis_url))
    else:
        with tempfile.TemporaryDirectory(prefix="lcb-", dir="/tmp") as tmp:
            server = EmbeddedRedis(Path(tmp))
            server.start()
            try:
                result = asyncio.run(_bench(args, server.url))
            finally:
                server.stop()
    print(json.dumps(result), flush=True)
    return 0 if result["prompt_received"] == args.events else 1


async def _bench(args: argparse.Namespace, url: str) -> dict[str, Any]:
    enqueued_at: dict[str, float] = {}
    lateness: list[float] = []
    slow_answered: set[str] = set()
    all_in = asyncio.Event()

    async def prompt(request: web.Request) -> web.Response:
        event_id = request.headers["Livecast-Event-Id"]
        if event_id in enqueued_at:
            lateness.append(time.monotonic() - enqueued_at.pop(event_id))
            if len(lateness) == args.events:
                all_in.set()
        return web.Response()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(args.slow_answer_s)
        slow_answered.add(request.headers["Livecast-Event-Id"])
        return web.Response()

    runners, urls = [], []
    for handler in (slow, prompt):
        app = web.Application()
        app.router.add_post("/hook", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{port}/hook")

    prefix = f"bench-{uuid.uuid4().hex[:10]}:"
    redis = await open_redis(url, RedisSettings(url=url))
    hooks = WebhookSettings()
    dispatcher = WebhookDispatcher(
        redis,
        KeySpace(prefix),
        urls=tuple(urls),
        secret="b" * 40,
        timeout_s=args.slow_answer_s + 5,
        max_attempts=hooks.max_attempts,
        backoff_base_s=hooks.backoff_base_s,
        backoff_cap_s=hooks.backoff_cap_s,
        poll_interval_s=hooks.poll_interval_s,
        max_in_flight=hooks.max_in_flight,
        max_in_flight_per_endpoint=hooks.max_in_flight_per_endpoint,
    )
    worker = asyncio.create_task(dispatcher.run())
    started = time.monotonic()
    try:
        for n in range(args.events):
            event_id = f"evt_bench_{n}"
            enqueued_at[event_id] = time.monotonic()
            await dispatcher.enqueue("order.paid", {"n": n}, event_id=event_id)
            await asyncio.sleep(args.interval_ms / 1000)
        try:
            async with asyncio.timeout(30):
                await all_in.wait()
        except TimeoutError:
            pass
        slow_answered_then = len(slow_answered)
    finally:
        dispatcher.stop()
        await cancel_and_wait(worker)
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            await redis.delete(key)
        await redis.aclose()
        for runner in runners:
            await runner.cleanup()
    lateness.sort()

    def quantile(q: float) -> float | None:
        if not lateness:
            return None
        return round(lateness[min(len(lateness) - 1, int(q * len(lateness)))] * 1000, 1)

    return {
        "benchmark": "webhooks",
        "events": args.events,
        "slow_answer_s": args.slow_answer_s,
        "max_in_flight_per_endpoint": hooks.max_in_flight_per_endpoint,
        "prompt_received": len(lateness),
        "prompt_late_ms_p50": quantile(0.5),
        "prompt_late_ms_p99": quantile(0.99),
        "prompt_late_ms_max": quantile(1.0),
        "prompt_late_ms_mean": round(statistics.fmean(lateness) * 1000, 1) if lateness else None,
        "slow_answered": slow_answered_then,
        "seconds": round(time.monotonic() - started, 2),
    }
