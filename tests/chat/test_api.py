"""The moderation REST API used by the control panel: roles and bad input."""

from __future__ import annotations

import msgspec
from aiohttp import web

from livecast.appkeys import REDIS
from livecast.auth import Identity, Role
from livecast.chat import CHAT
from tests.conftest import Client, MakeToken, bearer


async def test_bans_by_rest(client: Client, stream_id: str, host_token: str) -> None:
    base = f"/api/streams/{stream_id}/moderation"
    resp = await client.post(f"{base}/bans", json={"user": "troll"}, headers=bearer(host_token))
    assert resp.status == 201
    resp = await client.post(
        f"{base}/bans", json={"user": "loud", "seconds": 60}, headers=bearer(host_token)
    )
    assert resp.status == 201
    resp = await client.get(base, headers=bearer(host_token))
    body = await resp.json()
    assert [b["user"] for b in body["bans"]] == ["loud", "troll"]
    assert body["slow_mode_s"] == 0
    resp = await client.delete(f"{base}/bans/troll", headers=bearer(host_token))
    assert resp.status == 204
    resp = await client.delete(f"{base}/bans/troll", headers=bearer(host_token))
    assert resp.status == 404
    resp = await client.put(f"{base}/slow-mode", json={"seconds": 10}, headers=bearer(host_token))
    assert resp.status == 200
    resp = await client.get(base, headers=bearer(host_token))
    assert (await resp.json())["slow_mode_s"] == 10


async def test_rest_bad_input_and_roles(
    client: Client, stream_id: str, host_token: str, make_token: MakeToken
) -> None:
    base = f"/api/streams/{stream_id}/moderation"
    cases = [
        ({"user": "bad user!"}, 422),
        ({"user": "x", "seconds": 0}, 422),
        ({"user": "x", "seconds": "60"}, 422),
        ({"user": "x", "extra": 1}, 422),
        ({}, 422),
    ]
    for body, status in cases:
        resp = await client.post(f"{base}/bans", json=body, headers=bearer(host_token))
        assert resp.status == status, body
    resp = await client.post(
        f"{base}/bans",
        data=b"{nope",
        headers={**bearer(host_token), "Content-Type": "application/json"},
    )
    assert resp.status == 400
    resp = await client.put(f"{base}/slow-mode", json={"seconds": -1}, headers=bearer(host_token))
    assert resp.status == 422
    resp = await client.put(f"{base}/words", json={"words": [""]}, headers=bearer(host_token))
    assert resp.status == 422
    resp = await client.get(base, headers=bearer(host_token))
    assert (await resp.json()) == {"slow_mode_s": 0, "words": [], "bans": []}

    viewer = make_token(Role.VIEWER, sub="v", name="V")
    resp = await client.post(f"{base}/bans", json={"user": "x"}, headers=bearer(viewer))
    assert resp.status == 403
    resp = await client.post(f"{base}/bans", json={"user": "x"})
    assert resp.status == 401
    resp = await client.get("/api/streams/nope/moderation", headers=bearer(host_token))
    assert resp.status == 404


async def test_openapi_describes_the_live_event_routes(client: Client) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    for path in (
        "/ws/streams/{stream_id}",
        "/api/streams/{stream_id}/chat/{offset}",
        "/api/streams/{stream_id}/moderation/bans",
        "/api/streams/{stream_id}/moderation/slow-mode",
        "/api/streams/{stream_id}/stats",
    ):
        assert path in doc["paths"]
    assert {"ChatMessageData", "BanRequest", "ModerationSettings"} <= set(
        doc["components"]["schemas"]
    )


async def test_a_stored_message_that_no_longer_fits_is_left_out_of_the_history(
    client: Client, app: web.Application, stream_id: str
) -> None:
    history = app[CHAT].history
    author = Identity(sub="v1", name="Vera", role=Role.VIEWER)
    await history.post(stream_id, author, "hello", "c1", is_host=False)
    old_shape = msgspec.msgpack.encode({"text": "from another version"})
    await app[REDIS].xadd(history.keys(stream_id).chat, {"t": "chat.message", "d": old_shape})
    resp = await client.get(f"/api/streams/{stream_id}/chat")
    assert resp.status == 200
    assert [m["text"] for m in (await resp.json())["messages"]] == ["hello"]
