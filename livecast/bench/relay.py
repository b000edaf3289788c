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
``first_frame_ms_p50/p95``  from a viewer's WHEP POST to its first complete keyframe (every
                            packet there, decrypted and depacketized: a picture it can
                            decode); ``answer_ms``, ``connected_ms`` (its DTLS connection)
                            and ``first_frame_after_connect_ms`` (the relay's keyframe
                            handling without ICE/DTLS setup) split that up;
                            ``caught_up_ms``: until the newest frame of the moment it
                            joined (the end of a catch-up burst); ``joins_failed``: viewers
                            with no complete keyframe within 30 s
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

``--storm SECONDS`` measures a join storm instead: ``--watching`` viewers join first;
then the ``--viewers`` joiners, their peer connections and offers made beforehand, POST
them spread evenly over SECONDS (``--join-concurrency`` is then for the watchers only).
The joining figures above are the joiners', and ``storm`` adds, from the first POST to
the last joiner's first keyframe: the server's CPU (``server_cpu_ms_per_join``: beyond
what it spent with the watchers alone and, at the window's rate, relaying to the joiners
once in; ``_gross`` without the latter) and the joiner processes' own
(``client_cores``, ``client_cpu_ms_per_join``: aiortc peers on the same machine, whose
time is not the server's), and each watcher's frame rate from the first POST to a
second after the last first keyframe (``watchers_fps_min``, ``watchers_gap_ms_max``:
the longest wait for a frame). ``--profile`` then records the storm. The window that
follows measures every viewer as above. ``--pin`` keeps the two apart: the server on
one core, the publisher and viewers on the others (other work on the machine still
shares both).

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
import itertools
import json
import math
import multiprocessing as mp
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from livecast.bench._floor import measure_floor
from livecast.bench._processes import collect, join_all, shares
from livecast.bench._relay_peers import JoinPlan, Signals, publisher_main, viewers_main
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
        "--storm",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="a join storm: the --viewers POST their offers spread evenly over SECONDS "
        "(offers made beforehand), after the --watching viewers are in",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server on the first core, this command's own processes (publisher, "
        "viewers) on the others",
    )
    parser.add_argument(
        "--watching",
        type=int,
        default=0,
        help="with --storm: viewers that join first and watch through the storm",
    )
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
    if not 0 <= args.storm <= 60 or not 0 <= args.watching <= 2000:
        parser.error("--storm must be 0-60 s and --watching 0-2000")
    if args.watching and not args.storm:
        parser.error("--watching is for a --storm")
    args.cores = sorted(os.sched_getaffinity(0))
    if args.pin and (args.workers > 1 or len(args.cores) < 2):
        parser.error("--pin is for one worker on a machine of two cores or more")
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
    storm = args.storm > 0
    watcher_procs = math.ceil(args.watching / 75) if args.watching else 0
    with tempfile.TemporaryDirectory(prefix="livecast-bench-") as tmp:
        server = start_server(
            Path(tmp),
            env={
                "LIVECAST_WEBRTC_MAX_VIEWERS_PER_STREAM": str(args.viewers + args.watching + 10),
                # the relay alone: HLS packaging (AAC, VP8 to H.264) has its own bench
                "LIVECAST_HLS_ENABLED": "false",
                "LIVECAST_WEBRTC_FAST_RELAY": "true" if fast else "false",
            },
            workers=args.workers,
        )
        if args.pin:
            _pin(server.pid, args.cores)
        base = server.base
        publisher: Any = None
        watchers: list[Any] = []
        viewers: list[Any] = []
        signals = Signals(
            go=ctx.Event(),
            go_at=ctx.Value("d", 0.0),
            start=ctx.Event(),
            window_over=ctx.Event(),
            stop=ctx.Event(),
        )
        storm_figures: dict[str, Any] = {}
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
                    signals.stop,
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

            def spawn(plans: list[JoinPlan]) -> list[Any]:
                started = []
                for plan in plans:
                    process = ctx.Process(
                        target=viewers_main,
                        args=(base, stream_id, args.codec, plan, signals, results),
                        daemon=True,
                    )
                    process.start()
                    started.append(process)
                return started

            def wait_for(kind: str, count: int, viewers: int) -> list[dict[str, Any]]:
                return collect(results, kind, count, timeout=60 + viewers * 0.5)

            serving = server.pids()
            base_cpu0, base_wall0 = _cpu(serving), time.monotonic()
            time.sleep(3.0)
            baseline = (_cpu(serving) - base_cpu0) / (time.monotonic() - base_wall0)
            rss_before = _rss(serving)
            ready: list[dict[str, Any]] = []
            if storm:
                if args.watching:
                    watchers = spawn(
                        [
                            JoinPlan(count, args.join_concurrency, record_frames=True)
                            for count in shares(args.watching, watcher_procs)
                        ]
                    )
                    wait_for("viewers_ready", watcher_procs, args.watching)
                viewers = spawn(
                    [
                        JoinPlan(count, storm_seconds=args.storm, offset=i, stride=procs,
                                 total=args.viewers)
                        for i, count in enumerate(shares(args.viewers, procs))
                    ]
                )  # fmt: skip
                wait_for("viewers_prepared", procs, args.viewers)
                # what the server spends with the watchers alone, just before the storm
                cpu_pre, wall_pre = _cpu(serving), time.monotonic()
                time.sleep(1.0)
                watching_cores = (_cpu(serving) - cpu_pre) / (time.monotonic() - wall_pre)
                profiler = _profile(args.profile, serving[0])
                storm_cpu0 = _cpu(serving)
                clients_cpu0 = _cpu([p.pid for p in viewers])
                watchers_cpu0 = _cpu([p.pid for p in watchers])
                signals.go_at.value = go_at = time.monotonic() + 0.2
                signals.go.set()
                ready = wait_for("viewers_ready", procs, args.viewers)
                storm_end = time.monotonic()
                storm_cpu = _cpu(serving) - storm_cpu0
                clients_cpu = _cpu([p.pid for p in viewers]) - clients_cpu0
                watchers_cpu = _cpu([p.pid for p in watchers]) - watchers_cpu0
                storm_load = os.getloadavg()[0]
                _stop_profile(profiler)
                storm_figures = {
                    "go_at": go_at,
                    "span": storm_end - go_at,
                    "server_cpu": storm_cpu,
                    "watching_cores": watching_cores,
                    "clients_cpu": clients_cpu,
                    "watchers_cpu": watchers_cpu,
                    "load": storm_load,
                }
            else:
                viewers = spawn(
                    [
                        JoinPlan(count, args.join_concurrency)
                        for count in shares(args.viewers, procs)
                    ]
                )
                signals.go.set()
                ready = wait_for("viewers_ready", procs, args.viewers)
            time.sleep(1.0)  # let the join burst settle
            rss_after = _rss(serving)
            profiler = None if storm else _profile(args.profile, serving[0])
            status0 = asyncio.run(media_status(origin, stream_id))
            bench_pids = [process.pid for process in [*viewers, *watchers]]
            per_worker0 = [cpu_seconds(pid) for pid in serving]
            cpu0, wall0 = sum(per_worker0), time.monotonic()
            peers0 = [_cpu(bench_pids), cpu_seconds(publisher.pid), _busy_seconds()]
            signals.start.set()
            time.sleep(args.seconds)
            per_worker1 = [cpu_seconds(pid) for pid in serving]
            cpu1, wall1 = sum(per_worker1), time.monotonic()
            peers1 = [_cpu(bench_pids), cpu_seconds(publisher.pid), _busy_seconds()]
            load = os.getloadavg()
            status1 = asyncio.run(media_status(origin, stream_id))
            signals.window_over.set()
            _stop_profile(profiler)
            reports = collect(results, "viewers_report", procs + len(watchers))
            floor = measure_floor()
        except Exception as exc:
            return server.failure(exc)
        finally:
            signals.stop.set()
            join_all([publisher, *watchers, *viewers])
            server.stop()
    cores = (cpu1 - cpu0) / (wall1 - wall0)
    window = wall1 - wall0
    delivered_pps = sum(r["packets"] + r["lost"] for r in reports) / window
    # server CPU per relayed packet, beyond what the publisher alone costs; at full
    # rate a viewer takes full_rate_pps packets a second
    us_per_packet = (cores - baseline) / delivered_pps * 1e6 if delivered_pps else float("nan")
    projected = 1e6 / (us_per_packet * full_rate_pps) if us_per_packet > 0 else None
    fps = [frames / window for report in reports for frames in report["frames"]]
    joined = _joined(ready)
    worker_cores = [(b - a) / window for a, b in zip(per_worker0, per_worker1, strict=True)]
    # the box: every worker relaying at full rate, one core each (as many as it has)
    box_cores = min(args.workers, len(os.sched_getaffinity(0)))
    result = {
        "benchmark": "relay",
        "relay_path": "fast" if fast else "aiortc",
        "codec": args.codec,
        "audio": not args.no_audio,
        "keyframe_requests_honoured": not args.ignore_keyframe_requests,
        "viewers": args.viewers,
        "viewer_processes": procs,
        "pinned": args.pin,
        "seconds": round(window, 2),
        "publisher_kbps": publisher_kbps,
        "server_cores": round(cores, 3),
        "viewers_per_core": round((args.viewers + args.watching) / cores, 1) if cores > 0 else None,
        "server_cpu_per_viewer": round(cores / (args.viewers + args.watching), 5),
        "server_cores_publisher_only": round(baseline, 3),
        "server_cpu_per_viewer_marginal": round(
            (cores - baseline) / (args.viewers + args.watching), 5
        ),
        "server_us_per_packet": round(us_per_packet, 2),
        "full_rate_pps_per_viewer": round(full_rate_pps, 1),
        "viewers_per_core_at_full_rate": round(projected, 1) if projected else None,
        "workers": args.workers,
        "worker_cores": [round(cores, 3) for cores in worker_cores],
        "box_viewers_at_full_rate": round(projected * box_cores, 1) if projected else None,
        "fps_per_viewer_min": round(min(fps), 2),
        "fps_per_viewer_mean": round(sum(fps) / len(fps), 2),
        **joined,
        "source_fps": round((status1["video_frames_in"] - status0["video_frames_in"]) / window, 2),
        "keyframe_requests": status1["keyframe_requests"] - status0["keyframe_requests"],
        "viewers_waiting_keyframe": status1["viewers_waiting_keyframe"],
        "packets_received": sum(r["packets"] for r in reports),
        "lost_packets": sum(r["lost"] for r in reports),
        "rss_per_viewer_kb": round((rss_after - rss_before) / (args.viewers + args.watching), 1),
        **floor,
        "load_average_1m": round(load[0], 2),
        "viewer_processes_cores": round((peers1[0] - peers0[0]) / window, 3),
        "publisher_cores": round((peers1[1] - peers0[1]) / window, 3),
        "machine_busy_cores": round((peers1[2] - peers0[2]) / window, 3),
        "machine_cores": os.cpu_count(),
        "ratio_to_floor": round(us_per_packet / floor["floor_us_per_packet"], 2),
        "server_rss_mb": round(rss_after / 1024, 1),
    }
    if storm:
        frame_times = [times for r in reports for times in r["frame_times"]]
        relaying = (cores - baseline) / (args.viewers + args.watching)
        result["storm"] = _storm(args, storm_figures, ready, frame_times, relaying)
    return result


