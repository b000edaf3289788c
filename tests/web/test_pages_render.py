"""Watch, studio and control pages in Chromium against the real API: they render the
stream, take tokens from the fragment or the sign-in form, show user text as text, and
act through the server (the studio's fake camera preview, ending a stream from the panel)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Page, expect

from livecast.auth import Role
from tests.web.conftest import DESKTOP, PHONE, XSS, LiveServer, NewContext, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

DEVICES = pytest.mark.parametrize("device", [PHONE, DESKTOP], ids=["phone", "desktop"])
EMPTY_CHAT = "No messages yet — say hi"


async def _stream(server: LiveServer, title: str = "Autumn sneaker drop") -> tuple[str, str]:
    seller = server.token(Role.SELLER, sub="seller-ana", name="Ana's Sneakers")
    stream = await server.create_stream(seller, title, featured_skus=["SNK-42-RED"])
    return stream["id"], seller


async def _render_hostile_chat(page: Page) -> None:
    """Put a hostile message through the page's own chat renderer and check it is text."""
    await page.evaluate(
        """async (text) => {
            const { ChatView } = await import('/static/js/chat.js');
            const { toChatMessage } = await import('/static/js/wire.js');
            new ChatView(document.querySelector('#chat')).add(toChatMessage({
                id: '1700000000000-0', text, ts: 1700000000000, client_id: 'c-xss',
                user: { id: 'u-x', name: text, role: 'viewer' } }));
        }""",
        XSS,
    )
    message = page.locator("#chat .chat-msg").last
    await expect(message.locator(".chat-text")).to_have_text(XSS)
    await expect(message.locator(".chat-name")).to_have_text(XSS)
    assert await page.locator("#chat img").count() == 0
    assert await _chat_placeholder(page) == "", "the empty-chat placeholder outlived a message"


async def _chat_placeholder(page: Page) -> str:
    """The text the empty chat list shows in its place, or "" when it shows none."""
    content: str = await page.evaluate(
        "getComputedStyle(document.querySelector('#chat'), '::before').content"
    )
    return "" if content in ("none", "normal") else content.strip('"')


@DEVICES
async def test_watch_page_before_the_stream_starts(
    server: LiveServer, new_context: NewContext, device: dict[str, Any]
) -> None:
    stream_id, _ = await _stream(server)
    page = await (await new_context(device)).new_page()
    await page.goto(f"{server.base_url}/watch/{stream_id}")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    await expect(page.locator("#title")).to_have_text("Autumn sneaker drop")
    await expect(page.locator("#seller-name")).to_have_text("Ana's Sneakers")
    await expect(page.locator("#live-badge")).to_be_hidden()
    await expect(page.locator("#stage-text")).to_contain_text("not started yet")
    await expect(page).to_have_title("Autumn sneaker drop · livecast")
    assert await _chat_placeholder(page) == (EMPTY_CHAT if device == DESKTOP else "")

    # Likes count locally at once and float hearts.
    await page.click("#like")
    await page.click("#like")
    await expect(page.locator("#like-count")).to_have_text("2")
    assert await page.locator("#hearts .heart").count() >= 1
    await _render_hostile_chat(page)
    await screenshot(page, "watch-scheduled")


async def test_watch_shows_a_hostile_title_as_text(
    server: LiveServer, new_context: NewContext
) -> None:
    stream_id, _ = await _stream(server, title=XSS)
    page = await (await new_context(PHONE)).new_page()
    await page.goto(f"{server.base_url}/watch/{stream_id}")
    await expect(page.locator("#title")).to_have_text(XSS)
    assert await page.locator(".overlay-top img").count() == 0


async def test_watch_unknown_stream_says_so(server: LiveServer, new_context: NewContext) -> None:
    page = await (await new_context(PHONE)).new_page()
    response = await page.goto(f"{server.base_url}/watch/doesnotexist")
    assert response is not None
    assert response.status == 404
    await expect(page.locator("#stage-text")).to_have_text("This stream does not exist.")


async def test_chatting_asks_for_a_name_first(server: LiveServer, new_context: NewContext) -> None:
    stream_id, _ = await _stream(server)
    context = await new_context(PHONE)
    page = await context.new_page()
    await page.goto(f"{server.base_url}/watch/{stream_id}")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    await page.fill("#chat-input", "hello!")
    await page.press("#chat-input", "Enter")
    dialog = page.locator("dialog#signin")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Pick a name to chat.")
    await dialog.locator("input[name=name]").fill("Eve")
    await dialog.locator("button[value=name]").click()
    await expect(dialog).to_have_count(0)
    token = await page.evaluate("localStorage.getItem('livecast.token')")
    assert token
    claims = await page.evaluate(
        "async () => (await import('/static/js/auth.js')).currentSession('viewer')"
    )
    assert claims["name"] == "Eve"
    assert claims["role"] == "viewer"


