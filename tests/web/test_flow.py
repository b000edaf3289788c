"""The live-shopping story in Chromium, each user in their own browser context: the seller
goes live from the studio with the fake camera, viewers see moving video, chat reaches
everyone as text, the host pins a product and runs a flash deal from the control panel, a
viewer buys without leaving the video, and the host's numbers show the order.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, expect

from livecast.appkeys import TOKENS
from livecast.auth import Role
from livecast.demo import DEMO_PRODUCTS, seed_demo
from tests.web.conftest import DESKTOP, PHONE, XSS, LiveServer, NewContext, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

SKU = "FLOW-RUNNER-42"


async def _seller_stream(server: LiveServer, *, products: bool = False) -> tuple[str, str]:
    seller = server.token(Role.SELLER, sub="flow-seller", name="Ana's Sneakers")
    if products:
        await server.call(
            "PUT", f"/api/products/{SKU}", seller,
            {"title": "Retro runner, red, EU 42",
             "price": {"amount_minor": 8900, "currency": "EUR"}, "stock": 30,
             "image_url": f"{server.base_url}/static/img/demo-runner-red.svg"},
            status=201,
        )  # fmt: skip
    stream = await server.create_stream(
        seller, "Autumn sneaker drop", featured_skus=[SKU] if products else []
    )
    return stream["id"], seller


async def _open(context: BrowserContext, url: str) -> Page:
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    return page


async def _join_as(server: LiveServer, new_context: NewContext, stream_id: str, name: str,
                   device: dict[str, Any] = PHONE) -> Page:  # fmt: skip
    token = server.token(Role.VIEWER, name=name)
    page = await _open(
        await new_context(device), f"{server.base_url}/watch/{stream_id}#token={token}"
    )
    await expect(page.locator("#events-status")).to_have_attribute("data-status", "open")
    return page


async def _frames(page: Page) -> int:
    frames: int = await page.evaluate(
        "document.querySelector('#video').getVideoPlaybackQuality().totalVideoFrames"
    )
    return frames


async def _go_live(
    server: LiveServer, new_context: NewContext, stream_id: str, seller: str
) -> Page:
    studio = await _open(
        await new_context(DESKTOP), f"{server.base_url}/studio/{stream_id}#token={seller}"
    )
    await studio.wait_for_function("() => document.querySelector('#preview').videoWidth > 0")
    posts: list[str] = []
    studio.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    stream_url = f"{server.base_url}/api/streams/{stream_id}"
    scheduled = (await server.call("GET", f"/api/streams/{stream_id}"))["state"] == "scheduled"
    async with contextlib.AsyncExitStack() as stack:
        if scheduled:  # WHIP makes it live, and the page reads that back
            read_back = studio.expect_request(lambda r: r.method == "GET" and r.url == stream_url)
            await stack.enter_async_context(read_back)
        await studio.click("#go-live")
        await expect(studio.locator("#state-pill")).to_have_text("Live", timeout=20_000)
    assert f"{stream_url}/start" not in posts  # which would only be a 409
    return studio


async def _sees_moving_video(watch: Page) -> None:
    await expect(watch.locator("body[data-video=playing]")).to_have_count(1, timeout=20_000)
    await watch.wait_for_function(
        "() => document.querySelector('#video').getVideoPlaybackQuality().totalVideoFrames > 0",
        timeout=20_000,
    )
    before = await _frames(watch)
    await watch.wait_for_function(
        "(n) => document.querySelector('#video').getVideoPlaybackQuality().totalVideoFrames > n",
        arg=before + 10,
        timeout=10_000,
    )
    await expect(watch.locator("#stage-message")).to_be_hidden()


async def test_studio_goes_live_and_viewers_see_moving_video(
    server: LiveServer, new_context: NewContext
) -> None:
    stream_id, seller = await _seller_stream(server)
    studio = await _go_live(server, new_context, stream_id, seller)
    assert (await server.call("GET", f"/api/streams/{stream_id}"))["state"] == "live"

    sessions: list[str] = []
    watch_context = await new_context(PHONE)
    watch_context.on(
        "response",
        lambda r: (
            sessions.append(r.headers["location"])
            if r.request.method == "POST" and "/whep/" in r.url and r.status == 201
            else None
        ),
    )
    watch = await _open(watch_context, f"{server.base_url}/watch/{stream_id}")
    await _sees_moving_video(watch)
    # Autoplay is muted; one tap turns the sound on.
    video = watch.locator("#video")
    await expect(video).to_have_js_property("muted", True)
    await watch.tap("#unmute")
    await expect(watch.locator("#unmute")).to_be_hidden()
    await expect(video).to_have_js_property("muted", False)

    # The server drops the viewer's session (as a network drop would): the page plays again.
    # (The seller may end any session of their stream, whoever opened it.)
    seller_auth = {"Authorization": f"Bearer {seller}"}
    async with server.http.delete(server.base_url + sessions[-1], headers=seller_auth) as resp:
        assert resp.status in (200, 204)
    for _ in range(200):
        if len(sessions) > 1:
            break
        await asyncio.sleep(0.1)
    assert len(sessions) > 1, "the watch page did not start a new session"
    await _sees_moving_video(watch)
    await expect(studio.locator("#stat-resolution")).to_have_text(re.compile(r"^\d+\u00d7\d+$"))
    await expect(studio.locator("#stat-bitrate")).to_have_text(re.compile(r"bit/s$"))
    await screenshot(studio, "studio-live")
    await screenshot(watch, "watch-live")

    # The seller closes the tab and comes back: the viewer's video resumes by itself.
    await studio.close()
    await _go_live(server, new_context, stream_id, seller)
    await _sees_moving_video(watch)
    assert watch.url.endswith(f"/watch/{stream_id}")


async def test_chat_reaches_every_page_as_text_and_moderation_works(
    server: LiveServer, new_context: NewContext
) -> None:
    stream_id, seller = await _seller_stream(server)
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    reader = await _join_as(server, new_context, stream_id, "Mia")
    writer = await _join_as(server, new_context, stream_id, "Jon", DESKTOP)
    control = await _open(
        await new_context(DESKTOP), f"{server.base_url}/control/{stream_id}#token={seller}"
    )
    await expect(control.locator("#events-status")).to_have_attribute("data-status", "open")

    await writer.fill("#chat-input", XSS)
    await writer.press("#chat-input", "Enter")
    for page in (reader, writer, control):
        message = page.locator("#chat .chat-msg", has_text="onerror")
        await expect(message.locator(".chat-text")).to_have_text(XSS)
        await expect(message.locator(".chat-name")).to_have_text("Jon")
        assert await page.locator("#chat img").count() == 0
    await screenshot(reader, "watch-chat")
    await screenshot(control, "control-chat")

    # The reader's network drops; what was said meanwhile arrives when it returns.
    await reader.context.set_offline(True)
    await expect(reader.locator("#events-status")).to_have_attribute(
        "data-status", "reconnecting", timeout=10_000
    )
    await writer.fill("#chat-input", "said while you were away")
    await writer.press("#chat-input", "Enter")
    await expect(control.locator("#chat .chat-text", has_text="while you were away")).to_have_count(
        1
    )
    await reader.context.set_offline(False)
    await expect(reader.locator("#events-status")).to_have_attribute(
        "data-status", "open", timeout=15_000
    )
    await expect(reader.locator("#chat .chat-text", has_text="while you were away")).to_have_count(
        1
    )
    await expect(reader.locator("#chat .chat-text", has_text="onerror")).to_have_count(1)

    # Slow mode set on the panel is announced to viewers.
    await control.select_option("#slow-mode", "30")
    await expect(reader.locator("#chat-input")).to_have_attribute(
        "placeholder", "Slow mode: one message every 30 s"
    )
    await control.select_option("#slow-mode", "0")
    await expect(reader.locator("#chat-input")).to_have_attribute("placeholder", "Say something…")

    # The host deletes it: gone for everyone.
    await (
        control.locator("#chat .chat-msg", has_text="onerror")
        .locator("button", has_text="Delete")
        .click()
    )
    await expect(reader.locator("#chat .chat-msg", has_text="onerror")).to_have_count(0)

    # The host bans the writer: their next message is refused, kindly.
    await writer.fill("#chat-input", "hello again")
    await writer.press("#chat-input", "Enter")
    await expect(control.locator("#chat .chat-msg", has_text="hello again")).to_have_count(1)
    await (
        control.locator("#chat .chat-msg", has_text="hello again")
        .locator("button", has_text="Ban")
        .click()
    )
    await expect(control.locator("#toast")).to_contain_text("banned")
    await writer.fill("#chat-input", "let me back in")
    await writer.press("#chat-input", "Enter")
    await expect(writer.locator("#toast")).to_contain_text("no longer chat")
    await expect(reader.locator("#chat .chat-msg", has_text="let me back in")).to_have_count(0)

    # Too many messages too fast: the next one is refused kindly and kept in the box.
    for n in range(21):
        await reader.fill("#chat-input", f"spam {n}")
        await reader.press("#chat-input", "Enter")
    await expect(reader.locator("#toast")).to_contain_text("too fast")
    await expect(reader.locator("#chat-input")).to_have_value("spam 20")
    await expect(control.locator("#chat .chat-text", has_text="spam 20")).to_have_count(0)

    # A time-out is explained the same way.
    await (
        control.locator("#chat .chat-msg", has_text="spam 0")
        .locator("button", has_text="Time out")
        .click()
    )
    await expect(control.locator("#toast")).to_contain_text("timed out")
    await reader.fill("#chat-input", "am I muted?")
    await reader.press("#chat-input", "Enter")
    await expect(reader.locator("#toast")).to_contain_text("timed out for a little while")


async def test_pin_and_flash_deal_from_the_control_panel(
    server: LiveServer, new_context: NewContext
) -> None:
    stream_id, seller = await _seller_stream(server, products=True)
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    watch = await _join_as(server, new_context, stream_id, "Mia")
    control = await _open(
        await new_context(DESKTOP), f"{server.base_url}/control/{stream_id}#token={seller}"
    )
    row = control.locator("#product-list .product-row", has_text=SKU)
    await expect(row).to_contain_text("30 in stock")

    await row.locator("button", has_text="Pin").click()
    card = watch.locator("#product-card")
    await expect(card).to_be_visible()
    await expect(card.locator(".product-title")).to_have_text("Retro runner, red, EU 42")
    await expect(card.locator(".product-price")).to_contain_text("89.00")
    await expect(card.locator(".product-stock")).to_have_text("30 in stock")
    # On a phone the chat stays above the card, whose title may take two lines.
    await watch.fill("#chat-input", "do they run small?")
    await watch.press("#chat-input", "Enter")
    said = watch.locator("#chat .chat-msg", has_text="run small")
    await expect(said).to_be_visible()
    said_box, card_box = await said.bounding_box(), await card.bounding_box()
    assert said_box is not None
    assert card_box is not None
    assert said_box["y"] + said_box["height"] <= card_box["y"], (said_box, card_box)

    await control.fill("#deal-price", "49.00")
    await control.fill("#deal-quantity", "5")
    await control.select_option("#deal-duration", "120")
    await control.click("#deal-form button[type=submit]")
    banner = watch.locator("#deal-banner")
    await expect(banner).to_be_visible()
    await expect(banner.locator(".now")).to_contain_text("49.00")
    await expect(banner.locator(".left")).to_have_text("5 left")
    await expect(banner.locator(".countdown")).to_have_text(re.compile(r"^[12]:\d\d$"))
    await expect(control.locator("#deal-list .deal-row")).to_have_count(1)
    # A viewer who arrives now sees the same card and deal at once.
    late = await _join_as(server, new_context, stream_id, "Lee", DESKTOP)
    await expect(late.locator("#product-card .product-title")).to_have_text(
        "Retro runner, red, EU 42"
    )
    await expect(late.locator("#deal-banner .left")).to_have_text("5 left")
    await screenshot(late, "watch-deal")
    await screenshot(watch, "watch-deal")
    await screenshot(control, "control-deal")

    await control.locator("#deal-list button", has_text="End").click()
    await expect(banner).to_be_hidden()

    # A one-piece deal: the first buyer gets it and everyone sees it sold out.
    await control.fill("#deal-quantity", "1")
    await control.click("#deal-form button[type=submit]")
    await expect(late.locator("#deal-banner .left")).to_have_text("1 left")
    await watch.click("#deal-banner .deal-buy")
    await expect(watch.locator("#cart-drawer .cart-line")).to_have_count(1)
    for page in (late, watch):
        await expect(page.locator("#deal-banner .left")).to_have_text("SOLD OUT")
        await expect(page.locator("#deal-banner .deal-buy")).to_be_disabled()
    await screenshot(late, "watch-sold-out")

    # Add to cart from the pinned card, at the regular price; the stock left goes down.
    stock = late.locator("#product-card .product-stock")
    await expect(stock).to_have_text(re.compile(r"^\d+ in stock$"))
    left = int((await stock.inner_text()).split()[0])
    await late.click("#product-card .add-to-cart")
    line = late.locator("#cart-drawer .cart-line")
    await expect(line).to_have_count(1)
    await expect(line.locator(".line-meta")).to_contain_text("89.00")
    await expect(line.locator(".hold-timer")).to_have_text(re.compile(r"^\d+:\d\d$"))
    await expect(stock).to_have_text(f"{left - 1} in stock")

    await row.locator("button", has_text="Unpin").click()
    await expect(card).to_be_hidden()


async def test_flash_deal_per_buyer_limit_is_enforced_on_the_watch_page(
    server: LiveServer, new_context: NewContext
) -> None:
    """The limit the host sets on the panel holds: past it, "Grab it" explains the limit
    and the cart (on the page and on the server) does not grow."""
    stream_id, seller = await _seller_stream(server, products=True)
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    buyer = await _join_as(server, new_context, stream_id, "Mia")
    control = await _open(
        await new_context(DESKTOP), f"{server.base_url}/control/{stream_id}#token={seller}"
    )
    await control.fill("#deal-price", "49.00")
    await control.fill("#deal-quantity", "5")
    await control.fill("#deal-limit", "2")
    await control.click("#deal-form button[type=submit]")
    banner = buyer.locator("#deal-banner")
    await expect(banner.locator(".left")).to_have_text("5 left")

    cart_count = buyer.locator("#cart-count")
    for bought in (1, 2):
        await banner.locator(".deal-buy").click()
        await expect(cart_count).to_have_text(str(bought))
        await expect(banner.locator(".left")).to_have_text(f"{5 - bought} left")

    await banner.locator(".deal-buy").click()
    toast = buyer.locator("#toast")
    await expect(toast).to_have_text(
        "This deal is limited to 2 per buyer, and you already have your 2."
    )
    await expect(toast).to_have_attribute("data-kind", "error")
    await screenshot(buyer, "watch-deal-limit")
    await expect(cart_count).to_have_text("2")
    await expect(buyer.locator("#cart-drawer .cart-line .chip.deal")).to_have_count(2)
    await expect(banner.locator(".left")).to_have_text("3 left")
    token = await buyer.evaluate("localStorage.getItem('livecast.token')")
    cart = await server.call("GET", "/api/cart", token)
    assert sum(line["quantity"] for line in cart["lines"]) == 2, cart


async def test_live_shopping_end_to_end(server: LiveServer, new_context: NewContext) -> None:
    """The whole story, with every capability of the server behind the pages."""
    stream_id, seller = await _seller_stream(server, products=True)
    studio = await _go_live(server, new_context, stream_id, seller)
    buyer = await _join_as(server, new_context, stream_id, "Mia")
    chatter = await _join_as(server, new_context, stream_id, "Jon", DESKTOP)
    control = await _open(
        await new_context(DESKTOP), f"{server.base_url}/control/{stream_id}#token={seller}"
    )
    await _sees_moving_video(buyer)
    await expect(buyer.locator("#viewer-count .n")).to_have_text(re.compile(r"^([2-9]|\d\d+)$"))
    for _ in range(3):
        await buyer.click("#like")
    await expect(chatter.locator("#like-count")).to_have_text("3")

    await chatter.fill("#chat-input", "are these true to size?")
    await chatter.press("#chat-input", "Enter")
    for page in (buyer, studio, control):
        await expect(page.locator("#chat .chat-text", has_text="true to size")).to_have_count(1)

    await (
        control.locator("#product-list .product-row", has_text=SKU)
        .locator("button", has_text="Pin")
        .click()
    )
    await expect(buyer.locator("#product-card")).to_be_visible()
    await control.fill("#deal-price", "49.00")
    await control.fill("#deal-quantity", "3")
    await control.click("#deal-form button[type=submit]")
    await expect(buyer.locator("#deal-banner .left")).to_have_text("3 left")

    await buyer.click("#deal-banner .deal-buy")
    drawer = buyer.locator("#cart-drawer")
    await expect(drawer).to_be_visible()
    await expect(drawer.locator(".cart-line")).to_have_count(1)
    await expect(drawer.locator(".cart-line .line-meta")).to_contain_text("49.00")
    await expect(drawer.locator(".hold-timer")).to_have_text(re.compile(r"^\d+:\d\d$"))
    await expect(drawer.locator("#cart-total")).to_contain_text("49.00")
    await expect(buyer.locator("#deal-banner .left")).to_have_text("2 left")
    await screenshot(buyer, "watch-cart")

    await buyer.click("#checkout")
    await expect(buyer.locator("#order-done")).to_be_visible()
    await expect(buyer.locator("#order-summary")).to_contain_text("49.00")
    await screenshot(buyer, "watch-order")
    # Still on the stream, video still moving.
    assert buyer.url.endswith(f"/watch/{stream_id}")
    await _sees_moving_video(buyer)

    await expect(control.locator("#stat-orders")).to_have_text("1", timeout=10_000)
    await expect(control.locator("#stat-gmv")).to_contain_text("49.00")
    await expect(control.locator("#stat-carts")).to_have_text("1")
    await expect(control.locator("#stat-likes")).to_have_text("3")
    await expect(control.locator("#stat-viewers")).to_have_text(re.compile(r"^([2-9]|\d\d+)$"))
    await expect(control.locator("#stat-peak")).to_have_text(re.compile(r"^peak ([2-9]|\d\d+)$"))
    await expect(control.locator("#stat-conversion")).to_have_text(re.compile(r"^\d+\.\d%$"))
    await screenshot(control, "control-numbers")

    # The seller ends the show; everyone's page says so.
    await studio.click("#end-stream")
    await expect(studio.locator("#state-pill")).to_have_text("Ended")
    await expect(buyer.locator("#stage-text")).to_contain_text("has ended")
    await expect(control.locator("#state-pill")).to_have_text("Ended")


async def test_demo_links_open_working_pages(server: LiveServer, new_context: NewContext) -> None:
    """What `livecast demo` prints: the control link lists the demo catalog with stock and
    can pin; the watch link shows the pinned product to the demo viewer."""
    links = await seed_demo(
        server.http, server.base_url, server.app[TOKENS], page_url=server.base_url, ttl_s=600
    )
    assert links.seeded_products == len(DEMO_PRODUCTS)
    control = await _open(await new_context(DESKTOP), links.control)
    rows = control.locator("#product-list .product-row")
    await expect(rows).to_have_count(len(DEMO_PRODUCTS))
    first = DEMO_PRODUCTS[0]
    await expect(rows.first).to_contain_text(f"{first['stock']} in stock")
    await expect(rows.first.locator("img")).to_have_js_property("naturalWidth", 200)

    watch = await _open(await new_context(PHONE), links.watch)
    await expect(watch.locator("#stage-text")).to_contain_text("not started yet")
    await server.call("POST", f"/api/streams/{links.stream_id}/start", _seller_of(links.control))
    await rows.first.locator("button", has_text="Pin").click()
    await expect(watch.locator("#product-card .product-title")).to_have_text(first["title"])
    await screenshot(control, "control-demo")
    await screenshot(watch, "watch-demo")


def _seller_of(link: str) -> str:
    return link.split("#token=", 1)[1]
