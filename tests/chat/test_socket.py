"""One node: hello, chat round trip over both subprotocols, recovery, bad input."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import msgspec
import pytest
from aiohttp import WSMsgType
from redis.exceptions import ConnectionError as RedisConnectionError

from livecast.app import create_app
from livecast.appkeys import EVENTS
from livecast.auth import Role
from livecast.chat.history import ChatHistory
from livecast.chat.hub import Hub
from livecast.config import Settings
from livecast.error_codes import ErrorCode
from livecast.inventory.deals import (
    Deal,
    DealEnded,
    DealStarted,
    DealState,
    DealUpdated,
    DealUpdatedData,
)
from livecast.inventory.money import Money
from livecast.inventory.pins import PinCard, PinCleared, PinClearedData, PinSet
from tests.chat.conftest import JSON, MSGPACK, Connect, Socket, _connect
from tests.conftest import AiohttpClient, Client, MakeToken, bearer


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_message_reaches_every_viewer_in_both_subprotocols(
    connect: Connect, make_token: MakeToken, binary: bool
) -> None:
    alice = make_token(Role.VIEWER, sub="alice", name="Alice")
    sender = await connect(token=alice, binary=binary)
    json_viewer = await connect()
    msgpack_viewer = await connect(binary=True)

    await sender.send({"type": "chat.send", "text": "hello <b>all</b>", "client_id": "c1"})
    ack = await sender.expect("chat.ack")
    assert ack["data"]["duplicate"] is False
    for viewer in (sender, json_viewer, msgpack_viewer):
        event = await viewer.expect("chat.message")
        assert event["offset"] == ack["data"]["offset"]
        assert event["data"]["text"] == "hello <b>all</b>"
        assert event["data"]["user"] == {"id": "alice", "name": "Alice", "role": "viewer"}


async def test_hello_has_state_history_and_identity(
    client: Client, connect: Connect, make_token: MakeToken, stream_id: str
) -> None:
    alice = make_token(Role.VIEWER, sub="alice", name="Alice")
    sender = await connect(token=alice)
    await sender.expect_data("viewers", count=1)
    await sender.send({"type": "like", "count": 3})
    await sender.expect_data("likes", total=3)
    for n in range(3):
        await sender.send({"type": "chat.send", "text": f"msg {n}", "client_id": f"c{n}"})
        await sender.expect("chat.ack")
    events = client.app[EVENTS]
    price = Money(5900, "EUR")
    card = PinCard(
        sku="SNK-42", title="Sneaker", price=price, image_url=None, stock_left=7, sold_out=False
    )
    await events.set_state("pin", card, PinSet(stream=stream_id, data=card))
    deal = _deal(stream_id, "d1")
    await events.set_state("deal:d1", deal, DealStarted(stream=stream_id, data=deal))
    other = _deal(stream_id, "d2")
    await events.set_state("deal:d2", other, DealStarted(stream=stream_id, data=other))
    await events.clear_state("deal:d2", DealEnded(stream=stream_id, data=other))

    viewer = await connect(hello=False)
    hello = await viewer.event()
    assert hello["type"] == "hello"
    data = hello["data"]
    assert data["stream"]["id"] == stream_id
    assert data["stream"]["state"] == "scheduled"
    assert data["you"] is None
    assert data["pinned"] == msgspec.to_builtins(card)
    assert data["deals"] == [msgspec.to_builtins(deal)]
    assert data["likes"] == 3
    assert data["viewers"] in (1, 2)  # the sender, and this viewer once its node counted it
    assert [m["text"] for m in data["chat"]] == ["msg 0", "msg 1", "msg 2"]
    assert data["offset"] == data["chat"][-1]["id"]
    assert data["recovered"] is False

    # Later state events reach connected viewers as they are published.
    cleared = PinCleared(stream=stream_id, data=PinClearedData(sku="SNK-42"))
    await events.clear_state("pin", cleared)
    assert (await viewer.expect("pin.cleared"))["data"] == {"sku": "SNK-42"}


async def test_a_stored_document_that_no_longer_fits_is_left_out_of_the_hello(
    client: Client, connect: Connect, stream_id: str, redis_client: Any
) -> None:
    """A pin written by another version (here: half a card) does not break the hello:
    it is left out, and the rest of the stream's state arrives."""
    events = client.app[EVENTS]
    deal = _deal(stream_id, "d1")
    await events.set_state("deal:d1", deal, DealStarted(stream=stream_id, data=deal))
    await redis_client.hset(
        events.state_key(stream_id), "pin", msgspec.msgpack.encode({"sku": "X"})
    )
    viewer = await connect()
    hello = viewer.seen[0]["data"]
    assert hello["pinned"] is None
    assert [d["id"] for d in hello["deals"]] == ["d1"]


