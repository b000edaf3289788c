"""A poll in Chromium: the host asks from the control panel, a viewer on a phone votes and
changes their mind with a tap, percentages move live, and the host closes it on the tally."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from livecast.auth import Role
from tests.web.conftest import DESKTOP, PHONE, LiveServer, NewContext, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


async def test_host_asks_a_phone_viewer_votes_and_the_tally_closes_it(
    server: LiveServer, new_context: NewContext
) -> None:
    seller = server.token(Role.SELLER, sub="poll-seller", name="Pia")
    stream_id = (await server.create_stream(seller, "Colour vote"))["id"]
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    viewer = server.token(Role.VIEWER, name="Mia")
    phone = await (await new_context(PHONE)).new_page()
    await phone.goto(f"{server.base_url}/watch/{stream_id}#token={viewer}")
    await expect(phone.locator("#events-status")).to_have_attribute("data-status", "open")
    control = await (await new_context(DESKTOP)).new_page()
    await control.goto(f"{server.base_url}/control/{stream_id}#token={seller}")
    await expect(control.locator("body[data-ready=true]")).to_have_count(1)

    card = control.locator("#poll-card")
    await card.locator(".poll-question-input").fill("Which colour next?")
    await card.locator(".poll-options-input").fill("Red\nGreen\nBlue")
    await card.locator(".poll-form button[type=submit]").click()
    await expect(card.locator(".poll-status")).to_have_attribute("data-state", "running")

    panel = phone.locator("#poll-panel")
    await expect(panel).to_be_visible()
    await expect(panel.locator(".poll-question")).to_have_text("Which colour next?")
    options = panel.locator(".poll-option")
    await expect(options).to_have_count(3)
    await options.nth(0).click()
    await expect(options.nth(0)).to_have_attribute("aria-pressed", "true")
    await expect(options.nth(0).locator(".poll-share")).to_have_text("100%")
    # Another viewer votes Blue over the API: the phone's percentages move live.
    other = server.token(Role.VIEWER, name="Lee")
    poll_id = await panel.get_attribute("data-poll")
    await server.call("PUT", f"/api/polls/{poll_id}/vote", other, {"option": 2})
    await expect(options.nth(2).locator(".poll-share")).to_have_text("50%")
    # Mia changes her mind: one vote each, moved.
    await options.nth(2).click()
    await expect(options.nth(2)).to_have_attribute("aria-pressed", "true")
    await expect(options.nth(2).locator(".poll-share")).to_have_text("100%")
    await expect(options.nth(0).locator(".poll-share")).to_have_text("0%")
    await expect(card.locator(".row-poll-meta")).to_contain_text("2 voters")
    await screenshot(phone, "watch-poll")

    await card.locator(".poll-close").click()
    await expect(card.locator(".poll-status")).to_have_attribute("data-state", "closed")
    await expect(panel.locator(".poll-result")).to_have_text("Result: Blue")
    await expect(control.locator("#stat-polls")).to_have_text("1", timeout=10_000)
    await expect(control.locator("#stat-poll-votes")).to_contain_text("3 votes · 2 voters")
    await screenshot(control, "control-poll")
    tally = await server.call("GET", f"/api/polls/{poll_id}")
    assert (tally["state"], tally["counts"]) == ("closed", [0, 0, 2])
