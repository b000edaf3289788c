"""A real browser publishes its camera through WHIP and another page plays it through WHEP."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from livecast.app import create_app
from livecast.appkeys import TOKENS
from livecast.auth import Role
from livecast.config import Settings
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, AiohttpClient, Client, bearer
from tests.ingest.conftest import eventually
from tests.ingest.peers import FixedGopTrack, publish

pytestmark = pytest.mark.browser

ARGS = [
    *CHROMIUM_ARGS,
    # real host candidates instead of mDNS names, for the server's ICE agent
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

# The smallest WHIP publisher and WHEP player a page can be: no library, only the RFCs.
PAGE = """<!doctype html>
<meta charset="utf-8">
<video autoplay muted playsinline></video>
<script>
async function gathered(pc) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => pc.addEventListener("icegatheringstatechange", () => {
    if (pc.iceGatheringState === "complete") resolve();
  }));
}
async function exchange(pc, url, headers) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const resp = await fetch(url, {
    method: "POST",
    headers: {"Content-Type": "application/sdp", ...headers},
    body: pc.localDescription.sdp,
  });
  if (resp.status !== 201) throw new Error(resp.status + " " + await resp.text());
  await pc.setRemoteDescription({type: "answer", sdp: await resp.text()});
  return resp.headers.get("Location");
}
window.publish = async (url, token) => {
  const media = await navigator.mediaDevices.getUserMedia(
    {video: {width: 320, height: 240, frameRate: 30}, audio: true});
  const pc = new RTCPeerConnection();
  for (const track of media.getTracks()) pc.addTransceiver(track, {direction: "sendonly"});
  window.pc = pc;
  return exchange(pc, url, {Authorization: "Bearer " + token});
};
window.play = async (url) => {
  window.playedAt = performance.now();
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", {direction: "recvonly"});
  pc.addTransceiver("audio", {direction: "recvonly"});
  const video = document.querySelector("video");
  pc.ontrack = (event) => {
    if (event.track.kind === "video") {
      video.srcObject = new MediaStream([event.track]);
      video.play();
    }
  };
  window.pc = pc;
  return exchange(pc, url, {});
};
window.decodedFrames = () =>
  document.querySelector("video").getVideoPlaybackQuality().totalVideoFrames;
// per shown frame: (performance.now() it was shown, ms from its last packet to the screen)
window.shown = [];
window.watchFrames = () => {
  const video = document.querySelector("video");
  const each = (now, meta) => {
    const at = meta.presentationTime;
    if (meta.receiveTime) shown.push([at, at - meta.receiveTime]);
    video.requestVideoFrameCallback(each);
  };
  video.requestVideoFrameCallback(each);
};
</script>
"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The ingest tests' settings, but a publisher is closed as quiet only after 5 s: a
    browser's encoder may stall for a moment on a loaded box."""
    webrtc = dataclasses.replace(settings.webrtc, publisher_stale_s=5.0)
    return dataclasses.replace(settings, webrtc=webrtc)


@pytest.fixture
async def page_client(aiohttp_client: AiohttpClient, settings: Settings) -> Client:
    """The app plus a test-only page, served from the same origin."""
    app = create_app(settings)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app.router.add_get("/test/whip-whep.html", page)
    return await aiohttp_client(app)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        await instance.close()