def _deal(stream_id: str, deal_id: str) -> Deal:
    return Deal(
        id=deal_id, stream_id=stream_id, sku="SNK-42", title="Sneaker", image_url=None,
        price=Money(3900, "EUR"), regular_price=Money(5900, "EUR"), quantity=10, left=7,
        held=1, sold=2, per_buyer_limit=1, state=DealState.ACTIVE,
        starts_at="2026-11-22T09:00:00.000Z", ends_at="2026-11-22T10:00:00.000Z",
        starts_at_ms=1_795_338_000_000, ends_at_ms=1_795_341_600_000,
    )  # fmt: skip


async def test_stream_state_changes_are_published(
    client: Client, connect: Connect, make_token: MakeToken, stream_id: str
) -> None:
    viewer = await connect()
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana")
    resp = await client.post(
        f"/api/streams/{stream_id}/start", headers={"Authorization": f"Bearer {seller}"}
    )
    assert resp.status == 200, await resp.text()
    event = await viewer.expect("stream.state")
    assert event["data"]["state"] == "live"
    assert event["data"]["previous"] == "scheduled"


async def test_resent_client_id_is_posted_once(connect: Connect, make_token: MakeToken) -> None:
    alice = make_token(Role.VIEWER, sub="alice", name="Alice")
    sender = await connect(token=alice)
    await sender.send({"type": "chat.send", "text": "once", "client_id": "same"})
    first = await sender.expect("chat.ack")
    await sender.send({"type": "chat.send", "text": "once", "client_id": "same"})
    second = await sender.expect("chat.ack")
    assert second["data"] == {**first["data"], "duplicate": True}
    await sender.send({"type": "ping", "id": 1})
    await sender.expect("pong")
    assert [e["type"] for e in sender.seen].count("chat.message") == 1


async def test_reconnect_with_offset_recovers_exactly_the_missed_messages(
    connect: Connect, make_token: MakeToken
) -> None:
    alice = make_token(Role.VIEWER, sub="alice", name="Alice", streams=set())
    host = make_token(Role.ADMIN, sub="admin", name="Admin")
    sender = await connect(token=host)
    viewer = await connect(token=alice)
    await sender.send({"type": "chat.send", "text": "before", "client_id": "b"})
    await sender.expect("chat.ack")
    seen = await viewer.expect("chat.message")
    await viewer.ws.close()

    offsets = []
    for n in range(5):
        await sender.send({"type": "chat.send", "text": f"missed {n}", "client_id": f"m{n}"})
        offsets.append((await sender.expect("chat.ack"))["data"]["offset"])
    await sender.send({"type": "chat.delete", "offset": offsets[1]})
    await sender.expect("mod.ack")

    back = await connect(token=alice, since=seen["offset"], hello=False)
    hello = await back.event()
    assert hello["data"]["recovered"] is True
    assert hello["data"]["chat"] == []
    replayed = [await back.event() for _ in range(5)]
    assert [(e["type"], e["data"].get("text")) for e in replayed] == [
        ("chat.message", "missed 0"),
        ("chat.message", "missed 2"),
        ("chat.message", "missed 3"),
        ("chat.message", "missed 4"),
        ("chat.deleted", None),
    ]
    assert replayed[-1]["data"]["id"] == offsets[1]
    assert hello["data"]["offset"] == replayed[-1]["offset"]

    # Live messages continue after the replay with no duplicate.
    await sender.send({"type": "chat.send", "text": "live", "client_id": "l"})
    live = await back.expect("chat.message")
    assert live["data"]["text"] == "live"
    texts = [e["data"].get("text") for e in back.seen if e["type"] == "chat.message"]
    assert texts == ["missed 0", "missed 2", "missed 3", "missed 4", "live"]


async def test_recovery_past_the_history_bound_gets_a_fresh_hello(
    aiohttp_client: AiohttpClient, settings: Settings, make_token: MakeToken, stream_id: str
) -> None:
    small = dataclasses.replace(
        settings, chat=dataclasses.replace(settings.chat, history_length=10)
    )
    node = await aiohttp_client(create_app(small))
    host = make_token(Role.ADMIN, sub="admin", name="Admin")
    sender = await _connect(node, stream_id, token=host)
    await sender.send({"type": "chat.send", "text": "first", "client_id": "first"})
    first = (await sender.expect("chat.ack"))["data"]["offset"]
    for n in range(12):
        await sender.send({"type": "chat.send", "text": f"m{n}", "client_id": f"m{n}"})
        await sender.expect("chat.ack")

    back = await _connect(node, stream_id, since=first, hello=False)
    hello = await back.event()
    assert hello["data"]["recovered"] is False
    assert [m["text"] for m in hello["data"]["chat"]] == [f"m{n}" for n in range(2, 12)]

    # An offset from the future (another deployment's) cannot be recovered either.
    future = await _connect(node, stream_id, since="99999999999999-0", hello=False)
    assert (await future.event())["data"]["recovered"] is False


