"""Every selling format at once on a phone: the host runs an auction, a poll, a giveaway, a
group buy and a knock-down on one stream, and the phone viewer's panels stack in one
column, none on top of another, each reachable (the column scrolls) and usable."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import FloatRect, Page, expect

from livecast.auth import Role
from tests.web.conftest import PHONE, LiveServer, NewContext, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

PANELS = ("#auction-panel", "#poll-panel", "#giveaway-panel", "#groupbuy-panel", "#knockdown-panel")


def _eur(minor: int) -> dict[str, Any]:
    return {"amount_minor": minor, "currency": "EUR"}


def _overlap(a: FloatRect, b: FloatRect) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


async def _box(page: Page, selector: str) -> FloatRect:
    box = await page.locator(selector).bounding_box()
    assert box is not None, selector
    return box


async def test_all_five_formats_stack_on_a_phone_without_overlapping(
    server: LiveServer, new_context: NewContext
) -> None:
    seller = server.token(Role.SELLER, sub="stack-seller", name="Stack Shop")
    skus = ["STACK-AUC", "STACK-GIVE", "STACK-GROUP", "STACK-KNOCK"]
    for sku in skus:
        await server.call(
            "PUT", f"/api/products/{sku}", seller,
            {"title": f"Item {sku}", "price": _eur(2500), "stock": 5},
            status=201,
        )  # fmt: skip
    stream_id = (await server.create_stream(seller, "Everything at once", featured_skus=skus))["id"]
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    base = f"/api/streams/{stream_id}"
    await server.call(
        "POST", f"{base}/auctions", seller,
        {"sku": "STACK-AUC", "start_price": _eur(500), "duration_s": 120, "soft_close_s": 10},
        status=201,
    )  # fmt: skip
    await server.call(
        "POST", f"{base}/polls", seller,
        {"question": "Which colour next?", "options": ["Red", "Blue", "Green"], "key": "p1"},
        status=201,
    )  # fmt: skip
    await server.call("POST", f"{base}/giveaways", seller, {"sku": "STACK-GIVE"}, status=201)
    tiers = [
        {"min_buyers": 1, "price": _eur(2000)},
        {"min_buyers": 2, "price": _eur(1700)},
    ]
    await server.call(
        "POST", f"{base}/groupbuys", seller,
        {"sku": "STACK-GROUP", "tiers": tiers, "cap": 5, "duration_s": 120},
        status=201,
    )  # fmt: skip
    await server.call(
        "POST", f"{base}/knockdowns", seller,
        {
            "sku": "STACK-KNOCK", "start_price": _eur(1000), "step": _eur(100),
            "floor": _eur(700), "quantity": 3, "duration_s": 120, "taps_per_step": 5,
        },
        status=201,
    )  # fmt: skip

    mia_token = server.token(Role.VIEWER, name="Mia")
    mia = await (await new_context(PHONE)).new_page()
    await mia.goto(f"{server.base_url}/watch/{stream_id}#token={mia_token}")
    await expect(mia.locator("body[data-ready=true]")).to_have_count(1)
    for selector in PANELS:
        await expect(mia.locator(selector)).to_be_visible()

    stack = await _box(mia, ".formats-stack")
    viewport = mia.viewport_size
    assert viewport is not None
    assert stack["y"] >= 0
    assert stack["y"] + stack["height"] <= viewport["height"]
    boxes = {selector: await _box(mia, selector) for selector in PANELS}
    for i, first in enumerate(PANELS):
        for second in PANELS[i + 1 :]:
            assert not _overlap(boxes[first], boxes[second]), (first, second, boxes)
    # Each panel scrolls fully into the column and can be used there.
    for selector in PANELS:
        await mia.locator(selector).scroll_into_view_if_needed()
        box = await _box(mia, selector)
        assert stack["y"] - 1 <= box["y"], (selector, box, stack)
        assert box["y"] + box["height"] <= stack["y"] + stack["height"] + 1, (selector, box)
    await screenshot(mia, "watch-formats-stack")
    await mia.locator("#poll-panel .poll-option").first.click()
    await expect(mia.locator("#poll-panel .poll-option.mine")).to_have_count(1)
    await mia.locator("#knockdown-panel .knockdown-tap").click()
    await mia.locator("#giveaway-panel .giveaway-enter").click()
    await expect(mia.locator("#giveaway-panel")).to_have_attribute("data-entered", "true")
