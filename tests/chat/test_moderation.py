"""Moderation enforced on the server, across nodes: bans and time-outs, deletes, slow
mode, word filters, rate limits and links."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from livecast.app import create_app
from livecast.auth import Role
from livecast.config import Settings
from tests.chat.conftest import Connect, Socket, _connect
from tests.conftest import AiohttpClient, Client, MakeToken, bearer


async def _send(socket: Socket, text: str, client_id: str) -> dict[str, Any]:
    """Send a chat message; the ack or the error that answered it."""
    await socket.send({"type": "chat.send", "text": text, "client_id": client_id})
    while True:
        event = await socket.event()
        if event["type"] in ("chat.ack", "error"):
            return event


async def test_ban_on_node_a_holds_on_node_b_and_across_reconnects(
    connect: Connect, connect_b: Connect, make_token: MakeToken, host_token: str
) -> None:
    troll = make_token(Role.VIEWER, sub="troll", name="Troll")
    host = await connect(token=host_token)
    on_b = await connect_b(token=troll)
    assert (await _send(on_b, "first", "t1"))["type"] == "chat.ack"

    await host.send({"type": "mod.ban", "user": "troll"})
    assert (await host.expect("mod.ack"))["data"] == {"user": "troll", "until_ms": None}
    refused = await _send(on_b, "second", "t2")
    assert refused["type"] == "error"
    assert refused["data"]["code"] == "banned"

    await on_b.ws.close()
    again = await connect_b(token=troll)
    assert (await _send(again, "third", "t3"))["data"]["code"] == "banned"
    # Banned users still watch.
    await host.send({"type": "chat.send", "text": "hosts talk", "client_id": "h1"})
    assert (await again.expect("chat.message"))["data"]["text"] == "hosts talk"

    await host.send({"type": "mod.unban", "user": "troll"})
    await host.expect("mod.ack")
    assert (await _send(again, "sorry", "t4"))["type"] == "chat.ack"


async def test_time_out_ends_by_itself(
    connect: Connect, make_token: MakeToken, host_token: str
) -> None:
    user = await connect(token=make_token(Role.VIEWER, sub="loud", name="Loud"))
    host = await connect(token=host_token)
    await host.send({"type": "mod.ban", "user": "loud", "seconds": 1})
    assert (await host.expect("mod.ack"))["data"]["until_ms"] > 0
    refused = await _send(user, "hey", "a")
    assert refused["data"]["code"] == "timed_out"
    assert 0 < refused["data"]["retry_after_ms"] <= 1000
    await asyncio.sleep(1.1)
    assert (await _send(user, "hey", "b"))["type"] == "chat.ack"


async def test_host_deletes_a_message_for_everyone_and_from_history(
    client: Client, connect: Connect, connect_b: Connect, make_token: MakeToken, host_token: str
) -> None:
    author = await connect(token=make_token(Role.VIEWER, sub="a", name="A"))
    viewer_b = await connect_b(binary=True)
    ack = await _send(author, "oops", "o")
    offset = ack["data"]["offset"]
    await viewer_b.expect("chat.message")

    resp = await client.delete(f"/api/streams/{author.seen[0]['stream']}/chat/{offset}")
    assert resp.status == 401
    viewer_token = make_token(Role.VIEWER, sub="v", name="V")
    stream_id = author.seen[0]["stream"]
    resp = await client.delete(
        f"/api/streams/{stream_id}/chat/{offset}", headers=bearer(viewer_token)
    )
    assert resp.status == 403

    resp = await client.delete(
        f"/api/streams/{stream_id}/chat/{offset}", headers=bearer(host_token)
    )
    assert resp.status == 200, await resp.text()
    for socket in (author, viewer_b):
        assert (await socket.expect("chat.deleted"))["data"] == {"id": offset}
    fresh = await connect()
    assert fresh.seen[0]["data"]["chat"] == []
    resp = await client.get(f"/api/streams/{stream_id}/chat")
    assert (await resp.json())["messages"] == []

    # Deleting again, or deleting something that is not a message, is a 404.
    resp = await client.delete(
        f"/api/streams/{stream_id}/chat/{offset}", headers=bearer(host_token)
    )
    assert resp.status == 404
    resp = await client.delete(
        f"/api/streams/{stream_id}/chat/not-an-offset", headers=bearer(host_token)
    )
    assert resp.status == 404
    host = await connect(token=host_token)
    await host.send({"type": "chat.delete", "offset": "1-0"})
    assert (await host.expect("error"))["data"]["code"] == "message_not_found"


async def test_slow_mode(connect: Connect, make_token: MakeToken, host_token: str) -> None:
    host = await connect(token=host_token)
    user = await connect(token=make_token(Role.VIEWER, sub="u", name="U"))
    await host.send({"type": "mod.slow", "seconds": 30})
    await host.expect("mod.ack")
    assert (await user.expect("chat.settings"))["data"] == {"slow_mode_s": 30}
    assert (await connect()).seen[0]["data"]["slow_mode_s"] == 30
    assert (await _send(user, "one", "1"))["type"] == "chat.ack"
    refused = await _send(user, "two", "2")
    assert refused["data"]["code"] == "slow_mode"
    assert refused["data"]["retry_after_ms"] > 25_000
    # Hosts are not slowed down.
    assert (await _send(host, "a", "h1"))["type"] == "chat.ack"
    assert (await _send(host, "b", "h2"))["type"] == "chat.ack"
    await host.send({"type": "mod.slow", "seconds": 0})
    await host.expect("mod.ack")
    # Slow mode off: nobody waits any more.
    assert (await _send(user, "two", "3"))["type"] == "chat.ack"
    other = await connect(token=make_token(Role.VIEWER, sub="o", name="O"))
    assert (await _send(other, "x", "1"))["type"] == "chat.ack"
    assert (await _send(other, "y", "2"))["type"] == "chat.ack"


async def test_word_filter_from_config_and_per_stream(
    aiohttp_client: AiohttpClient, settings: Settings, make_token: MakeToken, stream_id: str
) -> None:
    configured = dataclasses.replace(
        settings, chat=dataclasses.replace(settings.chat, banned_words=("scam",))
    )
    node = await aiohttp_client(create_app(configured))
    host_token = make_token(Role.HOST, sub="h", name="H", streams={stream_id})
    user = await _connect(node, stream_id, token=make_token(Role.VIEWER, sub="u", name="U"))
    assert (await _send(user, "total SCAM!", "1"))["data"]["code"] == "word_filtered"
    assert (await _send(user, "scampi for dinner", "2"))["type"] == "chat.ack"

    resp = await node.put(
        f"/api/streams/{stream_id}/moderation/words",
        json={"words": ["Knock-off", "fake"]},
        headers=bearer(host_token),
    )
    assert resp.status == 200
    assert (await resp.json())["words"] == ["fake", "knock off"]
    assert (await _send(user, "a KNOCK OFF bag", "3"))["data"]["code"] == "word_filtered"
    assert (await _send(user, "is it fake?", "4"))["data"]["code"] == "word_filtered"
    # A zero-width joiner, which the text keeps, does not hide a word from the filter.
    assert (await _send(user, "is it fa\u200dke?", "4j"))["data"]["code"] == "word_filtered"
    assert (await _send(user, "total s\u200dcam", "1j"))["data"]["code"] == "word_filtered"
    assert (await _send(user, "looks real", "5"))["type"] == "chat.ack"
    resp = await node.get(f"/api/streams/{stream_id}/moderation", headers=bearer(host_token))
    assert (await resp.json())["words"] == ["fake", "knock off"]


async def test_rate_limit_with_hosts_exempt(
    connect: Connect, make_token: MakeToken, host_token: str
) -> None:
    user = await connect(token=make_token(Role.VIEWER, sub="fast", name="Fast"))
    for n in range(20):
        assert (await _send(user, f"m{n}", f"c{n}"))["type"] == "chat.ack"
    refused = await _send(user, "one more", "c20")
    assert refused["data"]["code"] == "rate_limited"
    assert 0 < refused["data"]["retry_after_ms"] <= 30_000
    host = await connect(token=host_token)
    for n in range(25):
        assert (await _send(host, f"h{n}", f"h{n}"))["type"] == "chat.ack"


async def test_only_hosts_post_links(
    connect: Connect, make_token: MakeToken, host_token: str
) -> None:
    user = await connect(token=make_token(Role.VIEWER, sub="u", name="U"))
    host = await connect(token=host_token)
    for text in (
        "http://x.y",
        "www.deals.test",
        "buy at cheap.shop today",
        "cheap\u200d.shop",
        "go to evil.dev",
        "see fake.example/offer",
    ):
        assert (await _send(user, text, "l" + str(len(text))))["data"][
            "code"
        ] == "links_not_allowed"
    assert (await _send(host, "shop at https://example.com/sale", "h"))["type"] == "chat.ack"
    # Prices and a missing space after a full stop are not links.
    for text in ("size 9.5 for 49.99", "great.love it"):
        assert (await _send(user, text, f"p{len(text)}"))["type"] == "chat.ack"
    # Plain text end to end: markup is not interpreted or altered; emoji sequences and
    # emoji newer than the server's Unicode tables survive; control characters and
    # invisible bidi overrides do not.
    for text, shown in [
        ("<script>alert(1)</script> & co\x00\x07", "<script>alert(1)</script> & co"),
        (
            "love it \U0001f469\u200d\U0001f4bb\U0001fa77\u202e!",
            "love it \U0001f469\u200d\U0001f4bb\U0001fa77!",
        ),
    ]:
        ack = await _send(user, text, str(len(text)))
        assert ack["type"] == "chat.ack", ack
        message = await host.expect_data("chat.message", id=ack["data"]["offset"])
        assert message["data"]["text"] == shown


async def test_moderation_frames_need_a_host(connect: Connect, make_token: MakeToken) -> None:
    seller_of_other = make_token(Role.SELLER, sub="other-seller", name="Other")
    user = await connect(token=seller_of_other)
    for frame in (
        {"type": "mod.ban", "user": "x"},
        {"type": "mod.unban", "user": "x"},
        {"type": "mod.words", "words": ["a"]},
        {"type": "chat.delete", "offset": "1-0"},
    ):
        await user.send(frame)
        assert (await user.expect("error"))["data"]["code"] == "forbidden"