async def test_bad_input_gets_error_events_and_changes_nothing(
    connect: Connect, make_token: MakeToken
) -> None:
    alice = make_token(Role.VIEWER, sub="alice", name="Alice")
    json_socket = await connect(token=alice)
    cases: list[tuple[str | bytes, str]] = [
        ("{not json", "malformed_json"),
        ("[1, 2]", "malformed_json"),
        ('{"type": 5}', "malformed_json"),
        ("[" * 3000, "malformed_json"),
        ('{"type": "shout", "text": "x"}', "unknown_type"),
        ('{"type": "chat.send", "text": 5, "client_id": "a"}', "invalid_field"),
        ('{"type": "chat.send", "text": "hi"}', "invalid_field"),
        ('{"type": "chat.send", "text": "hi", "client_id": "a", "x": 1}', "invalid_field"),
        ('{"type": "chat.send", "text": "hi", "client_id": "bad id!"}', "invalid_field"),
        ('{"type": "like", "count": "3"}', "invalid_field"),
        ('{"type": "like", "count": 0}', "invalid_field"),
        ('{"type": "chat.send", "text": "   ", "client_id": "e"}', "empty"),
        ('{"type": "chat.send", "text": "' + "x" * 301 + '", "client_id": "l"}', "too_long"),
        (
            '{"type": "chat.send", "text": "see https://evil.example", "client_id": "u"}',
            "links_not_allowed",
        ),
        (
            '{"type": "chat.send", "text": "go to shop.com now", "client_id": "u2"}',
            "links_not_allowed",
        ),
        ('{"type": "mod.slow", "seconds": 5}', "forbidden"),
        ('{"type": "auth", "token": "x"}', "already_authenticated"),
    ]
    for payload, code in cases:
        await json_socket.ws.send_str(payload if isinstance(payload, str) else payload.decode())
        error = await json_socket.expect("error")
        assert error["data"]["code"] == code, payload
        assert error["data"]["message"]
    assert not [e for e in json_socket.seen if e["type"] == "chat.message"]

    msgpack_socket = await connect(token=alice, binary=True)
    for payload_bytes, code in [
        (b"\xc1", "malformed_json"),
        (b"\x91" * 3000, "malformed_json"),
        (msgspec.msgpack.encode({"type": "nope"}), "unknown_type"),
        (
            msgspec.msgpack.encode({"type": "chat.send", "text": b"x", "client_id": "a"}),
            "invalid_field",
        ),
    ]:
        await msgpack_socket.ws.send_bytes(payload_bytes)
        error = await msgpack_socket.expect("error")
        assert error["data"]["code"] == code

    # Both sockets still work.
    await json_socket.send({"type": "chat.send", "text": "still here", "client_id": "ok"})
    assert (await msgpack_socket.expect("chat.message"))["data"]["text"] == "still here"


async def test_anonymous_viewers_read_but_may_not_write(
    connect: Connect, make_token: MakeToken
) -> None:
    anonymous = await connect()
    await anonymous.send({"type": "chat.send", "text": "hi", "client_id": "a"})
    assert (await anonymous.expect("error"))["data"]["code"] == "unauthorized"
    await anonymous.send({"type": "like", "count": 1})
    assert (await anonymous.expect("error"))["data"]["code"] == "unauthorized"

    # An auth frame gives the connection an identity.
    await anonymous.send({"type": "auth", "token": make_token(Role.VIEWER, sub="bob", name="Bob")})
    assert (await anonymous.expect("auth.ok"))["data"]["you"]["id"] == "bob"
    await anonymous.send({"type": "chat.send", "text": "now I can", "client_id": "b"})
    assert (await anonymous.expect("chat.message"))["data"]["user"]["id"] == "bob"