@DEVICES
async def test_studio_previews_the_fake_camera(
    server: LiveServer, new_context: NewContext, device: dict[str, Any]
) -> None:
    stream_id, seller = await _stream(server)
    page = await (await new_context(device)).new_page()
    await page.goto(f"{server.base_url}/studio/{stream_id}#token={seller}")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    assert "token" not in page.url
    await expect(page.locator("#title")).to_have_text("Autumn sneaker drop")
    await expect(page.locator("#state-pill")).to_have_text("Offline")
    await page.wait_for_function(
        "() => document.querySelector('#preview').videoWidth > 0", timeout=10_000
    )
    assert await page.locator("#camera option").count() >= 1
    assert await page.locator("#microphone option").count() >= 1
    await expect(page.locator("#go-live")).to_be_enabled()
    await expect(page.locator("#watch-link")).to_have_attribute("href", f"/watch/{stream_id}")
    assert await _chat_placeholder(page) == EMPTY_CHAT
    await page.locator("#chat").scroll_into_view_if_needed()
    await screenshot(page, "studio-empty-chat")
    await _render_hostile_chat(page)
    await screenshot(page, "studio")


async def test_studio_without_a_token_asks_for_a_host_token(
    server: LiveServer, new_context: NewContext
) -> None:
    stream_id, seller = await _stream(server)
    page = await (await new_context()).new_page()
    await page.goto(f"{server.base_url}/studio/{stream_id}")
    dialog = page.locator("dialog#signin")
    await expect(dialog).to_contain_text("Host sign-in")
    # Dev mode mints viewers only; a host pastes their token.
    await expect(dialog.locator("input[name=name]")).to_have_count(0)
    await dialog.locator("input[name=token]").fill(seller)
    await dialog.locator("button[value=token]").click()
    await expect(page.locator("#title")).to_have_text("Autumn sneaker drop")


@DEVICES
async def test_control_panel_renders_and_ends_the_stream(
    server: LiveServer, new_context: NewContext, device: dict[str, Any]
) -> None:
    stream_id, seller = await _stream(server)
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    page = await (await new_context(device)).new_page()
    await page.goto(f"{server.base_url}/control/{stream_id}#token={seller}")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    await expect(page.locator("#title")).to_have_text("Autumn sneaker drop")
    await expect(page.locator("#state-pill")).to_have_text("Live")
    await expect(page.locator("#product-list .product-row")).to_have_count(1)
    await expect(page.locator("#product-list .product-row")).to_contain_text("SNK-42-RED")
    assert await _chat_placeholder(page) == EMPTY_CHAT
    await page.locator("#chat").scroll_into_view_if_needed()
    await screenshot(page, "control-empty-chat")
    await _render_hostile_chat(page)
    await screenshot(page, "control")

    await page.click("#end-stream")  # the confirm() is accepted by the fixture
    await expect(page.locator("#state-pill")).to_have_text("Ended")
    stream = await server.call("GET", f"/api/streams/{stream_id}")
    assert stream["state"] == "ended"


async def test_control_panel_refuses_a_viewer(server: LiveServer, new_context: NewContext) -> None:
    stream_id, seller = await _stream(server)
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    viewer = server.token(Role.VIEWER, name="Mallory")
    page = await (await new_context()).new_page()
    await page.goto(f"{server.base_url}/control/{stream_id}#token={viewer}")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    await page.click("#end-stream")
    await expect(page.locator("#toast")).to_contain_text("may not manage")
    stream = await server.call("GET", f"/api/streams/{stream_id}")
    assert stream["state"] == "live"


async def test_prices_show_with_their_currency_s_digits(
    server: LiveServer, new_context: NewContext
) -> None:
    """Amounts are minor units in ISO 4217 digits: yen have none, dinars three; the
    browser's own locale data (IQD with 0 digits) is not what decides."""
    seller = server.token(Role.SELLER, sub="seller-ana", name="Ana's Sneakers")
    for sku, amount, currency in [("TEA-JP", 1500, "JPY"), ("DATES-KW", 12345, "KWD")]:
        product = {"title": sku, "price": {"amount_minor": amount, "currency": currency}}
        await server.call("PUT", f"/api/products/{sku}", seller, {**product, "stock": 5}, 201)
    stream = await server.create_stream(seller, "Tea time", featured_skus=["TEA-JP", "DATES-KW"])
    await server.call("POST", f"/api/streams/{stream['id']}/start", seller)
    page = await (await new_context({**DESKTOP, "locale": "en-US"})).new_page()
    await page.goto(f"{server.base_url}/control/{stream['id']}#token={seller}")
    rows = page.locator("#product-list .product-row")
    await expect(rows.nth(0)).to_contain_text("¥1,500")
    await expect(rows.nth(1)).to_contain_text(re.compile(r"KWD\s12\.345"))
    await expect(page.locator("#deal-price")).to_have_attribute("placeholder", "1999")

    formatted = await page.evaluate(
        """async () => {
            const { formatMoney, parseMoney } = await import('/static/js/ui.js');
            return [formatMoney(1000, 'IQD'), formatMoney(5, 'EUR'), formatMoney(7, 'ZZZ'),
                    formatMoney(7, null), parseMoney('15', 'JPY'), parseMoney('1.5', 'JPY'),
                    parseMoney('1.5', 'KWD'), parseMoney('2', 'ZZZ')];
        }"""
    )
    assert formatted[0].replace("\xa0", " ") == "IQD 1.000"
    assert formatted[1:] == ["€0.05", "", "", 15, None, 1500, None]
