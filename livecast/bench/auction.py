"""``livecast bench auction``: one soft-close auction, ``--bidders`` buyers bidding over
HTTP for ``--seconds`` (and on through the extensions their late bids cause), watched by
``--viewers`` live-events sockets.

Two processes on loopback: ``livecast serve`` (embedded Redis) and this one (uvloop, one
aiohttp session for the bids, ``--viewers`` WebSockets). Bids arrive at
``--bids-per-second`` from random bidders until the first end time (then three
stragglers, half a window apart, extend it), each at the price it last saw plus 0-2 steps
(one bid in five a maximum 3-10 steps higher), as a crowd racing for the next step would;
many are refused as too low, as they would be.

Checks, from the server's own bid log and the clients' answers:

    bids_increasing      every bid that moved the price was at least a full increment
                         over the one before
    extensions_exact     each bid inside the last soft_close_s moved the end by exactly
                         soft_close_s, and no other bid moved it
    winner_is_highest    the winner had the highest maximum of any accepted bid, and
                         their cart holds the unit at the final price

Figures: ``update_ms_p50/p99`` from sending a bid that moved the price to each viewer's
``auction.bid`` event for it (every viewer, every such bid; ``updates_missed`` counts the
ones that never came), ``bid_ms_p50/p99`` the bid's HTTP answer, the server's CPU
seconds, and the load average. Prints one JSON line; bounded in bidders, viewers and
time, and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from livecast.bench._server import (
    Server,
    cpu_seconds,
    create_stream,
    percentile,
    start_server,
)

__all__ = ["main"]

# Bids after the first end time, each half a window after the one before.
_STRAGGLERS = 3


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="livecast bench auction", description=__doc__)
    parser.add_argument("--bidders", type=int, default=2000)
    parser.add_argument("--viewers", type=int, default=200, help="live-events sockets")
    parser.add_argument("--seconds", type=int, default=30, help="the auction's duration")
    parser.add_argument("--soft-close", type=int, default=5, help="soft_close_s")
    parser.add_argument("--bids-per-second", type=float, default=100.0)
    parser.add_argument("--inflight", type=int, default=64, help="bids in flight at most")
    args = parser.parse_args(list(argv))
    if not 1 <= args.bidders <= 100_000 or not 1 <= args.viewers <= 10_000:
        parser.error("--bidders must be 1-100000 and --viewers 1-10000")
    if not 5 <= args.seconds <= 600 or not 1 <= args.soft_close <= 60:
        parser.error("--seconds must be 5-600 and --soft-close 1-60")
    if not 0 < args.bids_per_second <= 10_000 or not 1 <= args.inflight <= 1000:
        parser.error("--bids-per-second must be 0-10000 and --inflight 1-1000")
    with tempfile.TemporaryDirectory(prefix="livecast-bench-", dir="/tmp") as tmp:
        server = start_server(Path(tmp), env={"LIVECAST_INVENTORY_SWEEP_INTERVAL_S": "0.1"})
        try:
            report = _run(args, server)
        except Exception as exc:
            report = server.failure(exc)
        finally:
            server.stop()
        errors = [ln for ln in server.log_path.read_text().splitlines() if " ERROR " in ln]
        report["server_errors"] = len(errors)
    print(json.dumps(report), flush=True)
    ok = report.get("bids_increasing") and report.get("extensions_exact")
    return 0 if ok and report.get("winner_is_highest") else 1


def _run(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(_bench(args, server))
    return uvloop.run(_bench(args, server))


async def _bench(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    import aiohttp

    from livecast.auth import Role, TokenIssuer

    stream_id, seller = await create_stream(server)
    base = server.base
    issuer = TokenIssuer(server.secret)
    seller_h = {"Authorization": f"Bearer {seller}"}
    bidders = [
        issuer.issue(sub=f"bidder-{n}", name=f"Bidder {n}", role=Role.VIEWER, ttl_s=7200)
        for n in range(args.bidders)
    ]
    connector = aiohttp.TCPConnector(limit=args.inflight + args.viewers + 16)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(f"{base}/api/streams/{stream_id}/start", headers=seller_h) as r:
            assert r.status == 200, await r.text()
        product = {
            "title": "Bench lot",
            "price": {"amount_minor": 10_000, "currency": "EUR"},
            "stock": 1,
        }
        async with http.put(f"{base}/api/products/LOT-1", json=product, headers=seller_h) as r:
            assert r.status in (200, 201), await r.text()

        # Every viewer's receipt time of each bid count it saw (monotonic, this process).
        seen: list[dict[int, float]] = [{} for _ in range(args.viewers)]
        sockets = [
            await http.ws_connect(f"{base}/ws/streams/{stream_id}", protocols=("livecast.v1.json",))
            for _ in range(args.viewers)
        ]
        readers = [asyncio.create_task(_read(ws, seen[i])) for i, ws in enumerate(sockets)]
        await asyncio.sleep(0.5)

        body = {
            "sku": "LOT-1",
            "start_price": {"amount_minor": 100, "currency": "EUR"},
            "duration_s": args.seconds,
            "soft_close_s": args.soft_close,
        }
        async with http.post(
            f"{base}/api/streams/{stream_id}/auctions", json=body, headers=seller_h
        ) as r:
            assert r.status == 201, await r.text()
            auction = await r.json()
        auction_id = auction["id"]
        url = f"{base}/api/auctions/{auction_id}/bids"

        sent_at: dict[int, float] = {}  # bid count -> when the bid that made it was sent
        answers: Counter[str] = Counter()
        bid_ms: list[float] = []
        best_max: dict[str, int] = {}
        state = {"next": 100, "ended": False}
        slots = asyncio.Semaphore(args.inflight)
        rng = random.Random(17)
        cpu_before = cpu_seconds(server.pid)
        started = time.monotonic()

        async def bid(n: int, key: int) -> None:
            async with slots:
                steps = rng.choice((0, 0, 0, 1, 2)) if rng.random() < 0.8 else rng.randint(3, 10)
                nxt = state["next"]
                amount = nxt + steps * _step(nxt)
                payload = {"amount": {"amount_minor": amount, "currency": "EUR"}, "key": f"k{key}"}
                headers = {"Authorization": f"Bearer {bidders[n]}"}
                t0 = time.monotonic()
                async with http.post(url, json=payload, headers=headers) as resp:
                    answer = await resp.json()
                bid_ms.append((time.monotonic() - t0) * 1000)
                if resp.status == 200:
                    answers[answer["outcome"]] += 1
                    state["next"] = max(state["next"], answer["next_bid"]["amount_minor"])
                    best_max[f"bidder-{n}"] = max(best_max.get(f"bidder-{n}", 0), amount)
                    if answer["outcome"] != "max_raised":
                        sent_at[answer["bids"]] = t0
                else:
                    code = answer["error"]["code"]
                    answers[code] += 1
                    if code == "bid_too_low":
                        state["next"] = max(
                            state["next"], answer["error"]["next_bid"]["amount_minor"]
                        )
                    if code == "auction_ended":
                        state["ended"] = True

        tasks: list[asyncio.Task[None]] = []
        key = 0
        # The crowd bids at full rate until the auction's first end time, then a few
        # stragglers (one every half window) keep it going, then nobody: it ends.
        first_end = started + args.seconds
        stragglers = _STRAGGLERS
        while not state["ended"] and stragglers > 0:
            key += 1
            tasks.append(asyncio.create_task(bid(rng.randrange(args.bidders), key)))
            if time.monotonic() < first_end - 0.2:
                await asyncio.sleep(rng.expovariate(args.bids_per_second))
            else:
                stragglers -= 1
                await asyncio.sleep(args.soft_close / 2)
        await asyncio.gather(*tasks)
        bidding_s = time.monotonic() - started
        cpu_s = cpu_seconds(server.pid) - cpu_before

        final: dict[str, Any] = {}
        for _ in range(100):
            async with http.get(f"{base}/api/auctions/{auction_id}") as r:
                final = await r.json()
            if final["state"] != "running":
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        for ws in sockets:
            await ws.close()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        async with http.get(f"{url}") as r:
            log = (await r.json())["bids"]
        winner_ok = False
        if final.get("leader_id"):
            winner = final["leader_id"]
            token = bidders[int(winner.split("-")[1])]
            async with http.get(
                f"{base}/api/cart", headers={"Authorization": f"Bearer {token}"}
            ) as r:
                cart = await r.json()
            prices = [line["line_total"]["amount_minor"] for line in cart["lines"]]
            winner_ok = best_max[winner] == max(best_max.values()) and prices == [
                final["price"]["amount_minor"]
            ]

    latencies: list[float] = []
    missed = 0
    for count, t0 in sent_at.items():
        for viewer in seen:
            if count in viewer:
                latencies.append((viewer[count] - t0) * 1000)
            else:
                missed += 1
    latencies.sort()
    bid_ms.sort()
    prices = [b["price"]["amount_minor"] for b in log]
    increasing = all(b >= a + _step(a) for a, b in pairwise(prices))
    soft_ms = args.soft_close * 1000
    exact = True
    ends = auction["ends_at_ms"]
    extensions = 0
    for entry in log:
        inside = ends - entry["at_ms"] <= soft_ms
        want = ends + soft_ms if inside else ends
        exact &= entry["ends_at_ms"] == want and entry["extended_ms"] == (soft_ms if inside else 0)
        extensions += inside
        ends = entry["ends_at_ms"]
    exact &= final.get("ends_at_ms") == ends and final.get("extensions") == extensions
    return {
        "bidders": args.bidders,
        "viewers": args.viewers,
        "seconds": args.seconds,
        "soft_close_s": args.soft_close,
        "bids_sent": key,
        "bids_answered": dict(answers),
        "price_moves": len(log),
        "distinct_bidders": final.get("bidders"),
        "extensions": extensions,
        "final_price_minor": final.get("price", {}).get("amount_minor"),
        "state": final.get("state"),
        "bidding_s": round(bidding_s, 2),
        "bids_increasing": increasing,
        "extensions_exact": bool(exact),
        "winner_is_highest": winner_ok,
        "update_ms_p50": round(percentile(latencies, 0.5), 2),
        "update_ms_p99": round(percentile(latencies, 0.99), 2),
        "updates_measured": len(latencies),
        "updates_missed": missed,
        "bid_ms_p50": round(percentile(bid_ms, 0.5), 2),
        "bid_ms_p99": round(percentile(bid_ms, 0.99), 2),
        "server_cpu_s": round(cpu_s, 2),
        "loadavg_1m": os.getloadavg()[0],
    }


async def _read(ws: Any, seen: dict[int, float]) -> None:
    import aiohttp

    async for message in ws:
        if message.type is not aiohttp.WSMsgType.TEXT:
            continue
        if '"auction.bid"' not in message.data:
            continue
        event = json.loads(message.data)
        seen.setdefault(event["data"]["bids"], time.monotonic())


def _step(price: int) -> int:
    from livecast.selling.increments import DEFAULT_INCREMENTS, step_for

    return step_for(DEFAULT_INCREMENTS, price)
