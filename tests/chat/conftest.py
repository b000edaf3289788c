"""Fixtures for the live-events tests: a stream, a second node on the same Redis, and
sockets that speak either subprotocol. Each test runs on the embedded and the cluster-mode
Redis."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType, web

from livecast.app import create_app
from livecast.auth import Role
from livecast.config import Settings
from tests.conftest import AiohttpClient, Client, MakeToken, bearer
from tests.redis_both import redis_url as redis_url  # each test on both servers

JSON = "livecast.v1.json"
MSGPACK = "livecast.v1.msgpack"


class Socket:
    """A client socket that decodes events of its subprotocol."""

    def __init__(self, ws: ClientWebSocketResponse, binary: bool) -> None:
        self.ws = ws
        self.binary = binary
        self.seen: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any]) -> None:
        if self.binary:
            await self.ws.send_bytes(msgspec.msgpack.encode(frame))
        else:
            await self.ws.send_str(msgspec.json.encode(frame).decode())

    async def event(self, wait_s: float = 5.0) -> dict[str, Any]:
        message = await self.ws.receive(timeout=wait_s)
        if message.type is WSMsgType.TEXT:
            assert not self.binary, "text frame on the msgpack subprotocol"
            event: dict[str, Any] = msgspec.json.decode(message.data)
        elif message.type is WSMsgType.BINARY:
            assert self.binary, "binary frame on the JSON subprotocol"
            event = msgspec.msgpack.decode(message.data)
        else:
            raise AssertionError(f"socket closed: {message.type} {message.data!r}")
        self.seen.append(event)
        return event

    async def expect(self, event_type: str, wait_s: float = 5.0) -> dict[str, Any]:
        """The next event of ``event_type``, skipping others (likes, viewers...)."""
        async with asyncio.timeout(wait_s):
            while True:
                event = await self.event(wait_s)
                if event["type"] == event_type:
                    return event

    async def expect_data(self, event_type: str, **match: Any) -> dict[str, Any]:
        """The next ``event_type`` whose data has the given items."""
        async with asyncio.timeout(5):
            while True:
                event = await self.expect(event_type)
                if all(event["data"].get(k) == v for k, v in match.items()):
                    return event

    async def closed(self, wait_s: float = 5.0) -> int | None:
        """Wait for the server to close; the close code."""
        async with asyncio.timeout(wait_s):
            while True:
                message = await self.ws.receive()
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
                    return self.ws.close_code
                if message.type is WSMsgType.ERROR:
                    return self.ws.close_code


Connect = Callable[..., Awaitable[Socket]]


@pytest.fixture
async def stream_id(client: Client, make_token: MakeToken) -> str:
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana")
    resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(seller))
    assert resp.status == 201
    data: dict[str, Any] = await resp.json()
    return str(data["id"])


@pytest.fixture
def host_token(make_token: MakeToken, stream_id: str) -> str:
    return make_token(Role.HOST, sub="host-1", name="Hana", streams={stream_id})


async def _connect(
    client: Client,
    stream_id: str,
    *,
    token: str | None = None,
    binary: bool = False,
    since: str | None = None,
    hello: bool = True,
) -> Socket:
    params = {}
    if token:
        params["token"] = token
    if since:
        params["since"] = since
    ws = await client.ws_connect(
        f"/ws/streams/{stream_id}", protocols=(MSGPACK if binary else JSON,), params=params
    )
    assert ws.protocol == (MSGPACK if binary else JSON)
    socket = Socket(ws, binary)
    if hello:
        first = await socket.event()
        assert first["type"] == "hello"
    return socket


@pytest.fixture
def connect(client: Client, stream_id: str) -> Connect:
    """``await connect(token=..., binary=...)`` -> a Socket on node A after its hello."""

    async def make(**kwargs: Any) -> Socket:
        return await _connect(client, kwargs.pop("stream", stream_id), **kwargs)

    return make


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    """Quick presence refresh and expiry, so node-death tests take a second."""
    chat = dataclasses.replace(
        settings.chat, presence_interval_s=0.2, presence_ttl_s=1.0, like_flush_interval_s=0.05
    )
    return dataclasses.replace(settings, chat=chat)


@pytest.fixture
async def node_b(aiohttp_client: AiohttpClient, settings: Settings) -> Client:
    """A second node: its own app and hub, the same Redis and key prefix."""
    app: web.Application = create_app(settings)
    return await aiohttp_client(app)


@pytest.fixture
def connect_b(node_b: Client, stream_id: str) -> Connect:
    async def make(**kwargs: Any) -> Socket:
        return await _connect(node_b, kwargs.pop("stream", stream_id), **kwargs)

    return make