def _pin(server_pid: int, cores: list[int]) -> None:
    """The server (and what it starts from now on) on the first of ``cores``; this
    command, and so the processes it starts from now on, on the others."""
    os.sched_setaffinity(server_pid, {cores[0]})
    os.sched_setaffinity(0, set(cores[1:]))


def _profile(path: str | None, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy recording ``pid`` into ``path`` (collapsed stacks) until :func:`_stop_profile`."""
    if not path:
        return None
    command = ["py-spy", "record", "--format", "raw", "--nonblocking", "--rate", "500"]
    return subprocess.Popen(
        [*command, "-p", str(pid), "-o", path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop_profile(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        profiler.wait(timeout=30)


def _ms(values: list[float], q: float) -> float:
    return round(percentile(values, q), 1)


def _joined(ready: list[dict[str, Any]]) -> dict[str, Any]:
    """How the viewers joined: from each WHEP POST to its answer, its DTLS connection,
    its first complete keyframe and the newest frame of the moment it joined."""

    def values(key: str) -> list[float]:
        return sorted(ms for r in ready for ms in r[key] if ms is not None)

    first = values("first_frame_ms")
    answered, connected, caught_up = (
        values("answer_ms"),
        values("connected_ms"),
        values("caught_up_ms"),
    )
    after_connect = sorted(
        f - c
        for r in ready
        for f, c in zip(r["first_frame_ms"], r["connected_ms"], strict=True)
        if f is not None
    )
    return {
        "first_frame_ms_p50": _ms(first, 0.50),
        "first_frame_ms_p95": _ms(first, 0.95),
        "first_frame_ms_max": round(first[-1], 1) if first else None,
        "answer_ms_p50": _ms(answered, 0.50),
        "answer_ms_p95": _ms(answered, 0.95),
        "connected_ms_p50": _ms(connected, 0.50),
        "connected_ms_p95": _ms(connected, 0.95),
        "first_frame_after_connect_ms_p50": _ms(after_connect, 0.50),
        "first_frame_after_connect_ms_p95": _ms(after_connect, 0.95),
        "caught_up_ms_p50": _ms(caught_up, 0.50),
        "caught_up_ms_p95": _ms(caught_up, 0.95),
        "joins_failed": sum(ms is None for r in ready for ms in r["first_frame_ms"]),
        "incomplete_first_keyframes": sum(r["incomplete_keyframes"] for r in ready),
    }


def _storm(
    args: argparse.Namespace,
    figures: dict[str, Any],
    ready: list[dict[str, Any]],
    frame_times: list[list[float]],
    relaying: float,
) -> dict[str, Any]:
    """The storm: what it cost the server and the joiners' own processes, and how the
    viewers already watching got their frames meanwhile. ``relaying``: the server's
    cores per viewer relayed to, as the window measured it."""
    joiners = args.viewers
    go_at, span = figures["go_at"], figures["span"]
    arrived = [at for r in ready for at in r["first_frame_at"] if at is not None]
    # from the first slot to a second after the last joiner's first frame (or the end
    # of the slots, whichever is later)
    until = max([go_at + args.storm, *arrived]) + 1.0
    fps, gaps = [], []
    for times in frame_times:
        inside = [t for t in times if go_at <= t <= until]
        fps.append(len(inside) / (until - go_at))
        around = [t for t in times if go_at - 0.5 <= t <= until]
        gaps.append(max((b - a for a, b in itertools.pairwise(around)), default=0.0))
    server_ms = (figures["server_cpu"] - figures["watching_cores"] * span) * 1000
    # the joiners were also relayed to from their first keyframe to the storm's end
    relayed_s = sum(max(0.0, go_at + span - at) for at in arrived)
    joining_ms = server_ms - relaying * relayed_s * 1000
    return {
        "joiners": joiners,
        "spread_s": args.storm,
        "watching": args.watching,
        "span_s": round(span, 2),
        "server_cores": round(figures["server_cpu"] / span, 3),
        "server_cores_before": round(figures["watching_cores"], 3),
        "server_cpu_ms_per_join": round(joining_ms / joiners, 2),
        "server_cpu_ms_per_join_gross": round(server_ms / joiners, 2),
        "client_cores": round(figures["clients_cpu"] / span, 3),
        "client_cpu_ms_per_join": round(figures["clients_cpu"] * 1000 / joiners, 2),
        "watchers_client_cores": round(figures["watchers_cpu"] / span, 3),
        "watchers_window_s": round(until - go_at, 2),
        "watchers_fps_min": round(min(fps), 2) if fps else None,
        "watchers_fps_mean": round(sum(fps) / len(fps), 2) if fps else None,
        "watchers_below_29_fps": sum(f < 29 for f in fps),
        "watchers_gap_ms_max": round(max(gaps) * 1000, 1) if gaps else None,
        "load_average_1m": round(figures["load"], 2),
    }
