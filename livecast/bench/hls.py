"""``livecast bench hls``: LL-HLS players on one origin, with or without a CDN in front.

Starts ``livecast serve`` in its own process, a WHIP publisher process sending a
pre-encoded 640x360 30 fps H.264 clip with Opus (the relay benchmark's), and ``--procs``
player processes running ``--players`` simulated LL-HLS players between them
(:mod:`livecast.bench._hls_players`: each does what hls.js in low-latency mode does at
the live edge, a blocking playlist reload for the hinted part and, at the same time, a
GET of that part, over a lean keep-alive client so that the origin, not the players, is
what runs out first). With ``--cdn``, Debian's nginx runs on loopback in front of the
origin (``proxy_cache`` with ``proxy_cache_lock``, honouring the origin's cache headers)
and the players go through it. One JSON line is printed:

``requests_per_s``, ``bytes_per_s``     what the players got, over ``--seconds``
``origin_cores``                        the server's CPU use (cores) in that window;
``origin_cpu_per_player``               per player, and ``players_per_origin_core``
``player_cores``                        what the player processes used meanwhile: well
                                        below ``origin_cores``, or they are the bottleneck
``requests_per_s_per_origin_core``      and ``bytes_per_s_per_origin_core``
``origin_requests``, ``objects``        requests that reached the origin (with ``--cdn``:
                                        from nginx's log), distinct URLs asked for
``origin_requests_per_object``          about 1 behind the CDN; ``players`` without it
``audio_requests``                      of ``requests``, those for the audio rendition
                                        (its media playlist and parts)
``part_age_ms_p50/p95``                 when a player has a part, how long after the end
                                        of its media (the segment's program date time, the
                                        wall time its first frame reached the origin, plus
                                        the part's end offset): packaging and delivery
                                        latency, not glass to glass (``livecast bench
                                        glass`` measures that)
``load_average_1m``                     the machine's, at the end of the window
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from livecast.bench._hls_players import players_main
from livecast.bench._nginx import nginx_binary, start_nginx
from livecast.bench._processes import collect, join_all, shares
from livecast.bench._relay_peers import publisher_main
from livecast.bench._server import (
    cpu_seconds,
    create_stream,
    percentile,
    record_profile,
    start_server,
)

__all__ = ["main"]


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="livecast bench hls", description=__doc__.split("\n")[0])
    parser.add_argument("--players", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cdn", action="store_true", help="nginx (proxy_cache) in front")
    parser.add_argument("--bitrate", type=int, default=1_000_000, help="clip bitrate, bit/s")
    parser.add_argument("--procs", type=int, default=0, help="player processes (default: auto)")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="record the origin with py-spy during the window (collapsed stacks to FILE)",
    )
    args = parser.parse_args(list(argv))
    if not 1 <= args.players <= 5000 or not 1 <= args.seconds <= 600:
        parser.error("--players must be 1-5000 and --seconds 1-600")
    if args.cdn and nginx_binary() is None:
        parser.error("--cdn needs nginx (apt-get install nginx-light)")
    procs = args.procs or max(1, min(4, math.ceil(args.players / 500)))
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
            # every player has its connections and a first part; then a second or two
            # at the live edge before counting
            collect(results, "players_ready", procs, timeout=60 + args.players * 0.05)
            time.sleep(2.0)
            if args.cdn:
                access_log.write_bytes(b"")  # count the window only
            profiler = None
            if args.profile:
                profiler = record_profile(server.pid, args.seconds, args.profile)
            cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
            players_cpu0 = sum(cpu_seconds(p.pid) for p in players)
            start.set()
            time.sleep(args.seconds)
            window_over.set()
            cpu1, wall1 = cpu_seconds(server.pid), time.monotonic()
            players_cpu1 = sum(cpu_seconds(p.pid) for p in players)
            load_average = os.getloadavg()[0]
            if profiler is not None:
                profiler.wait(timeout=30)
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
        player_cores = (players_cpu1 - players_cpu0) / window
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
        "origin_cpu_per_player": round(cores / args.players, 6),
        "players_per_origin_core": round(args.players / cores, 1) if cores else None,
        "player_cores": round(player_cores, 3),
        "requests_per_s_per_origin_core": round(requests / window / cores, 1) if cores else None,
        "bytes_per_s_per_origin_core": round(received / window / cores) if cores else None,
        "origin_requests": origin_requests,
        "objects": len(asked),
        "origin_requests_per_object": round(origin_requests / len(asked), 2) if asked else None,
        "audio_requests": sum(n for path, n in asked.items() if path.startswith("audio-")),
        "parts_received": len(ages),
        "part_age_ms_p50": round(percentile(ages, 0.50), 1),
        "part_age_ms_p95": round(percentile(ages, 0.95), 1),
        "errors": errors,
        "load_average_1m": round(load_average, 2),
    }


async def _wait_playlist(url: str) -> None:
    """The video media playlist, once it has a complete segment (the stream is being
    packaged), found through the multivariant playlist at ``url``."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            async with http.get(url) as resp:
                multivariant = await resp.text() if resp.status == 200 else ""
            lines = multivariant.splitlines()
            found = [i for i, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF:")]
            if found:
                async with http.get(url.rsplit("/", 1)[0] + "/" + lines[found[0] + 1]) as resp:
                    text = await resp.text()
                    if resp.status == 200 and "#EXTINF" in text:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError("no HLS playlist with a complete segment after 30 s")
