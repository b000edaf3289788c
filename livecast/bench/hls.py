"""``livecast bench hls``: LL-HLS players on one origin, with or without a CDN in front.

Starts ``livecast serve`` in its own process, a WHIP publisher process sending a
pre-encoded 640x360 30 fps H.264 clip with Opus (the relay benchmark's), and ``--procs``
player processes running ``--players`` simulated LL-HLS players between them. Each
player does what hls.js in low-latency mode does at the live edge: a blocking playlist
reload for the hinted part (``_HLS_msn``/``_HLS_part``) and, at the same time, a GET of
that part; then again with the next hint. With ``--cdn``, Debian's nginx runs on
loopback in front of the origin (``proxy_cache`` with ``proxy_cache_lock``, honouring
the origin's cache headers) and the players go through it. One JSON line is printed:

``requests_per_s``, ``bytes_per_s``     what the players got, over ``--seconds``
``origin_cores``                        the server's CPU use (cores) in that window
``requests_per_s_per_origin_core``      and ``bytes_per_s_per_origin_core``
``origin_requests``, ``objects``        requests that reached the origin (with ``--cdn``:
                                        from nginx's log), distinct URLs asked for
``origin_requests_per_object``          about 1 behind the CDN; ``players`` without it
``part_age_ms_p50/p95``                 when a player has a part, how long after the end
                                        of its media (the segment's program date time, the
                                        wall time its first frame reached the origin, plus
                                        the part's end offset): packaging and delivery
                                        latency, not glass to glass
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import multiprocessing as mp
import re
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from livecast.bench._nginx import nginx_binary, start_nginx
from livecast.bench._processes import collect, join_all, shares
from livecast.bench._relay_peers import publisher_main
from livecast.bench._server import cpu_seconds, create_stream, percentile, start_server

__all__ = ["main"]

_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(part-\w+-\d+\.m4s)"')


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="livecast bench hls", description=__doc__.split("\n")[0])
    parser.add_argument("--players", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cdn", action="store_true", help="nginx (proxy_cache) in front")
    parser.add_argument("--bitrate", type=int, default=1_000_000, help="clip bitrate, bit/s")
    parser.add_argument("--procs", type=int, default=0, help="player processes (default: auto)")
    args = parser.parse_args(list(argv))
    if not 1 <= args.players <= 5000 or not 1 <= args.seconds <= 600:
        parser.error("--players must be 1-5000 and --seconds 1-600")
    if args.cdn and nginx_binary() is None:
        parser.error("--cdn needs nginx (apt-get install nginx-light)")
    procs = args.procs or max(1, min(4, math.ceil(args.players / 400)))
    result = _run(args, procs)
    print(json.dumps(result), flush=True)
    return 0 if result.get("error") is None else 1


def _run(args: argparse.Namespace, procs: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="livecast-bench-") as tmp:
        server = start_server(Path(tmp))
        origin = server.base
        nginx: subprocess.Popen[bytes] | None = None
        access_log = Path(tmp) / "nginx" / "access.log"
        publisher: Any = None
        players: list[Any] = []
        stop = ctx.Event()
        try:
            stream_id, token = asyncio.run(create_stream(server))
            results: Any = ctx.Queue()
            publisher = ctx.Process(
                target=publisher_main,
                args=(origin, stream_id, token, "h264", args.bitrate, True, True, stop, results),
                daemon=True,
            )
            publisher.start()
            kind, payload = results.get(timeout=120)
            if kind != "publisher_ready":
                raise RuntimeError(f"publisher failed: {payload}")
            asyncio.run(_wait_playlist(f"{origin}/hls/{stream_id}/index.m3u8"))
            base = origin
            if args.cdn:
                nginx, base = start_nginx(Path(tmp) / "nginx", [server.port])
            start = ctx.Event()
            window_over = ctx.Event()
            for share in shares(args.players, procs):
                process = ctx.Process(
                    target=players_main,
                    args=(f"{base}/hls/{stream_id}", share, start, window_over, results),
                    daemon=True,
                )
                process.start()
                players.append(process)
            time.sleep(2.0)  # every player reaches the live edge
            if args.cdn:
                access_log.write_bytes(b"")  # count the window only
            cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
            start.set()
            time.sleep(args.seconds)
            window_over.set()
            cpu1, wall1 = cpu_seconds(server.pid), time.monotonic()
            reports = collect(results, "players_report", procs)
        except Exception as exc:
            return server.failure(exc)
        finally:
            stop.set()
            join_all([publisher, *players])
            if nginx is not None:
                nginx.terminate()
                nginx.wait(timeout=15)
            server.stop()
        window = wall1 - wall0
        cores = (cpu1 - cpu0) / window
        requests = sum(r["requests"] for r in reports)
        received = sum(r["bytes"] for r in reports)
        asked: Counter[str] = Counter()
        for report in reports:
            asked.update(report["asked"])
        if args.cdn:
            origin_counts: Counter[str] = Counter()
            for line in access_log.read_text().splitlines():
                _status, upstream, uri = line.split(" ", 2)
                if upstream != "-":
                    origin_counts[uri.split("/hls/", 1)[1].split("/", 1)[1]] += 1
            origin_requests = sum(origin_counts.values())
        else:
            origin_requests = requests
        ages = sorted(age for r in reports for age in r["part_ages_ms"])
        errors = sum(r["errors"] for r in reports)
    return {
        "benchmark": "hls",
        "players": args.players,
        "player_processes": procs,
        "cdn": args.cdn,
        "seconds": round(window, 2),
        "requests": requests,
        "requests_per_s": round(requests / window, 1),
        "bytes_per_s": round(received / window),
        "origin_cores": round(cores, 3),
        "requests_per_s_per_origin_core": round(requests / window / cores, 1) if cores else None,
        "bytes_per_s_per_origin_core": round(received / window / cores) if cores else None,
        "origin_requests": origin_requests,
        "objects": len(asked),
        "origin_requests_per_object": round(origin_requests / len(asked), 2) if asked else None,
        "parts_received": len(ages),
        "part_age_ms_p50": round(percentile(ages, 0.50), 1),
        "part_age_ms_p95": round(percentile(ages, 0.95), 1),
        "errors": errors,
    }


async def _wait_playlist(url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            async with http.get(url) as resp:
                if resp.status == 200 and "#EXTINF" in await resp.text():
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("no HLS playlist with a complete segment after 30 s")


# -- the players (their own processes) ---------------------------------------------------


def players_main(base: str, count: int, start: Any, window_over: Any, results: Any) -> None:
    try:
        asyncio.run(_players(base, count, start, window_over, results))
    except Exception as exc:
        results.put(("error", f"players: {type(exc).__name__}: {exc}"))


async def _players(base: str, count: int, start: Any, window_over: Any, results: Any) -> None:
    import aiohttp

    stats: dict[str, Any] = {
        "requests": 0,
        "bytes": 0,
        "errors": 0,
        "part_ages_ms": [],
        "asked": Counter(),
    }
    counting = False
    done = False

    async def get(http: aiohttp.ClientSession, path: str) -> tuple[int, bytes]:
        async with http.get(f"{base}/{path}") as resp:
            body = await resp.read()
        if counting:
            stats["requests"] += 1
            stats["bytes"] += len(body)
            stats["asked"][path] += 1
        return resp.status, body

    async def player(http: aiohttp.ClientSession) -> None:
        status, body = await get(http, "index.m3u8")
        while not done:
            text = body.decode()
            hint = _HINT.search(text)
            if status != 200 or hint is None:
                stats["errors"] += counting
                await asyncio.sleep(0.2)
                status, body = await get(http, "index.m3u8")
                continue
            name = hint[1]
            msn, index = _next_part(text)
            (status, body), (part_status, _part) = await asyncio.gather(
                get(http, f"index.m3u8?_HLS_msn={msn}&_HLS_part={index}"), get(http, name)
            )
            if counting and part_status == 200 and status == 200:
                ends = _part_ends(body.decode())
                if name in ends:
                    stats["part_ages_ms"].append((time.time() - ends[name]) * 1000)

    async def follow_window() -> None:
        nonlocal counting, done
        await asyncio.to_thread(start.wait)
        counting = True
        await asyncio.to_thread(window_over.wait)
        counting = False
        done = True

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tasks = [asyncio.ensure_future(player(http)) for _ in range(count)]
        await follow_window()
        await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()
    results.put(("players_report", {**stats, "asked": dict(stats["asked"])}))


def _next_part(playlist: str) -> tuple[int, int]:
    """(msn, index) of the part after the newest listed, as a player computes it."""
    msn, parts, complete = -1, 0, False
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":", 1)[1]) - 1
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):  # one per segment, first of its tags
            msn, parts, complete = msn + 1, 0, False
        elif line.startswith("#EXT-X-PART:"):
            parts += 1
        elif line.startswith("seg-"):
            complete = True
    return (msn + 1, 0) if complete else (msn, parts)


def _part_ends(playlist: str) -> dict[str, float]:
    """Each listed part's name and the unix time its last frame reached the origin."""
    ends: dict[str, float] = {}
    at = 0.0
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            stamp = line.split(":", 1)[1].replace("Z", "+00:00")
            at = dt.datetime.fromisoformat(stamp).timestamp()
        elif line.startswith("#EXT-X-PART:"):
            duration = float(line.split("DURATION=", 1)[1].split(",", 1)[0])
            at += duration
            ends[line.split('URI="', 1)[1].split('"', 1)[0]] = at
    return ends
