"""``livecast bench timeline``: how close to the picture a pinned card shows on LL-HLS.

Starts ``livecast serve`` and the glass bench's WHIP publisher (:mod:`livecast.bench.glass`:
640x360 H.264 that paints the wall clock in milliseconds into each picture), opens the
real watch page in headless Chromium on LL-HLS (``/watch/{id}?hls=1``) and reads the clock
back from every picture it presents. The host then pins a product and clears it again,
``--pins`` times, ``--gap`` seconds apart. Each time the card appears or goes, the page
notes the time painted into the picture on screen then and into the next picture shown;
the event's media time comes from the stream's timeline (``GET /api/streams/{id}/timeline``).
One JSON line is printed:

``samples``                                 card changes measured (a pin and an unpin each)
``card_offset_ms_p50/p95/min/max``          0 when the card changed between the last picture
                                            before the media time and the first at or after
                                            it; else the nearer picture's painted time minus
                                            the media time (negative: the card came early)
``card_offset_abs_ms_p95``                  the same, as a distance
``picture_before_ms_p50``                   the picture on screen as the card changed, minus
                                            the media time (a frame's duration or less below 0
                                            for a perfect card; a frozen picture, far below)
``card_after_action_ms_p50``                how long after the host acted the card changed
                                            (about the player's delay behind live)
``part_duration_s``, ``segment_duration_s``, ``load_average_1m``

The media time is the Redis server's clock when the host acted; the picture's program date
time is its first frame's arrival at the packaging node, so a perfect card reads the
publisher's capture-to-arrival delay (encoding, network, jitter buffer) as a small
negative offset.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from livecast.bench._server import create_stream, percentile, start_server
from livecast.config import HlsSettings

__all__ = ["CARD_JS", "main", "pin_and_watch"]

_MODULUS: Final = 1 << 24  # the painted clock's range (livecast.bench._clock)
_FIRST_PICTURE_S: Final = 45.0

# Installed on the watch page after the clock reader (livecast.bench._clock.READER_JS):
# each time the product card shows or hides, the time painted into the picture on screen
# then (`before`) and into the next picture shown (`after`).
CARD_JS: Final = """
(card) => {
  const glass = window.__glass;
  const video = document.querySelector('#video');
  const cards = { changes: [], visible: !card.hidden, pending: null };
  new MutationObserver(() => {
    const visible = !card.hidden;
    if (visible === cards.visible) return;
    cards.visible = visible;
    cards.pending = { visible, before: glass.last, after: null, at: Date.now() };
    cards.changes.push(cards.pending);
  }).observe(card, { attributes: true, attributeFilter: ['hidden'] });
  const onFrame = () => {
    const pending = cards.pending;
    if (pending && glass.last !== pending.before) {
      pending.after = glass.last;
      cards.pending = null;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  window.__cards = cards;
}
"""


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="livecast bench timeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--pins", type=int, default=10, help="pins (each also unpinned)")
    parser.add_argument("--gap", type=float, default=1.5, help="seconds between host actions")
    parser.add_argument("--warmup", type=float, default=5.0, help="after the first picture")
    parser.add_argument("--part-duration", type=float, help="hls.part_duration_s")
    parser.add_argument("--segment-duration", type=float, help="hls.segment_duration_s")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the browser binary")
    args = parser.parse_args(list(argv))
    if not 1 <= args.pins <= 200 or not 0.5 <= args.gap <= 30:
        parser.error("--pins must be 1-200 and --gap 0.5-30")
    if not Path(args.chromium).exists():
        parser.error(f"no browser at {args.chromium} (apt-get install chromium)")
    result = _run(args)
    print(json.dumps(result), flush=True)
    return 0 if result.get("error") is None else 1


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from livecast.bench._processes import join_all
    from livecast.bench.glass import _wait_playlist, publisher_main

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
                args=(server.base, stream_id, token, 1_000_000, stop, results),
                daemon=True,
            )
            publisher.start()
            kind, payload = results.get(timeout=120)
            if kind != "publisher_ready":
                raise RuntimeError(f"publisher failed: {payload}")
            asyncio.run(_wait_playlist(f"{server.base}/hls/{stream_id}/index.m3u8"))
            samples = asyncio.run(_watch(server.base, stream_id, token, args))
        except Exception as exc:
            return server.failure(exc)
        finally:
            stop.set()
            join_all([publisher])
            server.stop()
    offsets = sorted(s["offset_ms"] for s in samples)
    distances = sorted(abs(o) for o in offsets)
    after = sorted(s["after_action_ms"] for s in samples)
    return {
        "benchmark": "timeline",
        "samples": len(offsets),
        "card_offset_ms_p50": round(percentile(offsets, 0.50), 1),
        "card_offset_ms_p95": round(percentile(offsets, 0.95), 1),
        "card_offset_ms_min": offsets[0] if offsets else None,
        "card_offset_ms_max": offsets[-1] if offsets else None,
        "card_offset_abs_ms_p95": round(percentile(distances, 0.95), 1),
        "picture_before_ms_p50": round(percentile(sorted(s["before_ms"] for s in samples), 0.5), 1),
        "card_after_action_ms_p50": round(percentile(after, 0.50), 1),
        "part_duration_s": part_s,
        "segment_duration_s": segment_s,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


async def _watch(
    base: str, stream_id: str, token: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    import aiohttp
    from playwright.async_api import async_playwright

    from livecast.bench.glass import _CHROMIUM_ARGS

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=args.chromium, args=_CHROMIUM_ARGS
        )
        try:
            page = await (await browser.new_context()).new_page()
            await page.goto(f"{base}/watch/{stream_id}?hls=1")
            await page.wait_for_function("() => document.body.dataset.mode === 'hls'")
            async with aiohttp.ClientSession() as http:
                return await pin_and_watch(
                    page,
                    http,
                    base,
                    stream_id,
                    token,
                    pins=args.pins,
                    gap_s=args.gap,
                    warmup_s=args.warmup,
                )
        finally:
            with contextlib.suppress(Exception):
                await browser.close()


async def pin_and_watch(
    page: Any,
    http: Any,
    base: str,
    stream_id: str,
    token: str,
    *,
    pins: int,
    gap_s: float,
    warmup_s: float = 0.0,
) -> list[dict[str, Any]]:
    """On a watch page playing the clock publisher's stream: pin a product and clear it
    ``pins`` times as the host (``token``), waiting for the card each time; each card
    change with the painted time on screen then, the event's media time and their offset.
    """
    from livecast.bench._clock import READER_JS

    headers = {"Authorization": f"Bearer {token}"}
    product = {
        "title": "Timed card",
        "price": {"amount_minor": 1200, "currency": "EUR"},
        "stock": 1000,
    }
    async with http.put(f"{base}/api/products/CARD-1", json=product, headers=headers) as resp:
        if resp.status not in (200, 201):
            raise RuntimeError(f"product: {resp.status} {await resp.text()}")
    video = page.locator("#video")
    await video.evaluate(READER_JS)
    await page.wait_for_function("() => window.__glass.last >= 0", timeout=_FIRST_PICTURE_S * 1000)
    await asyncio.sleep(warmup_s)
    await page.locator("#product-card").evaluate(CARD_JS)
    acted: list[float] = []
    for n in range(2 * pins):
        pinning = n % 2 == 0
        method, path = ("POST", "pin") if pinning else ("DELETE", "pin")
        acted.append(await page.evaluate("() => Date.now()"))
        async with http.request(
            method,
            f"{base}/api/streams/{stream_id}/{path}",
            json={"sku": "CARD-1"} if pinning else None,
            headers=headers,
        ) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{method} pin: {resp.status} {await resp.text()}")
        await page.wait_for_function(
            "(n) => window.__cards.changes.length > n && window.__cards.changes[n].after !== null",
            arg=n,
            timeout=30_000,
        )
        await asyncio.sleep(gap_s)
    changes = await page.evaluate("() => window.__cards.changes")
    async with http.get(f"{base}/api/streams/{stream_id}/timeline") as resp:
        entries = (await resp.json())["entries"]
    moments = [e for e in entries if e["kind"] in ("pin.set", "pin.cleared")][-2 * pins :]
    samples = []
    for change, moment, at in zip(changes, moments, acted, strict=True):
        if change["visible"] != (moment["kind"] == "pin.set"):
            raise RuntimeError(f"the card changed out of order: {change} for {moment}")
        media = moment["media_time_ms"]
        if media is None:
            raise RuntimeError("the pin has no media time: the stream has no media")
        before, after = _signed(change["before"] - media), _signed(change["after"] - media)
        # 0: the card changed between the last picture before the moment and the first at
        # or after it; otherwise how far the nearer of the two pictures was from it
        offset = 0 if before <= 0 <= after else after if after < 0 else before
        samples.append(
            {
                "kind": moment["kind"],
                "media_time_ms": media,
                "before_ms": before,
                "after_ms": after,
                "offset_ms": offset,
                "after_action_ms": change["at"] - at,
            }
        )
    return samples


def _signed(difference: int) -> int:
    """A difference of painted times (modulo 2**24 ms) as a signed number of ms."""
    difference %= _MODULUS
    return difference - _MODULUS if difference > _MODULUS // 2 else difference
