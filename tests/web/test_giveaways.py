"""A giveaway in Chromium: the host starts it from the control panel, a viewer on a phone
enters, the host draws, the phone shows the winner's banner, and the prize is a
zero-priced order."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from livecast.auth import Role
from tests.web.conftest import DESKTOP, PHONE, LiveServer, NewContext, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

SKU = "GIVEAWAY-MUG"


async def test_host_gives_away_a_phone_viewer_enters_and_wins_a_free_order(
    server: LiveServer, new_context: NewContext
) -> None:
    seller = server.token(Role.SELLER, sub="giveaway-seller", name="Gus")
    await server.call(
        "PUT", f"/api/products/{SKU}", seller,
        {"title": "Studio mug", "price": {"amount_minor": 1800, "currency": "EUR"}, "stock": 2},
        status=201,
    )  # fmt: skip
    stream_id = (await server.create_stream(seller, "Mug day", featured_skus=[SKU]))["id"]
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    viewer = server.token(Role.VIEWER, sub="giveaway-mia", name="Mia")
    phone = await (await new_context(PHONE)).new_page()
    await phone.goto(f"{server.base_url}/watch/{stream_id}#token={viewer}")
    await expect(phone.locator("#events-status")).to_have_attribute("data-status", "open")
    control = await (await new_context(DESKTOP)).new_page()
    await control.goto(f"{server.base_url}/control/{stream_id}#token={seller}")
    await expect(control.locator("body[data-ready=true]")).to_have_count(1)

    card = control.locator("#giveaway-card")
    await card.locator(".giveaway-sku").select_option(SKU)
    await card.locator(".giveaway-form button[type=submit]").click()
    await expect(card.locator(".giveaway-status")).to_have_attribute("data-state", "running")
    row = control.locator("#product-list .product-row", has_text=SKU)
    await expect(row).to_contain_text("1 in stock")

    panel = phone.locator("#giveaway-panel")
    await expect(panel).to_be_visible()
    await expect(panel.locator(".giveaway-title")).to_have_text("Studio mug")
    await panel.locator(".giveaway-enter").click()
    await expect(panel.locator(".giveaway-enter")).to_contain_text("in ✓")
    await expect(panel.locator(".giveaway-enter")).to_be_disabled()
    await expect(card.locator(".row-giveaway-entries")).to_contain_text("1 entry")
    await screenshot(phone, "watch-giveaway")

    await card.locator(".giveaway-draw").click()
    await expect(panel.locator(".giveaway-result")).to_contain_text("You won Studio mug")
    await expect(panel).to_have_class("giveaway-panel won")
    await expect(card.locator(".row-giveaway-result")).to_contain_text("Winner: Mia")
    await expect(control.locator("#stat-giveaways")).to_have_text("1 of 1", timeout=10_000)
    await expect(control.locator("#stat-giveaway-entries")).to_contain_text("1 entries · 1 given")
    await screenshot(phone, "watch-giveaway-won")
    orders = await server.call("GET", "/api/orders", viewer)
    assert [(o["total"]["amount_minor"], o["units"]) for o in orders["orders"]] == [(0, 1)]
    product = await server.call("GET", f"/api/products/{SKU}")
    assert (product["stock"], product["in_deals"], product["sold"]) == (1, 0, 1)
