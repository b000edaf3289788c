"""``livecast bench soak``: a third-party publisher and a few viewers for N minutes.

Starts ``livecast serve`` in its own process (embedded Redis, a throw-away data dir),
publishes with OBS's WebRTC stack (libdatachannel through ``node-datachannel``, set up as
OBS's WHIP output is: ``tests/ingest/interop/obs-whip-publish.mjs`` of the source
checkout, whose pinned packages it installs with ``npm ci``) a looped 640x360 H.264
clip (baseline, no B-frames, a keyframe every 2 s, ~1 Mbit/s) plus Opus at 30 fps, and
has ``--viewers`` aiortc viewers decode it over WHEP for the whole run. A publisher or
viewer whose session ends early is started again, and counted.

Progress goes to stderr as a JSON line every ``--progress-s``; at the end one JSON line
on stdout:

``reconnects``              publisher restarts plus viewer reconnects (also apart)
``frames_lost``             video frames missing from what the viewers decoded (gaps in
                            the frames' RTP timestamps), all viewers together
``packets_lost``            RTP packets the viewers' receivers reported lost
``fps_per_viewer``          each viewer's decoded frames per second over the run
``source_fps``              frames per second reaching the server from the publisher
``rss_mb``                  the server's RSS, ``[seconds, MB]`` at each progress line
``rss_growth_mb``           last RSS sample minus the first
``server_cores``            the server's mean CPU use over the run
``load_avg_max``            the machine's highest 1-minute load average seen (``cores`` for
                            scale): losses on a machine busier than its cores are the
                            machine's as much as the server's

Progress lines also give each window's ``source_fps`` and the viewers' ``packets_lost``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livecast.bench._publishers import (
    NODE_PUBLISHER,
    encode_opus,
    install_node_publisher,
    write_media_file,
)
from livecast.bench._relay_peers import CLIP_FRAMES, FPS, _encode_clip
from livecast.bench._server import cpu_seconds, create_stream, media_status, rss_kb, start_server

__all__ = ["main"]

VIDEO_CLOCK = 90_000
FRAME_TICKS = VIDEO_CLOCK // FPS
# a gap in RTP timestamps longer than this is a publisher restart, not lost frames
MAX_GAP_TICKS = 10 * VIDEO_CLOCK
RETRY_S = 1.0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="livecast bench soak", description=__doc__.split("\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=None, help="how long (default 30)")
    length.add_argument("--seconds", type=float, default=None, help="how long, in seconds")
    parser.add_argument("--viewers", type=int, default=3)
    parser.add_argument("--progress-s", type=float, default=60.0, help="stderr progress period")
    args = parser.parse_args(list(argv))
    seconds = args.seconds if args.seconds is not None else (args.minutes or 30.0) * 60
    if not 5 <= seconds <= 24 * 3600 or not 1 <= args.viewers <= 20:
        parser.error("the run must last 5 s to 24 h, with 1-20 viewers")
    if not NODE_PUBLISHER.exists():
        parser.error(f"{NODE_PUBLISHER} is missing: soak runs from a source checkout")
    result = asyncio.run(_run(seconds, args.viewers, max(1.0, args.progress_s)))
    print(json.dumps(result), flush=True)
    return 0 if result.get("error") is None else 1


# -- the viewers ------------------------------------------------------------------------


@dataclass
class _Viewer:
    """One WHEP viewer that decodes, and connects again whenever its session ends."""

    base: str
    stream_id: str
    frames: int = 0
    frames_lost: int = 0
    audio_frames: int = 0
    packets_lost: int = 0
    reconnects: int = 0
    _last_pts: int | None = None
    _lost_before: int = 0  # packets lost by the sessions before this one
    _pc: Any = None  # the current session's peer connection

    async def run(self, stop: asyncio.Event) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            first = True
            while not stop.is_set():
                if not first:
                    self.reconnects += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), RETRY_S)
                    if stop.is_set():
                        return
                first = False
                with contextlib.suppress(RuntimeError, OSError, aiohttp.ClientError):
                    await self._session(http, stop)

    async def _session(self, http: Any, stop: asyncio.Event) -> None:
        """One WHEP session, until it ends or ``stop`` is set."""
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

        pc = self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        ended = asyncio.Event()
        drains: list[asyncio.Task[None]] = []

        async def consume(track: MediaStreamTrack) -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = await track.recv()
                    if track.kind == "video":
                        self._count_video(frame.pts)
                    else:
                        self.audio_frames += 1
            ended.set()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            drains.append(asyncio.ensure_future(consume(track)))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                ended.set()

        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        try:
            await pc.setLocalDescription(await pc.createOffer())
            async with http.post(
                f"{self.base}/whep/{self.stream_id}",
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"WHEP answered {resp.status}")
                answer = await resp.text()
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            stopping = asyncio.ensure_future(stop.wait())
            ending = asyncio.ensure_future(ended.wait())
            await asyncio.wait({stopping, ending}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            ending.cancel()
            await self.update_packets_lost(final=True)
        finally:
            for task in drains:
                task.cancel()
            await pc.close()
            self._pc = None

    def _count_video(self, pts: int | None) -> None:
        self.frames += 1
        if pts is None:
            return
        if self._last_pts is not None:
            gap = (pts - self._last_pts) % 2**32
            if FRAME_TICKS < gap <= MAX_GAP_TICKS:
                self.frames_lost += max(0, round(gap / FRAME_TICKS) - 1)
        self._last_pts = pts

    async def update_packets_lost(self, *, final: bool = False) -> None:
        """``packets_lost`` from the receivers' statistics (RTCP's cumulative count)."""
        if self._pc is None:
            return
        lost = 0
        with contextlib.suppress(Exception):
            report = await self._pc.getStats()
            lost = sum(
                int(getattr(stats, "packetsLost", 0) or 0)
                for stats in report.values()
                if getattr(stats, "type", "") == "inbound-rtp"
            )
        self.packets_lost = self._lost_before + lost
        if final:
            self._lost_before = self.packets_lost


# -- the publisher ----------------------------------------------------------------------


@dataclass
class _Publisher:
    """The libdatachannel publisher process, started again whenever it ends early."""

    node: Path
    url: str
    token: str
    media: Path
    restarts: int = 0
    last_done: dict[str, Any] = field(default_factory=dict)
    library: str = ""

    async def run(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        first = True
        while (left := until - loop.time()) > 1:
            if not first:
                self.restarts += 1
                await asyncio.sleep(RETRY_S)
            first = False
            process = await asyncio.create_subprocess_exec(
                str(self.node), str(NODE_PUBLISHER), "--url", self.url, "--token", self.token,
                "--media", str(self.media), "--seconds", f"{left:.1f}",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            try:
                assert process.stdout is not None
                async for line in process.stdout:
                    with contextlib.suppress(ValueError):
                        event = json.loads(line)
                        if event.get("event") == "done":
                            self.last_done = event
                            self.library = event.get("library", self.library)
                await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()


# -- orchestration ----------------------------------------------------------------------


def _write_clip(path: Path) -> None:
    clip = _encode_clip("h264", 1_000_000)
    audio = encode_opus(CLIP_FRAMES / FPS)[: CLIP_FRAMES * 50 // FPS]
    write_media_file(path, [packet for packet, _ in clip], audio, fps=FPS)


async def _run(seconds: float, viewer_count: int, progress_s: float) -> dict[str, Any]:
    node = install_node_publisher()
    with tempfile.TemporaryDirectory(prefix="livecast-soak-") as tmp:
        media = Path(tmp) / "clip.media"
        await asyncio.to_thread(_write_clip, media)
        server = start_server(Path(tmp), data_dir=Path(tmp) / "data")
        base = server.base
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            stream_id, token = await create_stream(server)
            loop = asyncio.get_running_loop()
            started = loop.time()
            publisher = _Publisher(node, f"{base}/whip/{stream_id}", token, media)
            tasks.append(asyncio.ensure_future(publisher.run(started + seconds + 3)))
            await _until_live(base, stream_id, within=30)
            viewers = [_Viewer(base, stream_id) for _ in range(viewer_count)]
            tasks += [asyncio.ensure_future(v.run(stop)) for v in viewers]
            cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
            frames_in0 = window_in0 = (await media_status(base, stream_id))["video_frames_in"]
            load_max = 0.0
            frames0 = [0] * viewer_count
            rss: list[list[float]] = [[0.0, round(rss_kb(server.pid) / 1024, 1)]]
            deadline = started + seconds
            last = loop.time()
            while (now := loop.time()) < deadline:
                await asyncio.sleep(min(progress_s, deadline - now))
                elapsed, interval, last = loop.time() - started, loop.time() - last, loop.time()
                rss.append([round(elapsed, 1), round(rss_kb(server.pid) / 1024, 1)])
                window = [v.frames - f for v, f in zip(viewers, frames0, strict=True)]
                frames0 = [v.frames for v in viewers]
                total_in = (await media_status(base, stream_id))["video_frames_in"]
                source_window, window_in0 = total_in - window_in0, total_in
                for viewer in viewers:
                    await viewer.update_packets_lost()
                load = os.getloadavg()[0]
                load_max = max(load_max, load)
                progress = {
                    "t": round(elapsed, 1),
                    "rss_mb": rss[-1][1],
                    "source_fps": round(source_window / interval, 1),
                    "fps": [round(n / interval, 1) for n in window],
                    "frames_lost": sum(v.frames_lost for v in viewers),
                    "packets_lost": sum(v.packets_lost for v in viewers),
                    "reconnects": publisher.restarts + sum(v.reconnects for v in viewers),
                    "load_avg_1m": round(load, 2),
                }
                print(json.dumps(progress), file=sys.stderr, flush=True)
            wall = time.monotonic() - wall0
            cores = (cpu_seconds(server.pid) - cpu0) / wall
            status = await media_status(base, stream_id)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        except Exception as exc:
            return server.failure(exc)
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(server.stop)
    fps = [round(v.frames / wall, 2) for v in viewers]
    return {
        "benchmark": "soak",
        "publisher": f"libdatachannel {publisher.library}".strip(),
        "seconds": round(wall, 1),
        "viewers": viewer_count,
        "reconnects": publisher.restarts + sum(v.reconnects for v in viewers),
        "publisher_reconnects": publisher.restarts,
        "viewer_reconnects": sum(v.reconnects for v in viewers),
        "frames_lost": sum(v.frames_lost for v in viewers),
        "frames_lost_per_viewer": [v.frames_lost for v in viewers],
        "packets_lost": sum(v.packets_lost for v in viewers),
        "frames_per_viewer": [v.frames for v in viewers],
        "fps_per_viewer": fps,
        "fps_min": min(fps),
        "audio_frames_per_viewer": [v.audio_frames for v in viewers],
        "source_fps": round((status["video_frames_in"] - frames_in0) / wall, 2),
        "stream_state": status["state"],
        "publisher_delete_status": publisher.last_done.get("delete_status"),
        "rss_mb": rss,
        "rss_growth_mb": round(rss[-1][1] - rss[0][1], 1),
        "server_cores": round(cores, 3),
        # the machine's 1-minute load average, highest at a progress line: losses on a
        # machine busier than its cores say more about the machine than the server
        "load_avg_max": round(load_max, 2),
        "cores": os.cpu_count(),
    }


async def _until_live(base: str, stream_id: str, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (await media_status(base, stream_id))["state"] != "live":
        if loop.time() > deadline:
            raise RuntimeError(f"the publisher was not live within {within:.0f} s")
        await asyncio.sleep(0.2)
