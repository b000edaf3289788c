"""The watch page on LL-HLS in Chromium: with ``?hls=1``, and by itself when the node
refuses WebRTC viewers (``webrtc.max_viewers = 0``). A real aiortc publisher sends H.264 and
Opus over WHIP; the page plays the origin's LL-HLS through the vendored hls.js (Debian's
Chromium has Media Source Extensions for H.264 + AAC, so frames really decode), says so,
and chat and the viewer count work as on WebRTC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from playwright.async_api import Page, Request, expect

from livecast.auth import Role
from livecast.config import Settings
from tests.conftest import make_settings
from tests.ingest.peers import CounterTrack, new_pc
from tests.web.conftest import (
    PAGE_ARGS,
    PHONE,
    LiveServer,
    NewContext,
    chromium,
    screenshot,
    serving,
)

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

HLS_LABEL = "Live (HLS, a few seconds behind)"


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, redis_url: str, key_prefix: str, tmp_path: Path
) -> Settings:
    overrides: dict[str, Any] = {
        "hls__part_duration_s": 0.3,
        "hls__segment_duration_s": 1.0,
        **getattr(request, "param", {}),
    }
    return make_settings(redis_url, key_prefix, tmp_path, **overrides)


@pytest_asyncio.fixture(loop_scope="module")
async def live_stream(server: LiveServer) -> AsyncIterator[str]:
    async with _publishing(server, public=True) as stream_id:
        yield stream_id


@asynccontextmanager
async def _publishing(server: LiveServer, *, public: bool) -> AsyncIterator[str]:
    """A stream made live by an aiortc publisher (H.264 counter pictures and Opus)."""
    seller = server.token(Role.SELLER, sub="hls-seller", name="Ana's Sneakers")
    stream = await server.create_stream(seller, "Autumn sneaker drop", public=public)
    stream_id: str = stream["id"]
    pc = new_pc()
    pc.addTransceiver(CounterTrack(0), direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with server.http.post(
        f"{server.base_url}/whip/{stream_id}",
        data=pc.localDescription.sdp,
        headers={"Authorization": f"Bearer {seller}", "Content-Type": "application/sdp"},
    ) as resp:
        assert resp.status == 201, await resp.text()
        answer = await resp.text()
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    try:
        yield stream_id
    finally:
        await pc.close()


async def _watch(server: LiveServer, new_context: NewContext, url: str) -> tuple[Page, list[str]]:
    """The page at ``url`` with the URLs it requested so far (and from now on)."""
    page = await (await new_context(PHONE)).new_page()
    requested: list[str] = []

    def note(request: Request) -> None:
        requested.append(f"{request.method} {request.url}")

    page.on("request", note)
    await page.goto(url)
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    return page, requested


async def _plays_hls(page: Page, requested: list[str], stream_id: str) -> None:
    await expect(page.locator("body[data-mode=hls]")).to_have_count(1, timeout=15_000)
    await expect(page.locator("#play-mode")).to_have_text(HLS_LABEL)
    await expect(page.locator("body[data-video=playing]")).to_have_count(1, timeout=20_000)
    await page.wait_for_function(
        "() => document.querySelector('#video').getVideoPlaybackQuality().totalVideoFrames > 10",
        timeout=20_000,
    )
    await expect(page.locator("#stage-message")).to_be_hidden()
    hls = [url for url in requested if f"/hls/{stream_id}/" in url]
    assert hls, requested
    # the multivariant playlist, then blocking reloads of both renditions' media playlists
    assert any(url.endswith("/index.m3u8") for url in hls), hls
    for rendition in ("video", "audio"):
        assert any(f"/{rendition}-" in url and ".m3u8?_HLS_msn=" in url for url in hls), hls
    assert any(url.endswith(".m4s") for url in hls), hls  # parts or segments


async def test_hls_query_plays_ll_hls_and_chat_and_viewer_count_work(
    server: LiveServer, new_context: NewContext, live_stream: str
) -> None:
    """``?hls=1``: hls.js plays the LL-HLS playlist (blocking reloads, parts), the page says
    it is a few seconds behind, the viewer is counted through its live-events socket as any
    other, and its chat message reaches a WebRTC viewer."""
    token = server.token(Role.VIEWER, name="Jon")
    hls_page, requested = await _watch(
        server, new_context, f"{server.base_url}/watch/{live_stream}?hls=1#token={token}"
    )
    await _plays_hls(hls_page, requested, live_stream)
    assert not [url for url in requested if url.startswith("POST") and "/whep/" in url]
    await screenshot(hls_page, "watch-hls")

    rtc_page, _ = await _watch(server, new_context, f"{server.base_url}/watch/{live_stream}")
    await expect(rtc_page.locator("body[data-mode=webrtc]")).to_have_count(1)
    await expect(rtc_page.locator("#play-mode")).to_have_text("Live (real-time)")
    for page in (hls_page, rtc_page):
        await expect(page.locator("#viewer-count .n")).to_have_text("2", timeout=15_000)

    await hls_page.fill("#chat-input", "watching on HLS")
    await hls_page.press("#chat-input", "Enter")
    for page in (hls_page, rtc_page):
        message = page.locator("#chat .chat-msg", has_text="watching on HLS")
        await expect(message.locator(".chat-name")).to_have_text("Jon")


@pytest.mark.parametrize("settings", [{"webrtc__max_viewers": 0}], indirect=True)
async def test_page_falls_back_to_hls_when_the_node_refuses_webrtc(
    server: LiveServer, new_context: NewContext, live_stream: str
) -> None:
    """A node that takes no WebRTC viewers answers WHEP with 429 ``stream_full``; the page
    switches to LL-HLS by itself and plays."""
    page, requested = await _watch(server, new_context, f"{server.base_url}/watch/{live_stream}")
    await _plays_hls(page, requested, live_stream)
    assert any(url.startswith("POST") and f"/whep/{live_stream}" in url for url in requested)


async def test_page_falls_back_to_hls_when_webrtc_cannot_connect(
    server: LiveServer, live_stream: str
) -> None:
    """A browser whose WebRTC may not use UDP (as behind a firewall that blocks it) gets a
    WHEP answer but no ICE connection; a few seconds later the page plays LL-HLS."""
    no_udp = [*PAGE_ARGS, "--webrtc-ip-handling-policy=disable_non_proxied_udp"]
    async with chromium(no_udp) as browser:
        context = await browser.new_context(**PHONE)
        page = await context.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(f"{request.method} {request.url}"))
        await page.goto(f"{server.base_url}/watch/{live_stream}")
        await expect(page.locator("body[data-ready=true]")).to_have_count(1)
        await _plays_hls(page, requested, live_stream)
        whep = [url for url in requested if url.startswith("POST") and "/whep/" in url]
        assert len(whep) == 1, whep
        await context.close()


async def test_a_private_stream_plays_over_hls_through_a_signed_url(
    server: LiveServer, new_context: NewContext
) -> None:
    """On a private stream the page asks for a signed playback URL (which a CDN can cache,
    and the browser's own HLS player could use) and plays through it, with no token."""
    async with _publishing(server, public=False) as stream_id:
        member = server.token(Role.VIEWER, name="Member", streams={stream_id})
        page_requests: list[Request] = []
        page, requested = await _watch(
            server, new_context, f"{server.base_url}/watch/{stream_id}?hls=1#token={member}"
        )
        page.on("request", lambda request: page_requests.append(request))
        await _plays_hls(page, requested, stream_id)
        media = [r for r in page_requests if f"/hls/{stream_id}/" in r.url]
        assert media
        assert all(f"/hls/{stream_id}/signed/" in r.url for r in media), media
        assert not [r.url for r in media if "authorization" in await r.all_headers()]
        assert any(url.endswith(f"/api/streams/{stream_id}/playback") for url in requested)


async def test_the_watch_page_on_another_node_plays_over_hls(
    server: LiveServer, new_context: NewContext, live_stream: str, settings: Settings
) -> None:
    """A viewer sent to a node that does not hold the stream's publisher plays the same
    LL-HLS: that node forwards every request to the stream's origin."""
    async with serving(settings) as other:
        page, requested = await _watch(
            other, new_context, f"{other.base_url}/watch/{live_stream}?hls=1"
        )
        await _plays_hls(page, requested, live_stream)
        assert all(
            url.split(" ", 1)[1].startswith(other.base_url)
            for url in requested
            if f"/hls/{live_stream}/" in url
        )
        async with other.http.get(f"{other.base_url}/metrics") as resp:
            metrics = await resp.text()
        assert 'livecast_hls_forwarded_requests_total{outcome="answered"} 0.0' not in metrics
        assert 'livecast_hls_forwarded_requests_total{outcome="answered"}' in metrics
