"""``livecast bench glass``: glass-to-glass latency in Chromium, LL-HLS and WebRTC side by side.

Starts ``livecast serve`` in its own process and a WHIP publisher process (aiortc on
loopback) whose 640x360 30 fps H.264, encoded live as a seller's encoder does (libx264
baseline, zero latency, a keyframe every 2 s), shows the wall clock in milliseconds as
large blocks (:mod:`livecast.bench._clock`), with Opus audio (silence). Headless Chromium (the
system's, ``--chromium``; never a downloaded one) opens the real watch page twice at
once: ``/watch/{id}?hls=1`` (LL-HLS through the vendored hls.js) and ``/watch/{id}``
(WebRTC over WHEP). On every frame each page presents, it reads the clock back from the
``<video>`` through a canvas and subtracts it from its own clock at display time (one
machine, one clock). After each page has shown a frame and ``--warmup`` seconds more,
samples are kept for ``--seconds``. One JSON line is printed:

``{mode}_samples``                      distinct pictures read in the window
``{mode}_latency_ms_p50/p95/max``       wall clock at display minus the painted time
``{mode}_rejected``                     reads whose check failed (a blended picture)
``part_target_s``, ``part_hold_back_s`` what the playlist says (``EXT-X-PART-INF``,
``target_duration_s``                   ``EXT-X-SERVER-CONTROL``, ``EXT-X-TARGETDURATION``)
``part_duration_s``, ``segment_duration_s`` the packager's settings for the run
``encoder_bitrate_kbps``                the publisher's encoder target (``--bitrate``)
``read_by``                             ``requestVideoFrameCallback`` (or animation frames)
``load_average_1m``                     the machine's, at the end: latency needs CPU on time

``--part-duration`` and ``--segment-duration`` set ``hls.part_duration_s`` and
``hls.segment_duration_s`` for the run; ``--modes hls`` or ``--modes webrtc`` measures one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from livecast.bench._processes import join_all
from livecast.bench._server import Server, create_stream, percentile, start_server, whip_publish
from livecast.config import HlsSettings

__all__ = ["main"]

_MODES = ("hls", "webrtc")
_CHROMIUM = "/usr/bin/chromium"
_CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
_FIRST_PICTURE_S = 45.0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="livecast bench glass", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window")
    parser.add_argument("--warmup", type=float, default=10.0, help="after the first picture")
    parser.add_argument("--modes", default="hls,webrtc", help="hls, webrtc or both")
    parser.add_argument("--part-duration", type=float, help="hls.part_duration_s")
    parser.add_argument("--segment-duration", type=float, help="hls.segment_duration_s")
    parser.add_argument("--bitrate", type=int, default=1_000_000, help="publisher, bit/s")
    parser.add_argument("--chromium", default=_CHROMIUM, help="the browser binary")
    args = parser.parse_args(list(argv))
    modes = tuple(mode for mode in _MODES if mode in args.modes.split(","))
    if not modes or set(args.modes.split(",")) - set(_MODES):
        parser.error("--modes is hls, webrtc or hls,webrtc")
    if not 1 <= args.seconds <= 600 or not 0 <= args.warmup <= 120:
        parser.error("--seconds must be 1-600 and --warmup 0-120")
    if not Path(args.chromium).exists():
        parser.error(f"no browser at {args.chromium} (apt-get install chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        parser.error("the glass bench drives Chromium through Playwright (the test extra)")
    result = _run(args, modes)
    print(json.dumps(result), flush=True)
    return 0 if result.get("error") is None else 1


def _run(args: argparse.Namespace, modes: tuple[str, ...]) -> dict[str, Any]:
    defaults = HlsSettings()
    part_s = args.part_duration or defaults.part_duration_s
    segment_s = args.segment_duration or defaults.segment_duration_s
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="livecast-bench-") as tmp:
        server = start_server(
            Path(tmp),
            env={
                "LIVECAST_HLS_PART_DURATION_S": str(part_s),
                "LIVECAST_HLS_SEGMENT_DURATION_S": str(segment_s),
            },
        )
        publisher: Any = None
        stop = ctx.Event()
        try:
            stream_id, token = asyncio.run(create_stream(server))
            results: Any = ctx.Queue()
            publisher = ctx.Process(
                target=publisher_main,
                args=(server.base, stream_id, token, args.bitrate, stop, results),
                daemon=True,
            )
            publisher.start()
            kind, payload = results.get(timeout=120)
            if kind != "publisher_ready":
                raise RuntimeError(f"publisher failed: {payload}")
            playlist = asyncio.run(_wait_playlist(f"{server.base}/hls/{stream_id}/index.m3u8"))
            measured = asyncio.run(_watch(server, stream_id, modes, args))
        except Exception as exc:
            return server.failure(exc)
        finally:
            stop.set()
            join_all([publisher])
            server.stop()
    result: dict[str, Any] = {
        "benchmark": "glass",
        "seconds": args.seconds,
        "read_by": measured.pop("read_by"),
    }
    for mode in modes:
        latencies = sorted(measured[mode]["latencies"])
        result[f"{mode}_samples"] = len(latencies)
        result[f"{mode}_latency_ms_p50"] = round(percentile(latencies, 0.50), 1)
        result[f"{mode}_latency_ms_p95"] = round(percentile(latencies, 0.95), 1)
        result[f"{mode}_latency_ms_max"] = round(latencies[-1], 1) if latencies else None
        result[f"{mode}_rejected"] = measured[mode]["rejected"]
    result.update(
        {
            "part_duration_s": part_s,
            "segment_duration_s": segment_s,
            "part_target_s": _attribute(playlist, "PART-TARGET"),
            "part_hold_back_s": _attribute(playlist, "PART-HOLD-BACK"),
            "target_duration_s": _attribute(playlist, "#EXT-X-TARGETDURATION:"),
            "encoder_bitrate_kbps": round(args.bitrate / 1000),
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
    )
    return result


def _attribute(playlist: str, name: str) -> float | None:
    match = re.search(rf"{re.escape(name)}=?([0-9.]+)", playlist)
    return float(match[1]) if match else None


async def _wait_playlist(url: str) -> str:
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
                        return text
            await asyncio.sleep(0.1)
    raise RuntimeError("no HLS playlist with a complete segment after 30 s")


async def _watch(
    server: Server, stream_id: str, modes: tuple[str, ...], args: argparse.Namespace
) -> dict[str, Any]:
    """Each mode's latencies (ms) and rejected reads over the window, read in Chromium."""
    from playwright.async_api import async_playwright

    from livecast.bench._clock import READER_JS

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=args.chromium, args=_CHROMIUM_ARGS
        )
        try:
            pages = {}
            for mode in modes:
                context = await browser.new_context(viewport={"width": 1280, "height": 800})
                page = await context.new_page()
                query = "?hls=1" if mode == "hls" else ""
                await page.goto(f"{server.base}/watch/{stream_id}{query}")
                await page.wait_for_function(
                    "(mode) => document.body.dataset.mode === mode", arg=mode
                )
                pages[mode] = page
            read_by = ""
            for page in pages.values():
                read_by = await page.locator("#video").evaluate(READER_JS)
            for mode, page in pages.items():
                try:
                    await page.wait_for_function(
                        "() => window.__glass.latencies.length > 0", timeout=_FIRST_PICTURE_S * 1000
                    )
                except Exception as exc:
                    state = await page.evaluate(
                        "() => ({ video: document.body.dataset.video, ...window.__glass.report() })"
                    )
                    raise RuntimeError(f"{mode}: no picture read ({state})") from exc
            await asyncio.sleep(args.warmup)
            for page in pages.values():
                await page.evaluate("() => window.__glass.reset()")
            await asyncio.sleep(args.seconds)
            measured: dict[str, Any] = {"read_by": read_by}
            for mode, page in pages.items():
                measured[mode] = await page.evaluate("() => window.__glass.report()")
        finally:
            with contextlib.suppress(Exception):
                await browser.close()
    return measured


# -- the publisher (its own process) ------------------------------------------------------


def publisher_main(
    base: str, stream_id: str, token: str, bitrate: int, stop: Any, results: Any
) -> None:
    try:
        from livecast.bench._relay_peers import _run_in_loop

        _run_in_loop(_publish(base, stream_id, token, bitrate, stop, results))
    except Exception as exc:
        results.put(("error", f"publisher: {type(exc).__name__}: {exc}"))


async def _publish(
    base: str, stream_id: str, token: str, bitrate: int, stop: Any, results: Any
) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
    from aiortc.mediastreams import AudioStreamTrack

    from livecast.bench._clock import ClockTrack
    from livecast.ingest._aiortc import forward_keyframe_requests

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = ClockTrack(bitrate)
    transceiver = pc.addTransceiver(video, direction="sendonly")
    forward_keyframe_requests(transceiver.sender, video.request_keyframe)
    transceiver.setCodecPreferences(
        [
            codec
            for codec in RTCRtpSender.getCapabilities("video").codecs
            if codec.mimeType.lower() in ("video/h264", "video/rtx")
        ]
    )
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await whip_publish(pc, base, stream_id, token)
    results.put(("publisher_ready", {}))
    await asyncio.to_thread(stop.wait)
    await pc.close()
