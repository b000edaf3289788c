"""Several nodes on one Redis: cross-node fan-out in order, presence that adds up and
expires, coalesced likes, and a slow viewer dropped without slowing the others."""

from __future__ import annotations

import asyncio
import base64
import os
import socket as pysocket
from typing import Any

from livecast.aio import cancel_and_wait
from livecast.app import create_app
from livecast.appkeys import EVENTS
from livecast.auth import Role
from livecast.cart.stats import StatsEvent, StreamStats
from livecast.chat import CHAT
from livecast.config import Settings
from livecast.inventory.money import Money
from livecast.inventory.notify import StockChanged, StockData
from tests.chat.conftest import Connect, Socket, _connect
from tests.conftest import AiohttpClient, Client, MakeToken, bearer


def _stock(stream_id: str, sku: str, left: int) -> StockChanged:
    return StockChanged(stream=stream_id, data=StockData(sku=sku, left=left, sold_out=left == 0))


async def test_message_through_node_a_reaches_node_b_in_order(
    connect: Connect, connect_b: Connect, make_token: MakeToken
) -> None:
    alice = make_token(Role.ADMIN, sub="alice", name="Alice")
    sender = await connect(token=alice)
    on_b_json = await connect_b()
    on_b_msgpack = await connect_b(binary=True)
    for n in range(40):
        await sender.send({"type": "chat.send", "text": f"n{n}", "client_id": f"c{n}"})
    for viewer in (on_b_json, on_b_msgpack):
        received = [await viewer.expect("chat.message") for _ in range(40)]
        assert [e["data"]["text"] for e in received] == [f"n{n}" for n in range(40)]
        offsets = [tuple(map(int, e["offset"].split("-"))) for e in received]
        assert offsets == sorted(offsets)
        assert len(set(offsets)) == 40


async def test_state_published_anywhere_reaches_viewers_on_every_node(
    client: Client, connect: Connect, connect_b: Connect, stream_id: str
) -> None:
    on_a, on_b = await connect(), await connect_b()
    await client.app[EVENTS].publish(_stock(stream_id, "SNK-42", 0))
    for viewer in (on_a, on_b):
        data = (await viewer.expect("stock"))["data"]
        assert data == {"sku": "SNK-42", "left": 0, "sold_out": True}


async def _viewers(socket: Socket, count: int) -> None:
    await socket.expect_data("viewers", count=count)


async def test_viewer_counts_add_up_across_nodes_and_drop_when_a_node_goes_away(
    aiohttp_client: AiohttpClient, fast_settings: Settings, stream_id: str
) -> None:
    node_a = await aiohttp_client(create_app(fast_settings))
    node_b = await aiohttp_client(create_app(fast_settings))
    node_c = await aiohttp_client(create_app(fast_settings))
    watcher = await _connect(node_a, stream_id)
    await _viewers(watcher, 1)
    others = [await _connect(node_a, stream_id)]
    others += [await _connect(node_b, stream_id) for _ in range(3)]
    others += [await _connect(node_c, stream_id) for _ in range(2)]
    await _viewers(watcher, 7)

    # Node C shuts down cleanly: its viewers leave at once.
    await node_c.close()
    await _viewers(watcher, 5)

    # Node B dies without a word: its count expires after presence_ttl_s.
    hub_b = node_b.app[CHAT].hub
    assert hub_b._ticker is not None
    await cancel_and_wait(hub_b._ticker)
    await _viewers(watcher, 2)

    stats = await node_a.app[CHAT].history.stats(stream_id)
    assert stats["peak_viewers"] == 7
    assert stats["viewers"] == 2
    # All viewers were anonymous from one address: one unique viewer.
    assert stats["unique_viewers"] == 1


async def test_likes_are_coalesced_into_totals(
    aiohttp_client: AiohttpClient, fast_settings: Settings, stream_id: str, make_token: MakeToken
) -> None:
    node_a = await aiohttp_client(create_app(fast_settings))
    node_b = await aiohttp_client(create_app(fast_settings))
    watcher = await _connect(node_b, stream_id)
    tappers = [
        await _connect(node, stream_id, token=make_token(Role.VIEWER, sub=f"fan{i}", name="Fan"))
        for i, node in enumerate((node_a, node_a, node_b))
    ]
    for _ in range(20):
        for tapper in tappers:
            await tapper.send({"type": "like", "count": 2})
    # 60 taps of 2 arrive as a handful of totals, ending at 120.
    totals: list[int] = []
    async with asyncio.timeout(5):
        while not totals or totals[-1] < 120:
            totals.append((await watcher.expect("likes"))["data"]["total"])
    assert totals[-1] == 120
    assert totals == sorted(totals)
    assert len(totals) < 30
    # One connection adds at most max_likes_per_second (50) a second, however it taps.
    flooder = await _connect(
        node_a, stream_id, token=make_token(Role.VIEWER, sub="flood", name="Flood")
    )
    await flooder.send({"type": "like", "count": 10_000})
    for _ in range(10):
        await flooder.send({"type": "like", "count": 1})
    assert (await watcher.expect("likes"))["data"]["total"] == 120 + 50

    late = await _connect(node_a, stream_id)
    hello = late.seen[0]
    assert hello["data"]["likes"] == 170