async def test_bad_auth_frame_closes_with_policy_violation(connect: Connect) -> None:
    anonymous = await connect()
    await anonymous.send({"type": "auth", "token": "forged.token.value"})
    assert await anonymous.closed() == 1008


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_oversized_frame_closes_with_1009(
    connect: Connect, make_token: MakeToken, binary: bool
) -> None:
    bystander = await connect(binary=not binary)
    viewer = await connect(binary=binary)
    await viewer.send({"type": "ping", "id": "x" * 5000})
    assert await viewer.closed() == 1009
    # The server and the other viewers carry on.
    sender = await connect(token=make_token(Role.VIEWER, sub="s", name="S"), binary=binary)
    await sender.send({"type": "chat.send", "text": "still on", "client_id": "on"})
    assert (await bystander.expect("chat.message"))["data"]["text"] == "still on"


async def test_permessage_deflate_is_not_negotiated(client: Client, stream_id: str) -> None:
    # Fan-out writes the same uncompressed bytes to every socket (see livecast.chat.hub).
    ws = await client.ws_connect(f"/ws/streams/{stream_id}", protocols=(JSON,), compress=15)
    assert ws.compress == 0
    message = await ws.receive(timeout=5)
    assert msgspec.json.decode(message.data)["type"] == "hello"
    await ws.close()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_wrong_frame_kind_closes_with_1003(connect: Connect, binary: bool) -> None:
    viewer = await connect(binary=binary)
    if binary:
        await viewer.ws.send_str('{"type": "ping"}')
    else:
        await viewer.ws.send_bytes(msgspec.msgpack.encode({"type": "ping"}))
    assert await viewer.closed() == 1003


async def test_too_many_bad_frames_close_with_1008(connect: Connect) -> None:
    viewer = await connect()
    for _ in range(20):
        await viewer.ws.send_str("nope")
    assert await viewer.closed() == 1008


async def test_protocol_violation_closes_with_1002(client: Client, stream_id: str) -> None:
    ws = await client.ws_connect(f"/ws/streams/{stream_id}", protocols=(JSON,))
    assert (await ws.receive()).type is WSMsgType.TEXT
    # A control frame may not be fragmented: FIN clear on a ping is a protocol error.
    writer = ws._writer
    writer.transport.write(b"\x09\x80\x00\x00\x00\x00")
    message = await ws.receive(timeout=5)
    assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert ws.close_code == 1002


async def test_refused_before_upgrade(client: Client, stream_id: str) -> None:
    resp = await client.get("/ws/streams/nope-not-here", headers=_upgrade(JSON))
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "stream_not_found"
    resp = await client.get(f"/ws/streams/{stream_id}?token=garbage", headers=_upgrade(JSON))
    assert resp.status == 401
    resp = await client.get(f"/ws/streams/{stream_id}", headers=_upgrade("chat.v9"))
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "unsupported_subprotocol"
    resp = await client.get(f"/ws/streams/{stream_id}?since=yesterday", headers=_upgrade(MSGPACK))
    assert resp.status == 400
    resp = await client.get(f"/ws/streams/{stream_id}")  # plain HTTP, no upgrade
    assert resp.status == 400
    assert "error" in await resp.json()


def _upgrade(protocol: str) -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Protocol": protocol,
    }


async def test_expired_token_may_read_but_no_longer_write(
    connect: Connect, make_token: MakeToken
) -> None:
    short = make_token(Role.VIEWER, sub="brief", name="Brief", ttl_s=1)
    socket = await connect(token=short)
    await asyncio.sleep(2.05)
    await socket.send({"type": "chat.send", "text": "late", "client_id": "late"})
    assert (await socket.expect("error"))["data"]["code"] == "token_expired"


@pytest.mark.parametrize("delivery_delay_s", [0.0, 0.03], ids=["prompt", "late-pubsub"])
async def test_viewers_joining_mid_conversation_miss_nothing_and_see_nothing_twice(
    connect: Connect,
    make_token: MakeToken,
    monkeypatch: pytest.MonkeyPatch,
    delivery_delay_s: float,
) -> None:
    if delivery_delay_s:
        # A loaded node reads its subscription late: a message may already be in the
        # hello's history (read on another connection) when its pub/sub copy arrives.
        enqueue = Hub._enqueue

        def late(hub: Hub, local: Any, payload: bytes) -> None:
            asyncio.get_running_loop().call_later(delivery_delay_s, enqueue, hub, local, payload)

        monkeypatch.setattr(Hub, "_enqueue", late)
    sender = await connect(token=make_token(Role.ADMIN, sub="admin", name="Admin"), binary=True)
    offsets: list[str] = []

    async def chatter() -> None:
        for n in range(80):
            await sender.send({"type": "chat.send", "text": f"m{n}", "client_id": f"m{n}"})
            offsets.append((await sender.expect("chat.ack"))["data"]["offset"])

    talking = asyncio.create_task(chatter())
    joined: list[Socket] = []
    for _ in range(6):
        await asyncio.sleep(0.01)
        joined.append(await connect(binary=len(joined) % 2 == 1))
    await talking

    def key(offset: str) -> tuple[int, int]:
        ms, seq = offset.split("-")
        return int(ms), int(seq)

    for viewer in joined:
        hello = viewer.seen[0]["data"]
        history = [m["id"] for m in hello["chat"]]
        live: list[str] = []
        while offsets[-1] not in history + live:
            live.append((await viewer.expect("chat.message"))["offset"])
        # Live events start right after the hello's offset, with no gap and no repeat...
        assert live == [o for o in offsets if key(o) > key(hello["offset"])]
        # ...and history plus live is one unbroken run of the conversation.
        start = offsets.index(history[0]) if history else offsets.index(live[0])
        assert history + live == offsets[start:]


