"""A group buy in Chromium: the host starts it from the control panel, a phone viewer
joins and sees the tiers fall as another buyer joins, the host ends it, and the phone
viewer's order is charged at the lowest price reached."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import BrowserContext, Page, expect

from livecast.auth import Role
from tests.web.conftest import DESKTOP, PHONE, LiveServer, NewContext, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

SKU = "GROUP-KETTLE"


async def _open(context: BrowserContext, url: str) -> Page:
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    return page


async def test_host_starts_a_group_buy_a_phone_viewer_joins_and_pays_the_final_price(
    server: LiveServer, new_context: NewContext
) -> None:
    seller = server.token(Role.SELLER, sub="group-seller", name="Kit Kitchen")
    await server.call(
        "PUT", f"/api/products/{SKU}", seller,
        {"title": "Copper kettle", "price": {"amount_minor": 2500, "currency": "EUR"}, "stock": 5},
        status=201,
    )  # fmt: skip
    stream_id = (await server.create_stream(seller, "Kettle club", featured_skus=[SKU]))["id"]
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    mia_token = server.token(Role.VIEWER, name="Mia")
    mia = await _open(
        await new_context(PHONE), f"{server.base_url}/watch/{stream_id}#token={mia_token}"
    )
    await expect(mia.locator("#events-status")).to_have_attribute("data-status", "open")
    control = await _open(
        await new_context(DESKTOP), f"{server.base_url}/control/{stream_id}#token={seller}"
    )

    await control.select_option("#groupbuy-sku", SKU)
    await control.fill("#groupbuy-tiers", "1:20.00, 2:17.00")
    await control.fill("#groupbuy-cap", "5")
    await control.click("#groupbuy-form button[type=submit]")
    await expect(control.locator("#groupbuy-status")).to_be_visible()

    panel = mia.locator("#groupbuy-panel")
    await expect(panel).to_be_visible()
    await expect(panel.locator(".groupbuy-title")).to_have_text("Copper kettle")
    await expect(panel.locator(".groupbuy-price")).to_contain_text("20.00")
    await expect(panel.locator(".groupbuy-clock")).to_have_text(re.compile(r"^\d+:\d\d$"))
    await mia.click("#groupbuy-panel .groupbuy-join")
    await expect(panel.locator(".groupbuy-progress")).to_contain_text("1 joined · 1 more for")
    await expect(panel.locator(".groupbuy-leave")).to_be_visible()
    group_id = await panel.get_attribute("data-groupbuy")
    assert group_id

    # Another buyer joins: everyone's price falls to the second tier.
    lee = server.token(Role.VIEWER, name="Lee")
    await server.call("POST", f"/api/groupbuys/{group_id}/join", lee, {"key": "lee-1"})
    await expect(panel.locator(".groupbuy-price")).to_contain_text("17.00")
    await expect(panel.locator(".groupbuy-progress")).to_contain_text("lowest price reached")
    await expect(control.locator(".row-groupbuy-progress")).to_contain_text("2 joined")
    await screenshot(mia, "watch-groupbuy")
    await screenshot(control, "control-groupbuy")

    await control.click("#groupbuy-end")
    await expect(panel.locator(".groupbuy-result")).to_contain_text("You got it at")
    await expect(panel.locator(".groupbuy-result")).to_contain_text("17.00")
    await expect(control.locator(".row-groupbuy-result")).to_contain_text("Sold 2")
    await expect(control.locator("#stat-groupbuys")).to_have_text("1 of 1", timeout=10_000)
    await expect(control.locator("#stat-groupbuy-joins")).to_contain_text("2 joins · 2 units")
    orders = await server.call("GET", "/api/orders", mia_token)
    assert [o["total"]["amount_minor"] for o in orders["orders"]] == [1700]
    product = await server.call("GET", f"/api/products/{SKU}")
    assert (product["stock"], product["in_deals"], product["held"], product["sold"]) == (3, 0, 0, 2)
