"""``livecast bench relay``: how many viewers one server process relays a stream to.

Starts ``livecast serve`` in its own process (embedded Redis, a throw-away data dir),
one publisher process and ``--procs`` viewer processes, all real aiortc peers on
loopback. The publisher sends a pre-encoded 640x360 30 fps clip (~1 Mbit/s, a keyframe
every 2 s, encoded once, its packets looped; a keyframe request restarts the loop at its
keyframe, as an encoder would answer it, unless ``--ignore-keyframe-requests``, as OBS
and FFmpeg do) plus Opus audio. Viewers count packets and reassembled frames;
they never decode. After every viewer has its first frame, the server's CPU time and
each viewer's frames are measured over ``--seconds``. One JSON line is printed:

``viewers_per_core``        viewers divided by the server's CPU use (cores) in the window
``server_cpu_per_viewer``   cores per viewer (the publisher's ingest included); the
                            ``_marginal`` variant subtracts the publisher-only load
``fps_per_viewer_min``      the slowest viewer's video frame rate in the window
``first_frame_ms_p50/p95``  from a viewer's WHEP POST to its first complete video frame
                            (``first_frame_after_connect_ms``: from its DTLS connection,
                            i.e. the relay's keyframe handling without ICE/DTLS setup)
``lost_packets``            packets the viewers' receivers counted as lost
``rss_per_viewer_kb``       server RSS growth from publisher-only to all viewers, per viewer
``floor_us_per_packet``     SRTP protect plus UDP send of one ~1.2 KB packet, timed in this
                            process right after the window (:mod:`livecast.bench._floor`),
                            at the relay's cadence to sockets a receiver waits on: what
                            relaying a packet costs at the very least on this machine (with
                            ``_no_receiver`` and ``_back_to_back``, its best cases)
``ratio_to_floor``          ``server_us_per_packet`` over that floor
``load_average_1m``         the machine's load at the end of the window (others' work too)
``viewer_processes_cores``  CPU (cores) the bench's viewer processes used in the window, and
                            ``publisher_cores`` its publisher's: on loopback they share the
                            machine with the server; ``machine_busy_cores`` is every CPU's
                            busy time in the window (theirs, the server's, anyone else's)
                            and ``machine_cores`` how many there are

``--relay-path both`` runs the whole measurement twice, the server relaying through
aiortc's senders and then through the fan-out (``webrtc.fast_relay``), and prints one
line with the main figures of both side by side (``compared``) and each run in full.

``--workers N`` runs ``livecast serve --workers N`` (one viewer's WHEP POST per
connection, so the kernel spreads the viewers over the workers; those on a worker that
is not the stream's origin are served by its edge pull). The CPU counted is the workers'
(their main process only supervises). ``worker_cores`` gives each worker's share, and
``box_viewers_at_full_rate`` is ``viewers_per_core_at_full_rate`` times the cores the
workers can use (N, at most the machine's): the viewers one box serves at full rate.

On a contended machine the server may not get the CPU it needs: then ``source_fps``
(frames reaching the relay) falls below 30 and so does every viewer's rate. The line
also gives ``server_us_per_packet`` (marginal server CPU per relayed packet) and
``viewers_per_core_at_full_rate``, that cost scaled to the packets a viewer takes at
30 fps: compare those across runs rather than ``viewers_per_core`` alone.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from livecast.bench._floor import measure_floor
from livecast.bench._processes import collect, join_all, shares
from livecast.bench._relay_peers import publisher_main, viewers_main
from livecast.bench._server import (
    cpu_seconds,
    create_stream,
    media_status,
    percentile,
    rss_kb,
    start_server,
)

__all__ = ["main"]


def _cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def _busy_seconds() -> float:
    """CPU seconds every CPU of the machine has been busy (not idle nor waiting on I/O)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _rss(pids: list[int]) -> int:
    return sum(rss_kb(pid) for pid in pids)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="livecast bench relay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--codec", choices=["h264", "vp8"], default="h264")
    parser.add_argument("--bitrate", type=int, default=1_000_000, help="clip bitrate, bit/s")
    parser.add_argument("--no-audio", action="store_true", help="publish video only")
    parser.add_argument(
        "--ignore-keyframe-requests",
        action="store_true",
        help="the publisher keeps its 2 s keyframe interval whatever it is asked (as OBS does)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="livecast serve --workers N: the box's cores, not one process (default 1)",
    )
    parser.add_argument("--procs", type=int, default=0, help="viewer processes (default: auto)")
    parser.add_argument("--join-concurrency", type=int, default=8, help="per viewer process")
    parser.add_argument(
        "--relay-path",
        choices=["fast", "aiortc", "both"],
        default="fast",
        help="the server's webrtc.fast_relay: on (fast), off (aiortc), or one run of "
        "each, aiortc first, compared in one line (both)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="record the server with py-spy during the window (collapsed stacks to FILE)",
    )
    args = parser.parse_args(list(argv))
    if not 1 <= args.viewers <= 2000 or not 1 <= args.seconds <= 600:
        parser.error("--viewers must be 1-2000 and --seconds 1-600")
    if not 1 <= args.workers <= 64:
        parser.error("--workers must be 1-64")
    procs = args.procs or max(1, min(8, math.ceil(args.viewers / 75)))
    paths = ["aiortc", "fast"] if args.relay_path == "both" else [args.relay_path]
    runs = [_run(args, procs, fast=path == "fast") for path in paths]
    result = runs[0] if len(runs) == 1 else _compared(paths, runs)
    print(json.dumps(result), flush=True)
    return 0 if all(run.get("error") is None for run in runs) else 1


