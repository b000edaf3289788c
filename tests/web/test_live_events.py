"""The pages' live-events client (``web/js/events.js``) in Chromium against the real server:
a refused token is said plainly and not retried, a chat message shows "sending…" until
the server acknowledges it, a server restart (close code 1012) is recovered with ``since``
and no message is lost or shown twice, and the control panel shows the server's refusals.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.async_api import Page, WebSocket, expect

from livecast.appkeys import TOKENS
from livecast.auth import Identity, Role
from livecast.chat.service import CHAT
from livecast.error_codes import CloseCode
from tests.web.conftest import DESKTOP, PHONE, LiveServer, NewContext, screenshot
from tests.web.test_flow import _join_as, _open, _seller_stream

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


def _count_sockets(page: Page) -> list[str]:
    """The URL of every WebSocket the page opens, from now on."""
    urls: list[str] = []

    def opened(socket: WebSocket) -> None:
        urls.append(socket.url)

    page.on("websocket", opened)
    return urls


async def _send(page: Page, text: str) -> None:
    await page.fill("#chat-input", text)
    await page.press("#chat-input", "Enter")


async def test_an_expired_token_is_said_plainly_and_not_retried(
    server: LiveServer, new_context: NewContext
) -> None:
    """The device's clock is an hour behind, so the page cannot tell that its token has
    expired; the server refuses the upgrade, and the page says so and stops trying."""
    stream_id, seller = await _seller_stream(server)
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    an_hour_ago = time.time() - 3600
    expired = server.app[TOKENS].issue(
        sub="mia", name="Mia", role=Role.VIEWER, ttl_s=600, now=an_hour_ago
    )
    page = await (await new_context(PHONE)).new_page()
    await page.clock.install(time=an_hour_ago + 5)
    sockets = _count_sockets(page)
    await page.goto(f"{server.base_url}/watch/{stream_id}#token={expired}")

    notice = page.locator("#live-stopped")
    await expect(notice).to_have_text(re.compile("^Your sign-in has expired: sign in again"))
    await expect(page.locator("#events-status")).to_have_attribute("data-status", "refused")
    assert len(sockets) == 1, sockets
    # A minute passes (any retry would have been due long before): no second attempt.
    await page.clock.run_for(60_000)
    await expect(page.locator("#events-status")).to_have_attribute("data-status", "refused")
    assert len(sockets) == 1, sockets
    assert await page.evaluate("localStorage.getItem('livecast.token')") is None
    await screenshot(page, "watch-sign-in-expired")

    # Signing in again starts the live events with the new token.
    await notice.locator("button", has_text="Sign in again").click()
    await page.fill("#signin input[name=name]", "Mia")
    await page.click("#signin button[value=name]")
    await expect(page.locator("#events-status")).to_have_attribute("data-status", "open")
    await expect(notice).to_be_hidden()
    assert len(sockets) == 2, sockets
    await _send(page, "back again")
    await expect(page.locator("#chat .chat-msg.self", has_text="back again")).to_have_count(1)


async def test_a_message_shows_sending_until_the_server_acknowledges_it(
    server: LiveServer, new_context: NewContext
) -> None:
    stream_id, seller = await _seller_stream(server)
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    writer = await _join_as(server, new_context, stream_id, "Jon", DESKTOP)
    reader = await _join_as(server, new_context, stream_id, "Mia")

    await _send(writer, "first!")
    line = writer.locator("#chat .chat-msg", has_text="first!")
    await expect(line).to_have_attribute("data-state", "sent")
    await expect(line.locator(".chat-state")).to_have_attribute("aria-label", "Sent")
    await expect(line).to_have_count(1)

    # Sent while the network is down: it waits as "sending…", goes out once the socket is
    # back, and everyone sees it once.
    await writer.context.set_offline(True)
    await expect(writer.locator("#events-status")).to_have_attribute(
        "data-status", "reconnecting", timeout=10_000
    )
    await _send(writer, "typed in a tunnel")
    waiting = writer.locator("#chat .chat-msg", has_text="typed in a tunnel")
    await expect(waiting).to_have_attribute("data-state", "pending")
    await expect(waiting.locator(".chat-state")).to_have_text("sending…")
    await expect(writer.locator("#chat-input")).to_have_value("")
    await writer.context.set_offline(False)
    await expect(waiting).to_have_attribute("data-state", "sent", timeout=15_000)
    await expect(waiting).to_have_count(1)
    await expect(reader.locator("#chat .chat-text", has_text="typed in a tunnel")).to_have_count(1)
    await expect(reader.locator("#chat .chat-text", has_text="first!")).to_have_count(1)


async def test_a_server_restart_is_recovered_with_since_and_no_duplicates(
    server: LiveServer, new_context: NewContext
) -> None:
    stream_id, seller = await _seller_stream(server)
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    viewer = await _join_as(server, new_context, stream_id, "Mia")
    sockets = _count_sockets(viewer)
    for n in range(3):
        await _send(viewer, f"before {n}")
    last = viewer.locator("#chat .chat-msg", has_text="before 2")
    await expect(last).to_have_attribute("data-state", "sent")

    # The server closes every socket with 1012 and a message is posted before anyone is back.
    chat = server.app[CHAT]
    await chat.hub.close_sockets(code=CloseCode.SERVICE_RESTART, message=b"restart")
    jon = Identity(sub="jon", name="Jon", role=Role.VIEWER)
    await chat.history.post(stream_id, jon, "said during the restart", "c-restart", is_host=False)

    await expect(viewer.locator("#chat .chat-text", has_text="during the restart")).to_have_count(
        1, timeout=15_000
    )
    await expect(viewer.locator("#events-status")).to_have_attribute("data-status", "open")
    # It came back once, asking for what it missed after the last offset it had.
    assert len(sockets) == 1, sockets
    assert re.search(r"[?&]since=\d+-\d+", sockets[0]), sockets
    for n in range(3):
        await expect(viewer.locator("#chat .chat-text", has_text=f"before {n}")).to_have_count(1)
    await expect(viewer.locator("#chat .chat-msg")).to_have_count(4)


async def test_the_control_panel_shows_what_the_server_refuses(
    server: LiveServer, new_context: NewContext
) -> None:
    stream_id, seller = await _seller_stream(server)
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    control = await _open(
        await new_context(DESKTOP), f"{server.base_url}/control/{stream_id}#token={seller}"
    )
    await expect(control.locator("#events-status")).to_have_attribute("data-status", "open")
    await _send(control, "welcome, everyone")
    await expect(control.locator("#chat .chat-msg", has_text="welcome")).to_have_attribute(
        "data-state", "sent"
    )

    await server.call("POST", f"/api/streams/{stream_id}/end", seller)
    await expect(control.locator("#state-pill")).to_have_text("Ended")
    await _send(control, "one more thing")
    await expect(control.locator("#toast")).to_have_text(
        "The stream has ended, so the chat is closed."
    )
    await expect(control.locator("#toast")).to_have_attribute("data-kind", "error")
    await expect(control.locator("#chat .chat-msg", has_text="one more thing")).to_have_count(0)
    await expect(control.locator("#chat-input")).to_have_value("one more thing")
    await screenshot(control, "control-chat-closed")


async def test_a_panel_opened_with_an_expired_token_asks_for_a_new_one(
    server: LiveServer, new_context: NewContext
) -> None:
    """An old control link: the page sees the token has expired, says so in the sign-in
    dialog instead of opening a socket with it, and works with the token pasted there."""
    stream_id, seller = await _seller_stream(server)
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    expired = server.app[TOKENS].issue(
        sub="flow-seller", name="Ana", role=Role.SELLER, ttl_s=600, now=time.time() - 3600
    )
    page = await (await new_context(DESKTOP)).new_page()
    sockets = _count_sockets(page)
    await page.goto(f"{server.base_url}/control/{stream_id}#token={expired}")

    dialog = page.locator("#signin")
    await expect(dialog).to_contain_text("Your sign-in has expired: paste a new token.")
    assert sockets == []
    await page.fill("#signin input[name=token]", seller)
    await page.click("#signin button[value=token]")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    await expect(page.locator("#events-status")).to_have_attribute("data-status", "open")
    assert len(sockets) == 1, sockets
    assert expired not in sockets[0]


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (CloseCode.GOING_AWAY, "open"),  # the node is shutting down: another one answers
        (CloseCode.TRY_AGAIN_LATER, "open"),  # too far behind: come back and recover
        (CloseCode.SERVICE_RESTART, "open"),  # live events were interrupted: recover
        (CloseCode.INTERNAL_ERROR, "open"),  # a server fault: try again with backoff
        (CloseCode.POLICY_VIOLATION, "Your sign-in was refused: sign in again to chat and shop."),
        (
            CloseCode.UNSUPPORTED_DATA,
            "Live updates stopped (bye). Reload the page to start them again.",
        ),
        (
            CloseCode.MESSAGE_TOO_BIG,
            "Live updates stopped (bye). Reload the page to start them again.",
        ),
    ],
)
async def test_each_close_code_is_followed_as_the_server_means_it(
    server: LiveServer, new_context: NewContext, code: CloseCode, outcome: str
) -> None:
    stream_id, seller = await _seller_stream(server)
    await server.call("POST", f"/api/streams/{stream_id}/start", seller)
    viewer = await _join_as(server, new_context, stream_id, "Mia")
    sockets = _count_sockets(viewer)
    status = viewer.locator("#events-status")
    # Page time from here on is the test's: a retry the close schedules is run by run_for.
    await viewer.clock.install()

    # The page does what the registry says of the code.
    assert (outcome == "open") == code.reconnect
    await server.app[CHAT].hub.close_sockets(code=code, message=b"bye")
    if outcome == "open":
        await expect(status).to_have_attribute("data-status", "reconnecting")
        await expect(status).to_have_attribute("data-status", "open", timeout=15_000)
        assert len(sockets) == 1, sockets
        await expect(viewer.locator("#live-stopped")).to_be_hidden()
    else:
        await expect(viewer.locator("#live-stopped .text")).to_have_text(outcome)
        await expect(status).to_have_attribute("data-status", re.compile("^(refused|failed)$"))
        await viewer.clock.run_for(60_000)
        await expect(status).to_have_attribute("data-status", re.compile("^(refused|failed)$"))
        assert sockets == []