async def test_no_subprotocol_means_json(client: Client, stream_id: str) -> None:
    ws = await client.ws_connect(f"/ws/streams/{stream_id}")
    assert ws.protocol is None
    message = await ws.receive(timeout=5)
    assert message.type is WSMsgType.TEXT
    assert msgspec.json.decode(message.data)["type"] == "hello"
    await ws.close()


async def test_a_burst_of_messages_from_many_sockets_is_all_posted(
    connect: Connect, make_token: MakeToken
) -> None:
    # More sockets than the Redis pool has connections, all posting at once.
    sockets = await asyncio.gather(
        *(connect(token=make_token(Role.VIEWER, sub=f"fan{n}", name="Fan")) for n in range(100))
    )
    await asyncio.gather(
        *(s.send({"type": "chat.send", "text": "wow", "client_id": "w"}) for s in sockets)
    )
    answers = await asyncio.gather(*(s.expect("chat.ack") for s in sockets))
    assert len({a["data"]["offset"] for a in answers}) == 100
    assert not [e for s in sockets for e in s.seen if e["type"] == "error"]


async def test_chat_closes_when_the_stream_ends(
    client: Client, connect: Connect, make_token: MakeToken, stream_id: str
) -> None:
    viewer = await connect(token=make_token(Role.VIEWER, sub="vi", name="Vi"))
    await viewer.send({"type": "chat.send", "text": "great show", "client_id": "1"})
    await viewer.expect("chat.message")
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana")
    assert (
        await client.post(f"/api/streams/{stream_id}/end", headers=bearer(seller))
    ).status == 200
    await viewer.expect("stream.state")
    await viewer.send({"type": "chat.send", "text": "hello?", "client_id": "2"})
    assert (await viewer.expect("error"))["data"]["code"] == "stream_ended"
    # history stays readable
    resp = await client.get(f"/api/streams/{stream_id}/chat")
    texts = [m["text"] for m in (await resp.json())["messages"]]
    assert texts == ["great show"]


async def test_a_frame_that_meets_a_redis_defect_fails_alone(
    client: Client,
    connect: Connect,
    make_token: MakeToken,
    stream_id: str,
    redis_client: Any,
    key_prefix: str,
) -> None:
    """An error Redis answers (here WRONGTYPE) is not "try again": the frame gets an
    ``internal`` error, and the socket keeps carrying the stream's events."""
    sender = await connect(token=make_token(Role.VIEWER, sub="alice", name="Alice"))
    await redis_client.rpush(f"{key_prefix}live:{{{stream_id}}}:chat", "not a stream")
    await sender.send({"type": "chat.send", "text": "hi", "client_id": "c1"})
    error = await sender.expect("error")
    assert error["data"]["code"] == "internal"
    sold = DealUpdatedData(id="d1", sku="SNK-42", left=0, sold=1, sold_out=True)
    await client.app[EVENTS].publish(DealUpdated(stream=stream_id, data=sold))
    assert (await sender.expect("deal.updated"))["data"]["sold"] == 1


async def test_a_frame_redis_cannot_serve_gets_the_rest_code(
    connect: Connect, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis down is ``redis_unavailable`` on the socket as over REST: send it again."""
    sender = await connect(token=make_token(Role.VIEWER, sub="alice", name="Alice"))

    async def unreachable(*args: object, **kwargs: object) -> None:
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(ChatHistory, "post", unreachable)
    await sender.send({"type": "chat.send", "text": "hi", "client_id": "c1"})
    error = await sender.expect("error")
    assert error["data"]["code"] == "redis_unavailable"
    assert ErrorCode.REDIS_UNAVAILABLE.retry
    monkeypatch.undo()
    await sender.send({"type": "chat.send", "text": "hi", "client_id": "c1"})
    assert (await sender.expect("chat.ack"))["data"]["client_id"] == "c1"