def _compared(paths: list[str], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One line for runs of each relay path: the main figures side by side, then each
    run in full."""
    keys = (
        "viewers_per_core",
        "viewers_per_core_at_full_rate",
        "server_us_per_packet",
        "floor_us_per_packet",
        "ratio_to_floor",
        "fps_per_viewer_min",
        "first_frame_ms_p95",
        "load_average_1m",
    )
    side_by_side = {
        key: {p: run.get(key) for p, run in zip(paths, runs, strict=True)} for key in keys
    }
    return {"benchmark": "relay", "compared": side_by_side, "runs": runs}


# -- orchestration --------------------------------------------------------------------


def _run(args: argparse.Namespace, procs: int, *, fast: bool) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="livecast-bench-") as tmp:
        server = start_server(
            Path(tmp),
            env={
                "LIVECAST_WEBRTC_MAX_VIEWERS_PER_STREAM": str(args.viewers + 10),
                # the relay alone: HLS packaging (AAC, VP8 to H.264) has its own bench
                "LIVECAST_HLS_ENABLED": "false",
                "LIVECAST_WEBRTC_FAST_RELAY": "true" if fast else "false",
            },
            workers=args.workers,
        )
        base = server.base
        publisher: Any = None
        viewers: list[Any] = []
        stop = ctx.Event()
        try:
            stream_id, token = asyncio.run(create_stream(server))
            results: Any = ctx.Queue()
            publisher = ctx.Process(
                target=publisher_main,
                args=(
                    base,
                    stream_id,
                    token,
                    args.codec,
                    args.bitrate,
                    not args.no_audio,
                    not args.ignore_keyframe_requests,
                    stop,
                    results,
                ),
                daemon=True,
            )
            publisher.start()
            kind, payload = results.get(timeout=120)
            if kind != "publisher_ready":
                raise RuntimeError(f"publisher failed: {payload}")
            publisher_kbps = payload["kbps"]
            full_rate_pps = payload["full_rate_pps"]
            time.sleep(1.0)
            # the stream's numbers are its origin's (a worker's private URL with --workers)
            origin = asyncio.run(media_status(base, stream_id))["origin_url"] or base
            serving = server.pids()
            base_cpu0, base_wall0 = _cpu(serving), time.monotonic()
            time.sleep(3.0)
            baseline = (_cpu(serving) - base_cpu0) / (time.monotonic() - base_wall0)
            rss_before = _rss(serving)
            start = ctx.Event()
            window_over = ctx.Event()
            for share in shares(args.viewers, procs):
                process = ctx.Process(
                    target=viewers_main,
                    args=(
                        base,
                        stream_id,
                        share,
                        args.join_concurrency,
                        start,
                        window_over,
                        stop,
                        results,
                    ),
                    daemon=True,
                )
                process.start()
                viewers.append(process)
            ready: list[dict[str, Any]] = []
            deadline = time.monotonic() + 60 + args.viewers * 0.5
            while len(ready) < procs:
                kind, payload = results.get(timeout=max(1.0, deadline - time.monotonic()))
                if kind == "viewers_ready":
                    ready.append(payload)
                elif kind == "error":
                    raise RuntimeError(payload)
            time.sleep(1.0)  # let the join burst settle
            rss_after = _rss(serving)
            profiler = None
            if args.profile:
                profiler = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "--format",
                        "raw",
                        "--nonblocking",
                        "-p",
                        str(serving[0]),
                        "-d",
                        str(int(args.seconds)),
                        "-o",
                        args.profile,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            status0 = asyncio.run(media_status(origin, stream_id))
            bench_pids = [process.pid for process in viewers]
            per_worker0 = [cpu_seconds(pid) for pid in serving]
            cpu0, wall0 = sum(per_worker0), time.monotonic()
            peers0 = [_cpu(bench_pids), cpu_seconds(publisher.pid), _busy_seconds()]
            start.set()
            time.sleep(args.seconds)
            per_worker1 = [cpu_seconds(pid) for pid in serving]
            cpu1, wall1 = sum(per_worker1), time.monotonic()
            peers1 = [_cpu(bench_pids), cpu_seconds(publisher.pid), _busy_seconds()]
            load = os.getloadavg()
            status1 = asyncio.run(media_status(origin, stream_id))
            window_over.set()
            if profiler is not None:
                profiler.wait(timeout=30)
            reports = collect(results, "viewers_report", procs)
            floor = measure_floor()
        except Exception as exc:
            return server.failure(exc)
        finally:
            stop.set()
            join_all([publisher, *viewers])
            server.stop()
    cores = (cpu1 - cpu0) / (wall1 - wall0)
    window = wall1 - wall0
    delivered_pps = sum(r["packets"] + r["lost"] for r in reports) / window
    # server CPU per relayed packet, beyond what the publisher alone costs; at full
    # rate a viewer takes full_rate_pps packets a second
    us_per_packet = (cores - baseline) / delivered_pps * 1e6 if delivered_pps else float("nan")
    projected = 1e6 / (us_per_packet * full_rate_pps) if us_per_packet > 0 else None
    fps = [frames / window for report in reports for frames in report["frames"]]
    first = sorted(ms for r in ready for ms in r["first_frame_ms"])
    answered = sorted(ms for r in ready for ms in r["answer_ms"])
    after_connect = sorted(
        f - c for r in ready for f, c in zip(r["first_frame_ms"], r["connected_ms"], strict=True)
    )
    connected = sorted(ms for r in ready for ms in r["connected_ms"])
    worker_cores = [(b - a) / window for a, b in zip(per_worker0, per_worker1, strict=True)]
    # the box: every worker relaying at full rate, one core each (as many as it has)
    box_cores = min(args.workers, len(os.sched_getaffinity(0)))
    return {
        "benchmark": "relay",
        "relay_path": "fast" if fast else "aiortc",
        "codec": args.codec,
        "audio": not args.no_audio,
        "keyframe_requests_honoured": not args.ignore_keyframe_requests,
        "viewers": args.viewers,
        "viewer_processes": procs,
        "seconds": round(window, 2),
        "publisher_kbps": publisher_kbps,
        "server_cores": round(cores, 3),
        "viewers_per_core": round(args.viewers / cores, 1) if cores > 0 else None,
        "server_cpu_per_viewer": round(cores / args.viewers, 5),
        "server_cores_publisher_only": round(baseline, 3),
        "server_cpu_per_viewer_marginal": round((cores - baseline) / args.viewers, 5),
        "server_us_per_packet": round(us_per_packet, 2),
        "full_rate_pps_per_viewer": round(full_rate_pps, 1),
        "viewers_per_core_at_full_rate": round(projected, 1) if projected else None,
        "workers": args.workers,
        "worker_cores": [round(cores, 3) for cores in worker_cores],
        "box_viewers_at_full_rate": round(projected * box_cores, 1) if projected else None,
        "fps_per_viewer_min": round(min(fps), 2),
        "fps_per_viewer_mean": round(sum(fps) / len(fps), 2),
        "first_frame_ms_p50": round(percentile(first, 0.50), 1),
        "first_frame_ms_p95": round(percentile(first, 0.95), 1),
        "first_frame_ms_max": round(first[-1], 1),
        "answer_ms_p50": round(percentile(answered, 0.50), 1),
        "connected_ms_p50": round(percentile(connected, 0.50), 1),
        "first_frame_after_connect_ms_p50": round(percentile(after_connect, 0.50), 1),
        "first_frame_after_connect_ms_p95": round(percentile(after_connect, 0.95), 1),
        "source_fps": round((status1["video_frames_in"] - status0["video_frames_in"]) / window, 2),
        "keyframe_requests": status1["keyframe_requests"] - status0["keyframe_requests"],
        "viewers_waiting_keyframe": status1["viewers_waiting_keyframe"],
        "packets_received": sum(r["packets"] for r in reports),
        "lost_packets": sum(r["lost"] for r in reports),
        "rss_per_viewer_kb": round((rss_after - rss_before) / args.viewers, 1),
        **floor,
        "load_average_1m": round(load[0], 2),
        "viewer_processes_cores": round((peers1[0] - peers0[0]) / window, 3),
        "publisher_cores": round((peers1[1] - peers0[1]) / window, 3),
        "machine_busy_cores": round((peers1[2] - peers0[2]) / window, 3),
        "machine_cores": os.cpu_count(),
        "ratio_to_floor": round(us_per_packet / floor["floor_us_per_packet"], 2),
        "server_rss_mb": round(rss_after / 1024, 1),
    }