async def test_slow_viewer_is_dropped_and_others_get_everything(
    aiohttp_client: AiohttpClient, settings: Settings, stream_id: str
) -> None:
    node = await aiohttp_client(create_app(settings))
    fast = await _connect(node, stream_id, binary=True)
    slow = await _raw_socket_that_never_reads(node, stream_id)
    hub = node.app[CHAT].hub
    publisher = node.app[EVENTS]
    blob = "x" * 60_000
    sent = 0
    async with asyncio.timeout(30):
        while hub.dropped_viewers == 0:
            await publisher.publish(_stock(stream_id, blob, sent))
            sent += 1
            if sent % 20 == 0:
                await asyncio.sleep(0.01)
    received: list[int] = []
    while len(received) < sent:
        event = await fast.expect("stock", wait_s=10)
        received.append(event["data"]["left"])
    assert received == list(range(sent))
    assert hub.viewer_count(stream_id) == 1
    slow.close()


async def _raw_socket_that_never_reads(node: Client, stream_id: str) -> pysocket.socket:
    """A WebSocket client with a tiny receive window that stops reading after the hello."""
    sock = pysocket.socket()
    sock.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    assert node.port is not None
    await loop.sock_connect(sock, ("127.0.0.1", node.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws/streams/{stream_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101")
    return sock


async def test_stream_stats_count_the_audience(
    client: Client, connect: Connect, stream_id: str, host_token: str, make_token: MakeToken
) -> None:
    chatter = await connect(token=make_token(Role.VIEWER, sub="v", name="V"))
    await connect()
    for n in range(3):
        await chatter.send({"type": "chat.send", "text": f"hi {n}", "client_id": f"c{n}"})
        await chatter.expect("chat.message")
    await chatter.send({"type": "like", "count": 5})
    await chatter.expect_data("likes", total=5)
    resp = await client.get(f"/api/streams/{stream_id}/stats", headers=bearer(host_token))
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    assert (body["chat_messages"], body["likes"], body["viewers_peak"]) == (3, 5, 2)
    assert body["unique_viewers"] >= 1
    viewer = make_token(Role.VIEWER, sub="v", name="V")
    resp = await client.get(f"/api/streams/{stream_id}/stats", headers=bearer(viewer))
    assert resp.status == 403
    resp = await client.get(f"/api/streams/{stream_id}/stats")
    assert resp.status == 401


async def test_sales_numbers_reach_hosts_only(
    client: Client, connect: Connect, host_token: str, make_token: MakeToken, stream_id: str
) -> None:
    host = await connect(token=host_token)
    viewer = await connect(token=make_token(Role.VIEWER, sub="v1", name="Vi"))
    # the host authenticating by its first frame is a host too
    late_host = await connect()
    await late_host.send({"type": "auth", "token": host_token})
    await late_host.expect("auth.ok")
    stats = StreamStats(
        stream_id=stream_id, viewers_now=2, viewers_peak=3, unique_viewers=3, likes=0,
        chat_messages=0, add_to_carts=4, orders=3, buyers=2, units_sold=3,
        gmv=[Money(4500, "EUR")], average_order_value=[Money(1500, "EUR")], conversion=1.0,
    )  # fmt: skip
    await client.app[EVENTS].publish(StatsEvent(stream=stream_id, data=stats))
    await client.app[EVENTS].publish(_stock(stream_id, "A", 1))
    for socket in (host, late_host):
        assert (await socket.expect("stats"))["data"]["orders"] == 3
    await viewer.expect("stock")
    assert all(event["type"] != "stats" for event in viewer.seen)


async def test_lost_subscription_closes_sockets_so_they_recover(
    client: Client, connect: Connect, make_token: MakeToken, redis_client: Any
) -> None:
    viewer = await connect()
    killed = await redis_client.client_kill_filter(_type="pubsub")
    assert killed >= 1
    assert await viewer.closed() == 1012
    # Until the hub has resubscribed, connects are turned away (1013); then they work.
    async with asyncio.timeout(10):
        while True:
            try:
                again = await connect()
                break
            except AssertionError:
                await asyncio.sleep(0.2)
    sender = await connect(token=make_token(Role.ADMIN, sub="admin", name="Admin"))
    await sender.send({"type": "chat.send", "text": "back", "client_id": "back"})
    assert (await again.expect("chat.message"))["data"]["text"] == "back"


async def test_fan_out_makes_no_redis_call_per_viewer(
    client: Client, connect: Connect, stream_id: str, redis_client: Any
) -> None:
    viewers = [await connect(binary=n % 2 == 1) for n in range(60)]
    await viewers[0].expect_data("viewers", count=60)
    before = (await redis_client.info("stats"))["total_commands_processed"]
    for n in range(10):
        await client.app[EVENTS].publish(_stock(stream_id, "A", n))
    for viewer in viewers:
        assert [(await viewer.expect("stock"))["data"]["left"] for _ in range(10)] == list(
            range(10)
        )
    calls = (await redis_client.info("stats"))["total_commands_processed"] - before
    # 600 deliveries: the 10 PUBLISHes, INFO and the timers' few calls, not one per socket.
    assert calls < 60, calls
