"""An auction in Chromium: the host starts it from the control panel, two viewers (one on a
phone) bid with one tap and with a maximum, a late bid extends the clock, and the winner
finds the unit in the cart at the winning price and checks out."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, expect

from livecast.auth import Role
from tests.web.conftest import DESKTOP, PHONE, LiveServer, NewContext, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

SKU = "AUCTION-WATCH"


async def _open(context: BrowserContext, url: str) -> Page:
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    return page


async def _viewer(
    server: LiveServer, new_context: NewContext, stream_id: str, name: str, device: dict[str, Any]
) -> tuple[Page, str]:
    token = server.token(Role.VIEWER, name=name)
    page = await _open(
        await new_context(device), f"{server.base_url}/watch/{stream_id}#token={token}"
    )
    await expect(page.locator("#events-status")).to_have_attribute("data-status", "open")
    return page, token


async def test_host_auctions_viewers_bid_the_clock_extends_and_the_winner_pays(
    server: LiveServer, new_context: NewContext
) -> None:
    seller = server.token(Role.SELLER, sub="auction-seller", name="Vintage Vic")
    await server.call(
        "PUT", f"/api/products/{SKU}", seller,
        {"title": "1970s wristwatch", "price": {"amount_minor": 9900, "currency": "EUR"},
         "stock": 3},
        status=201,
    )  # fmt: skip
    stream_id = (await server.create_stream(seller, "Vintage hour", featured_skus=[SKU]))["id"]
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    mia, _ = await _viewer(server, new_context, stream_id, "Mia", PHONE)
    lee, lee_token = await _viewer(server, new_context, stream_id, "Lee", DESKTOP)
    control = await _open(
        await new_context(DESKTOP), f"{server.base_url}/control/{stream_id}#token={seller}"
    )

    await control.select_option("#auction-sku", SKU)
    await control.fill("#auction-price", "1.00")
    await control.select_option("#auction-duration", "15")
    await control.fill("#auction-soft", "5")
    await control.click("#auction-form button[type=submit]")
    status = control.locator("#auction-status")
    await expect(status).to_be_visible()
    await expect(control.locator("#auction-cancel")).to_be_visible()
    for page in (mia, lee):
        panel = page.locator("#auction-panel")
        await expect(panel).to_be_visible()
        await expect(panel.locator(".auction-title")).to_have_text("1970s wristwatch")
        await expect(panel.locator(".auction-price")).to_contain_text("1.00")
        await expect(panel.locator(".auction-clock")).to_have_text(re.compile(r"^0:1\d$"))
    auction_id = await mia.locator("#auction-panel").get_attribute("data-auction")
    assert auction_id
    product = await server.call("GET", f"/api/products/{SKU}")
    assert (product["stock"], product["in_deals"]) == (2, 1)
    row = control.locator("#product-list .product-row", has_text=SKU)
    await expect(row).to_contain_text("2 in stock")

    # Mia taps once (the next step, 1.00); Lee sets a maximum of 5.00 and leads at 1.50.
    await mia.click("#auction-panel .auction-bid")
    await expect(mia.locator("#auction-panel .auction-leader")).to_have_text("You lead")
    await expect(lee.locator("#auction-panel .auction-leader")).to_have_text("Mia leads")
    await expect(control.locator("#auction-cancel")).to_be_hidden()
    await lee.fill("#auction-panel .auction-max", "5.00")
    await lee.click("#auction-panel .auction-max-form button")
    await expect(lee.locator("#auction-panel .auction-leader")).to_have_text("You lead")
    await expect(mia.locator("#auction-panel .auction-leader")).to_have_text("Lee leads")
    await expect(mia.locator("#auction-panel .auction-price")).to_contain_text("1.50")
    await expect(mia.locator("#auction-panel .auction-bid")).to_contain_text("2.00")
    await screenshot(mia, "watch-auction")

    # In the last 5 seconds Mia bids again: Lee's maximum covers it, and the clock gains 5 s.
    before = await server.call("GET", f"/api/auctions/{auction_id}")
    left_s = (before["ends_at_ms"] - before["server_ms"]) / 1000
    await asyncio.sleep(max(0.0, left_s - 3.5))
    await mia.click("#auction-panel .auction-bid")
    await expect(lee.locator("#auction-panel .auction-price")).to_contain_text("2.50")
    after = await server.call("GET", f"/api/auctions/{auction_id}")
    assert after["ends_at_ms"] == before["ends_at_ms"] + 5000
    assert after["extensions"] == 1
    await expect(lee.locator("#auction-panel .auction-clock")).to_have_attribute(
        "data-ends-at-server", str(after["ends_at_ms"])
    )
    await expect(mia.locator("#auction-panel .auction-clock")).to_have_text(
        re.compile(r"^0:0[5-9]$")
    )
    await screenshot(control, "control-auction")

    # At the bell Lee wins at 2.50: the unit is in Lee's cart, held at that price.
    result = lee.locator("#auction-panel .auction-result")
    await expect(result).to_contain_text("You won at", timeout=15_000)
    await expect(mia.locator("#auction-panel .auction-result")).to_contain_text("Sold to Lee")
    await expect(status.locator(".row-auction-result")).to_contain_text("Sold to Lee")
    drawer = lee.locator("#cart-drawer")
    await expect(drawer).to_be_visible()
    await expect(drawer.locator(".cart-line")).to_have_count(1)
    await expect(drawer.locator(".cart-line .line-meta")).to_contain_text("2.50")
    await screenshot(lee, "watch-auction-won")
    await lee.click("#checkout")
    await expect(lee.locator("#order-done")).to_be_visible()
    await expect(lee.locator("#order-summary")).to_contain_text("2.50")
    await expect(control.locator("#stat-auctions")).to_have_text("1 of 1", timeout=10_000)
    await expect(control.locator("#stat-auction-bids")).to_contain_text("3 bids · 2 bidders")
    await expect(control.locator("#stat-auction-bids")).to_contain_text("2.50")
    orders = await server.call("GET", "/api/orders", lee_token)
    assert [o["total"]["amount_minor"] for o in orders["orders"]] == [250]
    product = await server.call("GET", f"/api/products/{SKU}")
    assert (product["stock"], product["in_deals"], product["held"], product["sold"]) == (2, 0, 0, 1)