async def test_browser_publishes_and_another_page_plays(page_client: Client, browser: Any) -> None:
    seller = page_client.app[TOKENS].issue(
        sub="seller-b", name="Seller", role=Role.SELLER, ttl_s=600
    )
    resp = await page_client.post(
        "/api/streams", json={"title": "Browser live"}, headers=bearer(seller)
    )
    stream_id = (await resp.json())["id"]
    base = str(page_client.make_url("/"))

    studio = await browser.new_page()
    await studio.goto(f"{base}test/whip-whep.html")
    location = await studio.evaluate(
        "([url, token]) => publish(url, token)", [f"/whip/{stream_id}", seller]
    )
    assert location.startswith(f"/whip/{stream_id}/")

    watch = await browser.new_page()
    await watch.goto(f"{base}test/whip-whep.html")
    await watch.evaluate("(url) => play(url)", f"/whep/{stream_id}")

    seen = 0
    for _ in range(200):
        seen = await watch.evaluate("decodedFrames()")
        if seen >= 10:
            break
        await asyncio.sleep(0.1)
    assert seen >= 10, "the player decoded no video"
    later = seen
    for _ in range(100):
        later = await watch.evaluate("decodedFrames()")
        if later > seen + 10:
            break
        await asyncio.sleep(0.1)
    assert later > seen + 10, "decoded frames stopped increasing"
    status = await (await page_client.get(f"/api/streams/{stream_id}/media")).json()
    assert status["state"] == "live"
    assert status["viewers"] == 1
    assert status["video_codec"] in ("h264", "vp8")
    assert status["audio"] is True
    await watch.close()
    await studio.close()


async def _watch_page(page_client: Client, browser: Any, stream_id: str) -> Any:
    base = str(page_client.make_url("/"))
    watch = await browser.new_page()
    await watch.goto(f"{base}test/whip-whep.html")
    await watch.evaluate("(url) => play(url)", f"/whep/{stream_id}")
    await watch.evaluate("watchFrames()")
    return watch


async def _new_stream(page_client: Client) -> tuple[str, str]:
    seller = page_client.app[TOKENS].issue(
        sub="seller-b", name="Seller", role=Role.SELLER, ttl_s=600
    )
    resp = await page_client.post("/api/streams", json={"title": "Live"}, headers=bearer(seller))
    return (await resp.json())["id"], seller


async def test_a_page_watching_before_a_vp8_publisher_plays_its_video(
    page_client: Client, browser: Any
) -> None:
    stream_id, seller = await _new_stream(page_client)
    watch = await _watch_page(page_client, browser, stream_id)
    await asyncio.sleep(1.0)  # connected, nothing to play yet
    publisher = await publish(page_client, stream_id, seller, codec="video/VP8", audio=False)
    try:
        seen = 0
        for _ in range(100):
            seen = await watch.evaluate("decodedFrames()")
            if seen >= 30:
                break
            await asyncio.sleep(0.1)
        assert seen >= 30, "the page decoded no VP8 video"
        status = await (await page_client.get(f"/api/streams/{stream_id}/media")).json()
        assert (status["video_codec"], status["viewers"]) == ("vp8", 1)
    finally:
        await watch.close()
        await publisher.close()


async def test_a_page_joining_mid_gop_plays_at_once_and_live(
    page_client: Client, browser: Any
) -> None:
    """The encoder sends a keyframe every 4 s only; the page joins 1.5 s into a GOP."""
    stream_id, seller = await _new_stream(page_client)
    track = FixedGopTrack(gop=120, frames=450)
    publisher = await publish(page_client, stream_id, seller, video=track, audio=False)
    try:
        await eventually(lambda: track.counter >= 45, within=10)
        watch = await _watch_page(page_client, browser, stream_id)
        try:
            shown: list[list[float]] = []
            for _ in range(100):
                shown = await watch.evaluate("shown")
                if shown and shown[-1][0] - shown[0][0] > 3000:
                    break
                await asyncio.sleep(0.1)
            assert shown, "the page showed no frame"
            # the next keyframe is 2.5 s away: the first frame comes from the GOP cache
            first_frame_ms = shown[0][0] - await watch.evaluate("playedAt")
            assert first_frame_ms < 1200, first_frame_ms
            # frames 1-3 s after the first one shown: back to live, not a replayed GOP
            settled = [delay for at, delay in shown if 1000 < at - shown[0][0] < 3000]
            assert settled
            assert sorted(settled)[len(settled) // 2] < 150, settled
        finally:
            await watch.close()
    finally:
        await publisher.close()
