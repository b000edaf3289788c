"""A price knock-down in Chromium: the host starts it from the control panel, a phone viewer
taps the price down a step, buys at the new price and checks out: the order is at the
knocked-down price."""

from __future__ import annotations

import pytest
from playwright.async_api import BrowserContext, Page, expect

from livecast.auth import Role
from tests.web.conftest import DESKTOP, PHONE, LiveServer, NewContext, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

SKU = "KNOCK-SCARF"


async def _open(context: BrowserContext, url: str) -> Page:
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    return page


async def test_host_starts_a_knockdown_a_phone_viewer_taps_it_down_and_buys(
    server: LiveServer, new_context: NewContext
) -> None:
    seller = server.token(Role.SELLER, sub="knock-seller", name="Sam Scarves")
    await server.call(
        "PUT", f"/api/products/{SKU}", seller,
        {"title": "Silk scarf", "price": {"amount_minor": 1500, "currency": "EUR"}, "stock": 5},
        status=201,
    )  # fmt: skip
    stream_id = (await server.create_stream(seller, "Scarf drop", featured_skus=[SKU]))["id"]
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    mia_token = server.token(Role.VIEWER, name="Mia")
    mia = await _open(
        await new_context(PHONE), f"{server.base_url}/watch/{stream_id}#token={mia_token}"
    )
    await expect(mia.locator("#events-status")).to_have_attribute("data-status", "open")
    control = await _open(
        await new_context(DESKTOP), f"{server.base_url}/control/{stream_id}#token={seller}"
    )

    await control.select_option("#knockdown-sku", SKU)
    await control.fill("#knockdown-start", "10.00")
    await control.fill("#knockdown-step", "1.00")
    await control.fill("#knockdown-floor", "8.00")
    await control.fill("#knockdown-quantity", "3")
    await control.fill("#knockdown-every-taps", "3")
    await control.click("#knockdown-form button[type=submit]")
    await expect(control.locator("#knockdown-status")).to_be_visible()
    product = await server.call("GET", f"/api/products/{SKU}")
    assert (product["stock"], product["in_deals"]) == (2, 3)

    panel = mia.locator("#knockdown-panel")
    await expect(panel).to_be_visible()
    await expect(panel.locator(".knockdown-price")).to_contain_text("10.00")
    await expect(panel.locator(".knockdown-next")).to_contain_text("3 taps to")
    for _ in range(3):
        await mia.click("#knockdown-panel .knockdown-tap")
    await expect(panel.locator(".knockdown-price")).to_contain_text("9.00")
    await expect(panel.locator(".knockdown-buy")).to_contain_text("9.00")
    await expect(control.locator(".row-knockdown-price")).to_contain_text("9.00")
    await screenshot(mia, "watch-knockdown")

    await mia.click("#knockdown-panel .knockdown-buy")
    drawer = mia.locator("#cart-drawer")
    await expect(drawer).to_be_visible()
    await expect(drawer.locator(".cart-line")).to_have_count(1)
    await expect(drawer.locator(".cart-line .line-meta")).to_contain_text("9.00")
    await mia.click("#checkout")
    await expect(mia.locator("#order-done")).to_be_visible()
    await expect(mia.locator("#order-summary")).to_contain_text("9.00")
    orders = await server.call("GET", "/api/orders", mia_token)
    assert [o["total"]["amount_minor"] for o in orders["orders"]] == [900]
    await expect(control.locator("#stat-knockdowns")).to_have_text("1 units", timeout=10_000)
    await expect(control.locator("#stat-knockdown-taps")).to_contain_text("3 taps · 1 drops")
    product = await server.call("GET", f"/api/products/{SKU}")
    assert (product["stock"], product["in_deals"], product["held"], product["sold"]) == (2, 2, 0, 1)
