"""A shoppable replay in Chromium: a real aiortc publisher goes live over WHIP (H.264 and
Opus), the host features a product and runs a deal on another, the stream ends; the
directory lists the replay with its poster, and the watch page plays it as VOD through
hls.js, with the product timeline beside it. A tap on the deal's product seeks to it, the
"shop this moment" card follows, and an add-to-cart and checkout from it are attributed to
the stream as replay."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from playwright.async_api import expect

from livecast.auth import Role
from livecast.config import Settings
from livecast.replay.keys import REPLAYS
from tests.conftest import make_settings
from tests.ingest.conftest import eventually
from tests.ingest.peers import CounterTrack, new_pc
from tests.web.conftest import PHONE, LiveServer, NewContext, chromium, screenshot, serving

__all__ = ["chromium", "serving"]

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(
        redis_url,
        key_prefix,
        tmp_path,
        hls__part_duration_s=0.3,
        hls__segment_duration_s=1.0,
    )


async def _product(server: LiveServer, seller: str, sku: str, title: str, price: int) -> None:
    body = {"title": title, "price": {"amount_minor": price, "currency": "EUR"}, "stock": 5}
    async with server.http.put(
        f"{server.base_url}/api/products/{sku}",
        json=body,
        headers={"Authorization": f"Bearer {seller}"},
    ) as resp:
        assert resp.status in (200, 201), await resp.text()


async def test_a_replay_plays_with_its_timeline_and_sells_as_replay(
    server: LiveServer, new_context: NewContext
) -> None:
    seller = server.token(Role.SELLER, sub="replay-seller", name="Ana's Knits")
    await _product(server, seller, "HAT-1", "Bobble hat", 1500)
    await _product(server, seller, "GLOVES-1", "Warm gloves", 2200)
    stream = await server.create_stream(seller, "Winter knits", featured_skus=["HAT-1"])
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

        async def recording(seconds: float) -> bool:
            record = await server.app[REPLAYS].get(stream_id)
            return record is not None and record.duration_s >= seconds

        await eventually(lambda: recording(1.5), within=20)
        pin = {"sku": "HAT-1"}
        await server.call("POST", f"/api/streams/{stream_id}/pin", seller, pin)
        await asyncio.sleep(0.5)
        deal = {"sku": "GLOVES-1", "price": {"amount_minor": 1800, "currency": "EUR"},
                "quantity": 3, "duration_s": 30}  # fmt: skip
        await server.call("POST", f"/api/streams/{stream_id}/deals", seller, deal, status=201)
        await asyncio.sleep(2.5)
    finally:
        await server.call("POST", f"/api/streams/{stream_id}/end", seller)
        await pc.close()

    async def listed() -> bool:
        replays = await server.call("GET", "/api/replays")
        return [r["stream_id"] for r in replays["replays"]] == [stream_id]

    await eventually(listed, within=15)
    home = await (await new_context(PHONE)).new_page()
    await home.goto(server.base_url + "/")
    card = home.locator(f'#recent .stream-card[data-replay="{stream_id}"]')
    await expect(card.locator(".badge")).to_have_text("REPLAY")
    await expect(card.locator(".duration")).to_have_text(re.compile(r"0:0[3-9]"))
    assert "poster.jpg" in (await card.locator(".thumb").get_attribute("style") or "")

    buyer = server.token(Role.VIEWER, sub="replay-buyer", name="Jon")
    page = await (await new_context(PHONE)).new_page()
    await page.goto(f"{server.base_url}/watch/{stream_id}#token={buyer}")
    await expect(page.locator("body[data-mode=replay]")).to_have_count(1, timeout=10_000)
    await expect(page.locator("body[data-replay=playing]")).to_have_count(1, timeout=20_000)
    await page.wait_for_function(
        "() => document.querySelector('#video').getVideoPlaybackQuality().totalVideoFrames > 10",
        timeout=20_000,
    )
    await expect(page.locator("#stage-message")).to_be_hidden()
    await expect(page.locator("#chat-input")).to_be_disabled()
    moments = page.locator("#replay-timeline .replay-moment")
    await expect(moments).to_have_count(3)
    await expect(moments.nth(0)).to_have_attribute("data-sku", "HAT-1")
    await expect(moments.nth(1)).to_have_attribute("data-kind", "pinned")
    await expect(moments.nth(1)).to_have_attribute("data-sku", "HAT-1")
    await expect(moments.nth(2)).to_have_attribute("data-sku", "GLOVES-1")
    pinned_at = float(await moments.nth(1).get_attribute("data-at") or "0")
    at = float(await moments.nth(2).get_attribute("data-at") or "0")
    assert 1.0 <= pinned_at < at <= 4.0, (pinned_at, at)

    await page.evaluate("document.querySelector('#video').pause()")
    # the pin's entry seeks to the moment of the video the host pinned it at
    await moments.nth(1).locator("button").click()
    await page.wait_for_function(
        f"() => Math.abs(document.querySelector('#video').currentTime - {pinned_at}) < 0.6",
        timeout=10_000,
    )
    await expect(moments.nth(1)).to_have_class("replay-moment active")
    await page.evaluate("document.querySelector('#video').pause()")
    await moments.nth(2).locator("button").click()
    await page.wait_for_function(
        f"() => Math.abs(document.querySelector('#video').currentTime - {at}) < 0.6",
        timeout=10_000,
    )
    await expect(moments.nth(2)).to_have_class("replay-moment active")
    shop = page.locator("#replay-card")
    await expect(shop.locator(".product-title")).to_have_text("Warm gloves")
    await expect(shop.locator(".product-price")).to_contain_text("22")  # the price now
    await screenshot(page, "watch-replay")
    await shop.locator(".add-to-cart").click()
    await expect(page.locator("#cart-drawer")).to_be_visible()
    await expect(page.locator("#cart-lines .cart-line")).to_have_count(1)
    await page.locator("#checkout").click()
    await expect(page.locator("#order-done")).to_be_visible(timeout=10_000)
    # its video receipt plays: the replay exists
    await expect(page.locator("#order-receipt a")).to_have_text("Watch the moment you bought it")

    orders = await server.call("GET", "/api/orders", buyer)
    [order] = orders["orders"]
    receipt = await page.locator("#order-receipt a").get_attribute("href")
    assert receipt == f"/watch/{stream_id}?receipt={order['id']}"
    assert [(line["sku"], line["source"]) for line in order["lines"]] == [("GLOVES-1", "replay")]
    assert order["total"] == {"amount_minor": 2200, "currency": "EUR"}
    stats = await server.call("GET", f"/api/streams/{stream_id}/stats", seller)
    by_source = {s["source"]: s for s in stats["by_source"]}
    assert by_source["replay"]["orders"] == 1
    assert by_source["live"]["orders"] == 0

    # The receipt plays in the page, with what was bought; the directory lists the order.
    await page.locator("#order-receipt a").click()
    await expect(page.locator(f'body[data-receipt="{order["id"]}"]')).to_have_count(
        1, timeout=10_000
    )
    await page.wait_for_function(
        "() => document.querySelector('#video').getVideoPlaybackQuality().totalVideoFrames > 10",
        timeout=20_000,
    )
    await expect(page.locator("#play-mode")).to_have_text("Your video receipt")
    await expect(page.locator("#replay-card .replay-card-label")).to_have_text("You bought")
    await expect(page.locator("#replay-card .product-title")).to_have_text("Warm gloves")
    await screenshot(page, "watch-receipt")
    home = await page.context.new_page()
    await home.goto(f"{server.base_url}/#token={buyer}")
    item = home.locator(f'#orders .order-item[data-order="{order["id"]}"]')
    await expect(item.locator(".order-title")).to_have_text("Warm gloves")
    await expect(item.locator(".order-meta")).to_contain_text("22")
    assert await item.locator(".order-receipt").get_attribute("href") == receipt
    await screenshot(home, "directory-orders")
