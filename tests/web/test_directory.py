"""The directory page in Chromium: live, upcoming and recent streams from the real API,
titles shown as text, and signing in with a dev-mode name or a pasted token."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from livecast.appkeys import TOKENS
from livecast.auth import Role
from tests.web.conftest import DESKTOP, PHONE, XSS, LiveServer, NewContext, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


async def _seed(server: LiveServer) -> dict[str, str]:
    seller = server.token(Role.SELLER, name="Ana's Sneakers")
    other = server.token(Role.SELLER, name="Bo Beauty")
    live = await server.create_stream(seller, "Autumn sneaker drop: 40% off")
    await server.call("POST", f"/api/streams/{live['id']}/start", seller)
    upcoming = await server.create_stream(
        other, "Skincare Sunday", scheduled_start="2030-03-03T18:00:00Z"
    )
    ended = await server.create_stream(seller, "Summer sale recap")
    await server.call("POST", f"/api/streams/{ended['id']}/start", seller)
    await server.call("POST", f"/api/streams/{ended['id']}/end", seller)
    hostile = await server.create_stream(other, XSS)
    return {
        "live": live["id"],
        "upcoming": upcoming["id"],
        "ended": ended["id"],
        "xss": hostile["id"],
    }


@pytest.mark.parametrize("device", [PHONE, DESKTOP], ids=["phone", "desktop"])
async def test_directory_lists_streams_by_state(
    server: LiveServer, new_context: NewContext, device: dict[str, object]
) -> None:
    ids = await _seed(server)
    page = await (await new_context(device)).new_page()
    await page.goto(server.base_url + "/")
    await expect(page.locator("body[data-loaded=true]")).to_have_count(1)

    live = page.locator("#live .stream-card")
    await expect(live).to_have_count(1)
    await expect(live.locator(".stream-title")).to_have_text("Autumn sneaker drop: 40% off")
    await expect(live.locator(".stream-seller")).to_have_text("Ana's Sneakers")
    await expect(live.locator(".badge.live")).to_be_visible()
    await expect(live.locator(".viewers")).to_have_text("0 watching")
    assert await live.locator("a").get_attribute("href") == f"/watch/{ids['live']}"

    upcoming = page.locator("#upcoming .stream-card")
    await expect(upcoming).to_have_count(2)
    first = upcoming.filter(has_text="Skincare Sunday")
    assert await first.locator("time").get_attribute("datetime") == "2030-03-03T18:00:00.000Z"
    await expect(first.locator("time")).to_contain_text("2030")

    await expect(page.locator("#recent .stream-card .stream-title")).to_have_text(
        "Summer sale recap"
    )
    await screenshot(page, "directory")


async def test_hostile_title_renders_as_text(server: LiveServer, new_context: NewContext) -> None:
    await _seed(server)
    page = await (await new_context()).new_page()
    await page.goto(server.base_url + "/")
    title = page.locator("#upcoming .stream-title", has_text="onerror")
    await expect(title).to_have_text(XSS)
    assert await page.locator("main img").count() == 0
    # new_context fails the test if alert() ever ran


async def test_empty_directory_says_so(server: LiveServer, new_context: NewContext) -> None:
    page = await (await new_context(PHONE)).new_page()
    await page.goto(server.base_url + "/")
    await expect(page.locator("#live .empty")).to_contain_text("Nobody is live")
    await expect(page.locator("#upcoming .empty")).to_be_visible()


async def test_sign_in_with_a_name_in_dev_mode(server: LiveServer, new_context: NewContext) -> None:
    context = await new_context(PHONE)
    page = await context.new_page()
    await page.goto(server.base_url + "/")
    await page.click("#signin-button")
    dialog = page.locator("dialog#signin")
    await expect(dialog).to_be_visible()
    await screenshot(page, "signin")
    await dialog.locator("input[name=name]").fill(XSS)
    await dialog.locator("button[value=name]").click()
    await expect(dialog).to_have_count(0)
    await expect(page.locator("#account .account-name")).to_have_text(XSS)

    token = await page.evaluate("localStorage.getItem('livecast.token')")
    who = server.app[TOKENS].verify(token)
    assert who.name == XSS
    assert who.role is Role.VIEWER

    # The identity survives a reload, and signing out forgets it.
    await page.reload()
    await expect(page.locator("#account .account-name")).to_have_text(XSS)
    await page.click("#account button")
    await expect(page.locator("#signin-button")).to_be_visible()


async def test_token_from_the_fragment_is_kept_and_hidden(
    server: LiveServer, new_context: NewContext
) -> None:
    token = server.token(Role.VIEWER, name="Cara")
    page = await (await new_context()).new_page()
    await page.goto(f"{server.base_url}/#token={token}")
    await expect(page.locator("#account .account-name")).to_have_text("Cara")
    assert "token" not in page.url
    assert await page.evaluate("localStorage.getItem('livecast.token')") == token


async def test_pasted_token_signs_in_and_garbage_is_refused(
    server: LiveServer, new_context: NewContext
) -> None:
    page = await (await new_context()).new_page()
    await page.goto(server.base_url + "/")
    await page.click("#signin-button")
    dialog = page.locator("dialog#signin")
    await dialog.locator("input[name=token]").fill("not-a-token")
    await dialog.locator("button[value=token]").click()
    await expect(dialog.locator(".form-error")).to_contain_text("not valid")
    await dialog.locator("input[name=token]").fill(server.token(Role.VIEWER, name="Dee"))
    await dialog.locator("button[value=token]").click()
    await expect(page.locator("#account .account-name")).to_have_text("Dee")
