"""What WHIP and WHEP answers share: the ICE servers from config, as Link headers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aioice import stun

from livecast.config import Settings
from tests.conftest import Client, bearer, make_settings
from tests.ingest.conftest import SellerStream
from tests.ingest.peers import new_pc


class StunServer(asyncio.DatagramProtocol):
    """A STUN server on loopback that answers every binding request."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        request = stun.parse_message(data)
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)
        self.requests += 1

    @property
    def url(self) -> str:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return f"stun:{host}:{port}"


@pytest.fixture
async def stun_server() -> AsyncIterator[StunServer]:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(StunServer, local_addr=("127.0.0.1", 0))
    yield server
    transport.close()


@pytest.fixture
def settings(stun_server: StunServer, redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(redis_url, key_prefix, tmp_path, webrtc__ice_servers=[stun_server.url])


async def _offer(direction: str) -> str:
    pc = new_pc()
    pc.addTransceiver("video", direction=direction)
    pc.addTransceiver("audio", direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


async def test_answers_carry_the_configured_ice_servers(
    client: Client, stream: SellerStream, stun_server: StunServer
) -> None:
    publish = await client.post(
        f"/whip/{stream.id}",
        data=await _offer("sendonly"),
        headers={"Content-Type": "application/sdp", **bearer(stream.seller_token)},
    )
    play = await client.post(
        f"/whep/{stream.id}",
        data=await _offer("recvonly"),
        headers={"Content-Type": "application/sdp"},
    )
    for resp in (publish, play):
        assert resp.status == 201, await resp.text()
        assert resp.headers.getall("Link") == [f'<{stun_server.url}>; rel="ice-server"']
        assert "Link" in resp.headers["Access-Control-Expose-Headers"]
        deleted = await client.delete(resp.headers["Location"], headers=bearer(stream.seller_token))
        assert deleted.status == 200
    # the server gathered its own candidates through the same servers
    assert stun_server.requests > 0
