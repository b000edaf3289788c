"""A product clip in Chromium: the host pinned a product on a recorded stream that ended;
the directory's Moments shelf shows its clip, which plays on the watch page with the
product's card, and an add-to-cart from it is attributed to the stream as clip."""

from __future__ import annotations

import asyncio
import time

import pytest
from playwright.async_api import expect

from livecast.auth import Role
from livecast.replay.keys import REPLAYS
from tests.replay.media import record_run
from tests.web.conftest import PHONE, LiveServer, NewContext, chromium, serving

__all__ = ["chromium", "serving"]

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


async def test_a_clip_on_the_moments_shelf_plays_and_sells_as_clip(
    server: LiveServer, new_context: NewContext
) -> None:
    seller = server.token(Role.SELLER, sub="clip-seller", name="Ana's Knits")
    body = {"title": "Bobble hat", "price": {"amount_minor": 1500, "currency": "EUR"}, "stock": 5}
    await server.call("PUT", "/api/products/HAT-9", seller, body, status=201)
    stream = await server.create_stream(seller, "Hats", featured_skus=["HAT-9"])
    stream_id: str = stream["id"]
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    first_frame = time.monotonic() - 0.3
    await server.call("POST", f"/api/streams/{stream_id}/pin", seller, {"sku": "HAT-9"})
    await asyncio.sleep(1.5)
    await server.call("DELETE", f"/api/streams/{stream_id}/pin", seller)
    await record_run(server.app[REPLAYS], stream_id, 3.0, base=first_frame)
    await server.call("POST", f"/api/streams/{stream_id}/end", seller)

    buyer = server.token(Role.VIEWER, sub="clip-buyer", name="Jon")
    page = await (await new_context(PHONE)).new_page()
    await page.goto(f"{server.base_url}/#token={buyer}")
    card = page.locator("#moments .stream-card.clip")
    await expect(card).to_have_count(1)
    await expect(card.locator(".stream-title")).to_have_text("Bobble hat")
    await card.locator("a").click()
    await expect(page.locator("body[data-clip]")).to_have_count(1, timeout=10_000)
    assert "?clip=" in page.url
    await page.wait_for_function(
        "() => document.querySelector('#video').getVideoPlaybackQuality().totalVideoFrames > 10",
        timeout=20_000,
    )
    shop = page.locator("#replay-card")
    await expect(shop.locator(".product-title")).to_have_text("Bobble hat")
    await shop.locator(".add-to-cart").click()
    await expect(page.locator("#cart-lines .cart-line")).to_have_count(1)
    cart = await server.call("GET", "/api/cart", buyer)
    assert [(line["sku"], line["source"]) for line in cart["lines"]] == [("HAT-9", "clip")]


async def test_a_private_streams_clip_plays_for_a_viewer_it_was_shared_with(
    server: LiveServer, new_context: NewContext
) -> None:
    seller = server.token(Role.SELLER, sub="vip-seller", name="VIP Knits")
    body = {"title": "Cashmere hat", "price": {"amount_minor": 9500, "currency": "EUR"}, "stock": 2}
    await server.call("PUT", "/api/products/HAT-VIP", seller, body, status=201)
    stream = await server.create_stream(seller, "VIP hats", featured_skus=["HAT-VIP"], public=False)
    stream_id: str = stream["id"]
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    first_frame = time.monotonic() - 0.3
    await server.call("POST", f"/api/streams/{stream_id}/pin", seller, {"sku": "HAT-VIP"})
    await asyncio.sleep(1.5)
    await server.call("DELETE", f"/api/streams/{stream_id}/pin", seller)
    await record_run(server.app[REPLAYS], stream_id, 3.0, base=first_frame)
    await server.call("POST", f"/api/streams/{stream_id}/end", seller)
    [clip] = (await server.call("GET", f"/api/streams/{stream_id}/clips", seller))["clips"]
    await server.call("PATCH", f"/api/clips/{clip['id']}", seller, {"state": "published"})

    # The player sends no token: the clip's signed playlist URL is what lets it in.
    guest = server.token(Role.VIEWER, sub="vip-guest", name="Eve", streams={stream_id})
    page = await (await new_context(PHONE)).new_page()
    await page.goto(f"{server.base_url}/watch/{stream_id}?clip={clip['id']}#token={guest}")
    await expect(page.locator("body[data-clip]")).to_have_count(1, timeout=10_000)
    await page.wait_for_function(
        "() => document.querySelector('#video').getVideoPlaybackQuality().totalVideoFrames > 10",
        timeout=20_000,
    )
    await expect(page.locator("#replay-card .product-title")).to_have_text("Cashmere hat")
