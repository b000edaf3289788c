"""A seller, their stream, and their token, over the real app."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from livecast.aio import cancel_and_wait
from livecast.app import create_app
from livecast.auth import Role
from livecast.config import Settings
from livecast.events import Event
from livecast.ingest.keys import MEDIA
from tests.conftest import AiohttpClient, Client, MakeToken, bearer, free_port, make_settings


@dataclass(frozen=True)
class SellerStream:
    id: str
    seller_token: str


async def create_stream(client: Client, seller_token: str) -> SellerStream:
    """A new stream of the seller whose token is ``seller_token``."""
    resp = await client.post(
        "/api/streams", json={"title": "Spring drop"}, headers=bearer(seller_token)
    )
    assert resp.status == 201, await resp.text()
    return SellerStream((await resp.json())["id"], seller_token)


@pytest.fixture
async def stream(client: Client, make_token: MakeToken) -> SellerStream:
    return await create_stream(client, make_token(Role.SELLER, sub="seller-1"))


# The ingest tests' settings: a short publisher-quiet time so takeovers are quick, and short
# origin and edge lifetimes so failovers are too.
INGEST_OVERRIDES: dict[str, Any] = {
    "webrtc__publisher_stale_s": 1.0,
    "webrtc__max_viewers_per_stream": 4,
    "webrtc__origin_ttl_s": 1.0,
    "webrtc__edge_linger_s": 0.5,
}


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, redis_url: str, key_prefix: str, tmp_path: Path
) -> Settings:
    """The shared settings with :data:`INGEST_OVERRIDES`.

    A test changes more of them by parametrizing this fixture indirectly:
    ``@pytest.mark.parametrize("settings", [{"webrtc__connect_timeout_s": 1.0}], indirect=True)``.
    """
    overrides = {**INGEST_OVERRIDES, **getattr(request, "param", {})}
    return make_settings(redis_url, key_prefix, tmp_path, **overrides)


MakeNode = Callable[..., Awaitable[Client]]


@pytest.fixture
def make_node(aiohttp_client: AiohttpClient, settings: Settings) -> MakeNode:
    """``await make_node()`` -> one more node: its own app on its own port, advertised to
    the others, on the same Redis, key prefix and token secret as ``client``.
    ``make_node(video_codecs=("h264",))`` changes that node's ``webrtc`` settings."""

    async def make(**webrtc: Any) -> Client:
        port = free_port()
        server = dataclasses.replace(settings.server, advertise_url=f"http://127.0.0.1:{port}")
        media = dataclasses.replace(settings.webrtc, **webrtc)
        app = create_app(dataclasses.replace(settings, server=server, webrtc=media))
        return await aiohttp_client(app, port=port)

    return make


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float = 3.0) -> None:
    """Wait until ``check()`` holds (it may be a coroutine function); fail after ``within``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if loop.time() > deadline:
            raise AssertionError(f"still not true after {within} s")
        await asyncio.sleep(0.05)


async def kill_node(node: Client) -> None:
    """Leave ``node`` as ``kill -9`` would leave it to everyone else: its origin
    heartbeat and watchdog stop, it publishes no more events, and its peer connections
    go silent without a goodbye (no DTLS close, no RTCP BYE): what they send is dropped
    and what reaches them is ignored."""
    hub = node.app[MEDIA]
    await cancel_and_wait(hub.origins._heartbeat, hub._watchdog)

    async def silent(event: Event) -> None:
        return None

    hub._publish_event = silent
    for session in list(hub.sessions.values()):
        for transceiver in session.pc.getTransceivers():
            connection = transceiver.sender.transport.transport._connection
            for protocol in connection._protocols:
                protocol.datagram_received = lambda data, addr: None  # type: ignore[method-assign]
                protocol.transport.sendto = lambda data, addr=None: None  # type: ignore[method-assign]
    # the relay's fan-out may write to (duplicates of) those sockets itself: silence it too
    for media in hub.streams.values():
        for source in media.sources.values():
            for writer in source.fanout.writers:
                source.fanout.remove(writer)
