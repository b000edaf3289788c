"""``livecast bench checkout``: a flash sale over real HTTP, N buyers racing for M units.

Two processes on loopback and a Redis (embedded unless ``--redis-url``): ``livecast
serve`` as a user runs it (settings from ``LIVECAST_*`` variables), and this process as
the crowd (uvloop, one aiohttp session, ``--inflight`` requests at a time). A seller
creates a live stream and one product with ``--units`` units; every buyer opens the watch
page (which loads the cart: ``join_cpu_us``); then every buyer adds one unit to the cart,
and every buyer who got one checks out with its own Idempotency-Key.

``--workers N`` runs ``livecast serve --workers N`` (one process by default), and the
server's CPU is then its workers' together.

The server's CPU (user + system, from ``/proc``) is read around each phase, and a phase
of trivial requests (``GET /healthz``) in the same run gives the yardstick:

    adds_per_core_s, checkouts_per_core_s   requests / server CPU seconds of the phase
    add_cpu_us, checkout_cpu_us, trivial_cpu_us   server CPU per request
    add_cpu_ratio, checkout_cpu_ratio      CPU per request / CPU per trivial request
    add_phase, checkout_phase              wall time and the CPU seconds of the server, of
                                           the crowd and of (embedded) Redis in the phase
    add_ms_p50/p99, checkout_ms_p50/p99    latency seen by the buyers, queueing included

A buyer answered 503 retries with the same key. Once the recovery pass has settled
every checkout left midway, the books are checked from Redis: ``oversold`` (units
promised beyond the stock, must be 0), ``orders`` and ``units_sold`` (equal here: one
unit per order) and ``orders_match_units_sold``. Exits 1 if either check fails.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["main"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_SKU = "FLASH-1"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livecast bench checkout", description=__doc__)
    parser.add_argument("--buyers", type=int, default=10_000, help="buyers in the race")
    parser.add_argument("--units", type=int, default=1_000, help="units for sale")
    parser.add_argument("--inflight", type=int, default=500, help="requests in flight at once")
    parser.add_argument(
        "--trivial",
        type=int,
        default=10_000,
        help="GET /healthz requests (server CPU is read in 10 ms ticks: 10,000 take some 70 "
        "of them, so the yardstick is good to about 1 in 70)",
    )
    parser.add_argument("--redis-url", default="", help="default: an embedded redis-server")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="livecast serve --workers N (default 1: one process; the CPU figures are the "
        "workers' together)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="record the server (the first worker, with --workers) with py-spy during one "
        "phase (collapsed stacks to FILE; pip install -c constraints.txt '.[bench]')",
    )
    parser.add_argument(
        "--profile-phase",
        choices=("trivial", "add", "checkout"),
        default="checkout",
        help="the phase --profile records (default: checkout)",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(list(argv))
    if not 1 <= args.buyers <= 100_000 or not 1 <= args.units <= 100_000:
        parser.error("--buyers and --units must be 1-100000")
    if not 1 <= args.inflight <= 2_000 or not 1 <= args.trivial <= 100_000:
        parser.error("--inflight must be 1-2000 and --trivial 1-100000")
    if not 1 <= args.workers <= 64:
        parser.error("--workers must be 1-64")
    with tempfile.TemporaryDirectory(prefix="livecast-bench-", dir="/tmp") as tmp:
        report = _orchestrate(args, Path(tmp))
    print(json.dumps(report), flush=True)
    return 0 if report["oversold"] == 0 and report["orders_match_units_sold"] else 1


def _orchestrate(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from livecast.embedded_redis import EmbeddedRedis

    embedded = None
    redis_url = args.redis_url
    if not redis_url:
        embedded = EmbeddedRedis(tmp / "redis")
        embedded.start()
        redis_url = embedded.url
    port = _free_port()
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    secret = secrets.token_hex(32)
    env = {
        **os.environ,
        "LIVECAST_REDIS_URL": redis_url,
        "LIVECAST_REDIS_KEY_PREFIX": prefix,
        "LIVECAST_AUTH_SECRET": secret,
        "LIVECAST_SERVER_PORT": str(port),
    }
    log_path = tmp / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "livecast", "serve", "--workers", str(args.workers),
             "--data-dir", str(tmp / "data")],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
    try:
        redis_pid = embedded.pid if embedded is not None else None
        report = _run(_crowd(args, port, server, redis_pid, secret, redis_url, prefix))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if embedded is not None:
            embedded.stop()
    report["redis"] = "external" if args.redis_url else "embedded"
    errors = [line for line in log_path.read_text().splitlines() if " ERROR " in line]
    report["server_errors"] = len(errors)
    return report


def _run(main: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    async def wrapped() -> dict[str, Any]:
        return await main

    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(wrapped())
    return uvloop.run(wrapped())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_s(*pids: int) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


class _Phase:
    """Latencies and answers of one phase, and the server CPU it took."""

    def __init__(
        self, name: str, pids: list[int], redis_pid: int | None, profile: str | None = None
    ) -> None:
        self.name = name
        # py-spy records the server during this phase into this file.
        self._profile = profile
        self._pids = pids
        self._redis_pid = redis_pid
        # The crowd's (this process's) and Redis's CPU over the phase: when either is near
        # a whole core, latencies measure them rather than the server.
        self.client_cpu_s = 0.0
        self.redis_cpu_s = 0.0
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.cpu_s = 0.0
        self.wall_s = 0.0

    async def run(self, count: int, inflight: int, one: Callable[[int], Awaitable[str]]) -> None:
        next_index = iter(range(count))
        clock = time.perf_counter

        async def worker() -> None:
            for index in next_index:
                started = clock()
                outcome = await one(index)
                self.latencies.append(clock() - started)
                self.statuses[outcome] = self.statuses.get(outcome, 0) + 1

        me, redis = os.getpid(), self._redis_pid
        profiler = _profiler(self._pids[0], self._profile) if self._profile else None
        cpu0, client0, redis0 = _cpu_s(*self._pids), _cpu_s(me), _cpu_s(redis) if redis else 0.0
        began = clock()
        await asyncio.gather(*(worker() for _ in range(min(inflight, count))))
        self.wall_s, self.cpu_s = clock() - began, _cpu_s(*self._pids) - cpu0
        self.client_cpu_s = _cpu_s(me) - client0
        self.redis_cpu_s = (_cpu_s(redis) if redis else 0.0) - redis0
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file and exits
            await asyncio.to_thread(profiler.wait, 30)

    def figures(self) -> dict[str, float]:
        return {
            "wall_s": round(self.wall_s, 2),
            "server_cpu_s": round(self.cpu_s, 2),
            "client_cpu_s": round(self.client_cpu_s, 2),
            "redis_cpu_s": round(self.redis_cpu_s, 2),
        }

    def pct_ms(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1)

    def cpu_us(self, count: int) -> float:
        return round(self.cpu_s / count * 1e6, 1) if count else 0.0

    def per_core_s(self, count: int) -> int | None:
        return round(count / self.cpu_s) if self.cpu_s > 0 else None


async def _crowd(
    args: argparse.Namespace,
    port: int,
    server: subprocess.Popen[bytes],
    redis_pid: int | None,
    secret: str,
    redis_url: str,
    prefix: str,
) -> dict[str, Any]:
    from livecast.auth import Role, TokenIssuer
    from livecast.bench._server import serving_pids
    from livecast.cart.orders import OrderStore
    from livecast.config import RedisSettings
    from livecast.inventory.reserve import Reservations
    from livecast.redisdb import KeySpace, open_redis

    issuer = TokenIssuer(secret, issuer="livecast")
    base = f"http://127.0.0.1:{port}"
    connector = aiohttp.TCPConnector(limit=args.inflight, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as http:
        await _wait_ready(http, server)
        pids = serving_pids(server.pid)
        seller = issuer.issue(sub="bench-seller", name="Seller", role=Role.SELLER, ttl_s=3600)
        auth = {"Authorization": f"Bearer {seller}"}
        async with http.post("/api/streams", json={"title": "Flash sale"}, headers=auth) as r:
            stream_id = (await r.json())["id"]
        async with http.post(f"/api/streams/{stream_id}/start", headers=auth) as r:
            assert r.status == 200, await r.text()
        product = {
            "title": "Flash item",
            "price": {"amount_minor": 1999, "currency": "EUR"},
            "stock": args.units,
        }
        async with http.put(f"/api/products/{_SKU}", json=product, headers=auth) as r:
            assert r.status in (200, 201), await r.text()
        buyers = [
            issuer.issue(sub=f"buyer-{n}", name=f"Buyer {n}", role=Role.VIEWER, ttl_s=3600)
            for n in range(args.buyers)
        ]
        redis = await open_redis(redis_url, RedisSettings(url=redis_url))
        keys = KeySpace(prefix)

        def phase(name: str) -> _Phase:
            profile = args.profile if args.profile_phase == name else None
            return _Phase(name, pids, redis_pid, profile)

        try:
            trivial = phase("trivial")

            async def healthz(_: int) -> str:
                async with http.get("/healthz") as resp:
                    await resp.read()
                    return str(resp.status)

            await trivial.run(args.trivial, args.inflight, healthz)

            # Every buyer opens the watch page first, which loads the cart.
            joins = phase("join")

            async def join(n: int) -> str:
                headers = {"Authorization": f"Bearer {buyers[n]}"}
                async with http.get("/api/cart", headers=headers) as resp:
                    await resp.read()
                    return str(resp.status)

            await joins.run(args.buyers, args.inflight, join)

            added: list[int] = []
            adds = phase("add")
            add_body = {"stream_id": stream_id, "sku": _SKU, "quantity": 1}

            async def add(n: int) -> str:
                headers = {"Authorization": f"Bearer {buyers[n]}"}
                async with http.post("/api/cart/items", json=add_body, headers=headers) as resp:
                    body = await resp.json()
                if resp.status == 201:
                    added.append(n)
                    return "201"
                return f"{resp.status} {body['error']['code']}"

            await adds.run(args.buyers, args.inflight, add)

            checkouts = phase("checkout")

            retries = 0

            async def checkout(i: int) -> str:
                # A buyer who gets 503 (Retry-After) tries again with the same key.
                nonlocal retries
                n = added[i]
                headers = {"Authorization": f"Bearer {buyers[n]}", "Idempotency-Key": f"k-{n}"}
                for attempt in range(20):
                    async with http.post("/api/checkout", json={}, headers=headers) as resp:
                        body = await resp.json()
                    if resp.status != 503:
                        break
                    retries += 1
                    await asyncio.sleep(0.2 * (attempt + 1))
                if resp.status == 201:
                    return "201"
                return f"{resp.status} {body['error']['code']}"

            await checkouts.run(len(added), args.inflight, checkout)
            open_left = await _settled(redis, keys)
            books = await _books(redis, keys, stream_id, args.units, Reservations, OrderStore)
        finally:
            await redis.aclose()
    trivial_us = trivial.cpu_us(args.trivial)
    add_us, checkout_us = adds.cpu_us(args.buyers), checkouts.cpu_us(len(added))
    return {
        "benchmark": "checkout",
        "buyers": args.buyers,
        "units": args.units,
        "inflight": args.inflight,
        "workers": len(pids),
        "adds": args.buyers,
        "adds_answered": adds.statuses,
        "adds_per_s": round(args.buyers / adds.wall_s) if adds.wall_s else None,
        "adds_per_core_s": adds.per_core_s(args.buyers),
        "add_ms_p50": adds.pct_ms(0.50),
        "add_ms_p99": adds.pct_ms(0.99),
        "checkouts": len(added),
        "checkouts_answered": checkouts.statuses,
        "checkout_retries_after_503": retries,
        "checkouts_left_open": open_left,
        "checkouts_per_s": round(len(added) / checkouts.wall_s) if checkouts.wall_s else None,
        "checkouts_per_core_s": checkouts.per_core_s(len(added)),
        "checkout_ms_p50": checkouts.pct_ms(0.50),
        "checkout_ms_p99": checkouts.pct_ms(0.99),
        "join_cpu_us": joins.cpu_us(args.buyers),
        "trivial_requests": args.trivial,
        "trivial_cpu_us": trivial_us,
        "trivial_per_core_s": trivial.per_core_s(args.trivial),
        "add_cpu_us": add_us,
        "checkout_cpu_us": checkout_us,
        "add_cpu_ratio": round(add_us / trivial_us, 2) if trivial_us else None,
        "checkout_cpu_ratio": round(checkout_us / trivial_us, 2) if trivial_us else None,
        "add_phase": adds.figures(),
        "checkout_phase": checkouts.figures(),
        **books,
    }


def _profiler(pid: int, path: str) -> subprocess.Popen[bytes]:
    profiler = subprocess.Popen(
        ["py-spy", "record", "--format", "raw", "--rate", "500", "-p", str(pid),
         "-o", path],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)  # attached before the phase starts
    return profiler


async def _wait_ready(http: aiohttp.ClientSession, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            async with http.get("/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not get ready in 60 s")
        await asyncio.sleep(0.1)


async def _settled(redis: Any, keys: Any, within_s: float = 60) -> int:
    """Wait for the recovery pass to settle every checkout left midway; how many are left."""
    open_key = keys.key("{checkouts}", "open")
    left = 0
    for _ in range(int(within_s / 0.2)):
        left = int(await redis.zcard(open_key))
        if not left:
            break
        await asyncio.sleep(0.2)
    return left


async def _books(
    redis: Any, keys: Any, stream_id: str, units: int, reservations_cls: Any, orders_cls: Any
) -> dict[str, Any]:
    """What Redis says was sold, held and ordered, against the units that existed."""
    levels = await reservations_cls(redis, keys).stock(_SKU)
    orders = await orders_cls(redis, keys).for_stream(stream_id, limit=units + 1000)
    units_in_orders = sum(order.units for order in orders)
    promised = levels.held + levels.sold
    return {
        "orders": len(orders),
        "units_sold": levels.sold,
        "units_held": levels.held,
        "units_left": levels.available,
        "oversold": max(0, promised - units) + max(0, -levels.available),
        "orders_match_units_sold": units_in_orders == levels.sold == len(orders),
    }
