"""Browser fixtures: Debian's Chromium through Playwright (one browser per test module, a
fresh context per user), and the app on a real TCP port on loopback.

Screenshots go to ``tests/_artifacts/screenshots/``, emptied once at the start of a run
(by ``tests/conftest.py``, before any pytest-xdist worker starts).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, WebSocket, async_playwright

from livecast.app import create_app
from livecast.appkeys import TOKENS
from livecast.auth import Role
from livecast.chat.wire import decode_client_frame
from livecast.config import DevSettings, Settings
from livecast.errors import ApiError
from tests.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS_DIR,
    free_port,
    undescribed_event,
)
from tests.contract import install as install_answer_check

PAGE_ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]
SCREENSHOTS = SCREENSHOTS_DIR
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 1,
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1440, "height": 900}}

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="session", autouse=True)
def _clean_screenshots() -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)


@asynccontextmanager
async def chromium(args: list[str]) -> AsyncIterator[Browser]:
    """Debian's Chromium, launched with ``args``."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium(PAGE_ARGS) as launched:
        yield launched


@dataclass
class LiveServer:
    """The app on ``base_url``, with helpers to act through its real HTTP API."""

    app: web.Application
    base_url: str
    http: aiohttp.ClientSession

    def token(
        self, role: Role, *, sub: str | None = None, name: str | None = None,
        streams: frozenset[str] | set[str] = frozenset(),
    ) -> str:  # fmt: skip
        return self.app[TOKENS].issue(
            sub=sub or f"{role.value}-{uuid.uuid4().hex[:8]}",
            name=name or role.value.title(),
            role=role,
            streams=frozenset(streams),
            ttl_s=3600,
        )

    async def call(
        self, method: str, path: str, token: str | None = None, json: Any = None, status: int = 200
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(
            method, self.base_url + path, json=json, headers=headers
        ) as resp:
            body = await resp.json()
            assert resp.status == status, body
            return body

    async def create_stream(self, seller: str, title: str, **fields: Any) -> dict[str, Any]:
        stream: dict[str, Any] = await self.call(
            "POST", "/api/streams", seller, {"title": title, **fields}, status=201
        )
        return stream


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[LiveServer]:
    """The app with dev mode on, listening on 127.0.0.1 on a free port and advertised at that
    address, so other nodes on the same Redis can send publishers and edge pulls to it."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = create_app(
        dataclasses.replace(
            settings,
            dev=DevSettings(mint_viewer_tokens=True),
            server=dataclasses.replace(settings.server, advertise_url=base_url),
        )
    )
    # every answer the pages get is checked against the OpenAPI document, as in tests/
    answers = install_answer_check(app)
    # as `livecast serve` stops: handlers still running after the timeout are cancelled
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=settings.server.shutdown_timeout_s
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            yield LiveServer(app=app, base_url=base_url, http=http)
    finally:
        await runner.cleanup()
    if answers is not None and answers.violations:
        raise AssertionError(
            "answers that do not match the OpenAPI document:\n  " + "\n  ".join(answers.violations)
        )


@pytest_asyncio.fixture(loop_scope="module")
async def server(settings: Settings) -> AsyncIterator[LiveServer]:
    """One node; the test's Redis keys go when the test ends."""
    async with serving(settings) as live:
        yield live
    await drop_keys(settings)


async def drop_keys(settings: Settings) -> None:
    """Delete the test's keys (its prefix) from Redis."""
    cleaner = aioredis.Redis.from_url(settings.redis.url)
    async for key in cleaner.scan_iter(match=f"{settings.redis.key_prefix}*", count=1000):
        await cleaner.delete(key)
    await cleaner.aclose()


NewContext = Callable[..., Awaitable[BrowserContext]]


@pytest_asyncio.fixture(loop_scope="module")
async def new_context(browser: Browser) -> AsyncIterator[NewContext]:
    """``await new_context(PHONE)``: a fresh browser profile that fails the test on any page
    error or dialog (an ``alert`` from injected markup would be one), and on a live event
    or frame the AsyncAPI types do not describe."""
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    async def make(options: dict[str, Any] | None = None) -> BrowserContext:
        context = await browser.new_context(**(options or DESKTOP))
        context.on("page", lambda page: _watch(page, problems))
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        await context.close()
    assert not problems, problems


def _watch(page: Page, problems: list[str]) -> None:
    page.on("pageerror", lambda exc: problems.append(f"{page.url}: page error {exc}"))
    page.on("websocket", lambda socket: _watch_live_events(page, socket, problems))

    async def on_dialog(dialog: Any) -> None:
        if dialog.type == "confirm":
            await dialog.accept()
            return
        problems.append(f"{page.url}: unexpected {dialog.type} dialog: {dialog.message}")
        await dialog.dismiss()

    page.on("dialog", on_dialog)


def _watch_live_events(page: Page, socket: WebSocket, problems: list[str]) -> None:
    """The events a page receives fit the AsyncAPI types, and the frames it sends are
    frames the server takes."""
    if "/ws/streams/" not in socket.url:
        return

    def received(payload: str | bytes) -> None:
        problem = undescribed_event(payload, binary=isinstance(payload, bytes))
        if problem is not None:
            problems.append(f"{page.url}: received an undescribed event: {problem}")

    def sent(payload: str | bytes) -> None:
        try:
            decode_client_frame(payload, binary=isinstance(payload, bytes))
        except ApiError as exc:
            problems.append(f"{page.url}: sent a frame the server refuses: {exc} {payload!r}")

    socket.on("framereceived", received)
    socket.on("framesent", sent)


async def screenshot(page: Page, name: str) -> None:
    """``<name>-phone.png`` or ``<name>-desktop.png``, with entry animations finished so the
    picture shows what a user sees once the page settles."""
    width = page.viewport_size["width"] if page.viewport_size else 0
    kind = "phone" if width < 700 else "desktop"
    await page.screenshot(path=SCREENSHOTS / f"{name}-{kind}.png", animations="disabled")
