"""The streams REST API over real HTTP and real Redis: lifecycle, roles, and every class of
bad input getting the right 4xx and changing nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest

from livecast.appkeys import REDIS, STREAMS
from livecast.auth import Role
from livecast.streams.registry import StreamState
from tests.conftest import Client, MakeToken, bearer
from tests.ingest.conftest import eventually


async def _create(client: Client, token: str, **body: Any) -> dict[str, Any]:
    body.setdefault("title", "Autumn sneaker drop")
    resp = await client.post("/api/streams", json=body, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def _all_streams(client: Client) -> list[dict[str, Any]]:
    resp = await client.get("/api/streams")
    assert resp.status == 200
    streams: list[dict[str, Any]] = (await resp.json())["streams"]
    return streams


async def _assert_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body: dict[str, Any] = await resp.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body


async def test_seller_creates_and_everyone_reads(client: Client, make_token: MakeToken) -> None:
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana's Shoes")
    created = await _create(
        client,
        seller,
        description="New colours",
        scheduled_start="2026-12-01T18:00:00+01:00",
        featured_skus=["SNK-42-RED", "SNK-43-RED", "SNK-42-RED"],
    )
    assert created["state"] == "scheduled"
    assert created["seller_id"] == "seller-1"
    assert created["seller_name"] == "Ana's Shoes"
    assert created["scheduled_start"] == "2026-12-01T17:00:00.000Z"
    assert created["featured_skus"] == ["SNK-42-RED", "SNK-43-RED"]

    resp = await client.get(f"/api/streams/{created['id']}")
    assert resp.status == 200
    assert await resp.json() == created
    assert [s["id"] for s in await _all_streams(client)] == [created["id"]]


async def test_lifecycle_scheduled_live_ended(client: Client, make_token: MakeToken) -> None:
    seller = make_token(Role.SELLER)
    stream = await _create(client, seller)
    sid = stream["id"]

    resp = await client.post(f"/api/streams/{sid}/start", headers=bearer(seller))
    assert resp.status == 200
    live = await resp.json()
    assert live["state"] == "live"
    assert live["started_at"] is not None

    # live -> live is not a move
    await _assert_error(
        await client.post(f"/api/streams/{sid}/start", headers=bearer(seller)), 409, "illegal_state"
    )
    resp = await client.get("/api/streams", params={"state": "live"})
    assert [s["id"] for s in (await resp.json())["streams"]] == [sid]
    registry = client.app[STREAMS]
    assert await registry.ids(StreamState.LIVE) == [sid]  # every one, unpaged

    resp = await client.post(f"/api/streams/{sid}/end", headers=bearer(seller))
    ended = await resp.json()
    assert ended["state"] == "ended"
    assert ended["ended_at"] is not None

    # ended is final: no going live again, no second end, no edits
    for path in ("start", "end"):
        await _assert_error(
            await client.post(f"/api/streams/{sid}/{path}", headers=bearer(seller)),
            409,
            "illegal_state",
        )
    await _assert_error(
        await client.patch(f"/api/streams/{sid}", json={"title": "x"}, headers=bearer(seller)),
        409,
        "illegal_state",
    )
    resp = await client.get("/api/streams", params={"state": "live"})
    assert (await resp.json())["streams"] == []
    resp = await client.get("/api/streams", params={"state": "ended"})
    assert [s["id"] for s in (await resp.json())["streams"]] == [sid]
    assert await registry.ids(StreamState.LIVE) == []
    assert await registry.ids(StreamState.ENDED) == [sid]


async def test_the_registry_lists_streams_by_when_they_ended(
    client: Client, make_token: MakeToken
) -> None:
    """What the selling sweeps read: the streams that ended within a window of Redis
    time, in the order they ended; the window leaves out its start and keeps its end."""
    seller = make_token(Role.SELLER)
    registry = client.app[STREAMS]

    async def end_one() -> tuple[str, int]:
        sid = (await _create(client, seller))["id"]
        resp = await client.post(f"/api/streams/{sid}/end", headers=bearer(seller))
        assert resp.status == 200, await resp.text()
        ended_at = dt.datetime.fromisoformat((await resp.json())["ended_at"])
        return sid, round(ended_at.timestamp() * 1000)

    async def past(ms: int) -> bool:
        seconds, micros = await client.app[REDIS].time()
        return seconds * 1000 + micros // 1000 > ms

    first, first_ms = await end_one()
    await eventually(lambda: past(first_ms))
    second, second_ms = await end_one()
    assert first_ms < second_ms
    assert await registry.ended_between(first_ms - 1, second_ms) == [first, second]
    assert await registry.ended_between(first_ms - 1, first_ms) == [first]
    assert await registry.ended_between(first_ms, second_ms) == [second]
    assert await registry.ended_between(second_ms, second_ms + 60_000) == []


async def test_scheduled_stream_can_be_cancelled(client: Client, make_token: MakeToken) -> None:
    seller = make_token(Role.SELLER)
    sid = (await _create(client, seller))["id"]
    resp = await client.post(f"/api/streams/{sid}/end", headers=bearer(seller))
    assert (await resp.json())["state"] == "ended"
    await _assert_error(
        await client.post(f"/api/streams/{sid}/start", headers=bearer(seller)), 409, "illegal_state"
    )


async def test_concurrent_ends_have_one_winner(client: Client, make_token: MakeToken) -> None:
    seller = make_token(Role.SELLER)
    sid = (await _create(client, seller))["id"]
    await client.post(f"/api/streams/{sid}/start", headers=bearer(seller))
    responses = await asyncio.gather(
        *(client.post(f"/api/streams/{sid}/end", headers=bearer(seller)) for _ in range(10))
    )
    assert sorted(r.status for r in responses) == [200] + [409] * 9


async def test_patch_edits_fields(client: Client, make_token: MakeToken) -> None:
    seller = make_token(Role.SELLER)
    sid = (await _create(client, seller, scheduled_start="2026-12-01T18:00:00Z"))["id"]
    later = await _create(client, seller, title="Later", scheduled_start="2026-12-02T18:00:00Z")
    resp = await client.patch(
        f"/api/streams/{sid}",
        json={"title": "Winter boots", "scheduled_start": "2026-12-03T18:00:00Z", "public": False},
        headers=bearer(seller),
    )
    assert resp.status == 200, await resp.text()
    patched = await resp.json()
    assert patched["title"] == "Winter boots"
    assert patched["public"] is False
    assert patched["scheduled_start"] == "2026-12-03T18:00:00.000Z"
    # the scheduled list is ordered by start time, and hides other sellers' private streams
    resp = await client.get("/api/streams", params={"state": "scheduled"}, headers=bearer(seller))
    assert [s["id"] for s in (await resp.json())["streams"]] == [later["id"], sid]
    resp = await client.get("/api/streams", params={"state": "scheduled"})
    assert [s["id"] for s in (await resp.json())["streams"]] == [later["id"]]


async def test_roles_are_enforced(client: Client, make_token: MakeToken) -> None:
    owner = make_token(Role.SELLER, sub="owner")
    sid = (await _create(client, owner))["id"]

    # creating needs a seller or admin
    await _assert_error(await client.post("/api/streams", json={"title": "x"}), 401, "unauthorized")
    for role in (Role.VIEWER, Role.HOST):
        resp = await client.post(
            "/api/streams", json={"title": "x"}, headers=bearer(make_token(role, streams={sid}))
        )
        await _assert_error(resp, 403, "forbidden")
    resp = await client.post(
        "/api/streams", json={"title": "x"}, headers=bearer(make_token(Role.ADMIN))
    )
    assert resp.status == 201

    # managing needs the owner, a granted host, or an admin
    outsiders = [
        make_token(Role.SELLER, sub="other-seller"),
        make_token(Role.HOST, streams={"another-stream"}),
        make_token(Role.VIEWER, streams={sid}),
    ]
    for token in outsiders:
        await _assert_error(
            await client.post(f"/api/streams/{sid}/start", headers=bearer(token)), 403, "forbidden"
        )
        await _assert_error(
            await client.patch(f"/api/streams/{sid}", json={"title": "x"}, headers=bearer(token)),
            403,
        )
    await _assert_error(await client.post(f"/api/streams/{sid}/start"), 401)
    assert (await client.get(f"/api/streams/{sid}")).status == 200
    assert (await (await client.get(f"/api/streams/{sid}")).json())["state"] == "scheduled"

    host = make_token(Role.HOST, streams={sid})
    resp = await client.post(f"/api/streams/{sid}/start", headers=bearer(host))
    assert resp.status == 200
    admin = make_token(Role.ADMIN, streams={"*"})
    assert (await client.post(f"/api/streams/{sid}/end", headers=bearer(admin))).status == 200


async def test_bad_tokens_are_401(client: Client, make_token: MakeToken) -> None:
    expired = make_token(Role.SELLER, ttl_s=1)
    await asyncio.sleep(2.1)
    resp = await client.post("/api/streams", json={"title": "x"}, headers=bearer(expired))
    await _assert_error(resp, 401, "token_expired")

    good = make_token(Role.SELLER)
    header, payload, signature = good.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    resp = await client.post("/api/streams", json={"title": "x"}, headers=bearer(forged))
    await _assert_error(resp, 401, "token_invalid")

    for value in ("Bearer", "Basic abc", "Bearer not-a-jwt", "token"):
        resp = await client.get("/api/streams", headers={"Authorization": value})
        await _assert_error(resp, 401, "token_invalid")
    assert await _all_streams(client) == []


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "malformed_json"),
        (b"", "application/json", 400, "malformed_json"),
        (b'["a list"]', "application/json", 422, "invalid_field"),
        (b'{"title": 5}', "application/json", 422, "invalid_field"),
        (b'{"description": "no title"}', "application/json", 422, "invalid_field"),
        (b'{"title": "x", "colour": "red"}', "application/json", 422, "invalid_field"),
        (b'{"title": ""}', "application/json", 422, "invalid_field"),
        (b'{"title": "   "}', "application/json", 422, "invalid_field"),
        (b'{"title": "x\\u0000"}', "application/json", 422, "invalid_field"),
        (b'{"title": "x\\u202e"}', "application/json", 422, "invalid_field"),
        (b'{"title": "two\\nlines"}', "application/json", 422, "invalid_field"),
        (b'{"title": "x", "description": "\\u2066x"}', "application/json", 422, "invalid_field"),
        (
            b'{"title": "x", "featured_skus": ["bad sku!"]}',
            "application/json",
            422,
            "invalid_field",
        ),
        (
            b'{"title": "x", "scheduled_start": "tomorrow"}',
            "application/json",
            422,
            "invalid_field",
        ),
        (
            b'{"title": "x", "scheduled_start": "2026-12-01T18:00:00"}',
            "application/json",
            422,
            "invalid_field",
        ),
        (b'{"title": "x", "public": "yes"}', "application/json", 422, "invalid_field"),
        (b'{"title": "x"}', "text/plain", 415, "unsupported_media_type"),
    ],
)
async def test_bad_create_bodies_change_nothing(
    client: Client, make_token: MakeToken, body: bytes, content_type: str, status: int, code: str
) -> None:
    headers = {**bearer(make_token(Role.SELLER)), "Content-Type": content_type}
    resp = await client.post("/api/streams", data=body, headers=headers)
    await _assert_error(resp, status, code)
    assert await _all_streams(client) == []


async def test_oversized_body_is_413(client: Client, make_token: MakeToken) -> None:
    seller = make_token(Role.SELLER)
    headers = {**bearer(seller), "Content-Type": "application/json"}
    huge = b'{"title": "x", "description": "' + b"a" * 2_000_000 + b'"}'
    # announced by Content-Length
    resp = await client.post("/api/streams", data=io.BytesIO(huge), headers=headers)
    await _assert_error(resp, 413, "payload_too_large")

    # and sent chunked, with no length announced
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    resp = await client.post("/api/streams", data=chunks(), headers=headers)
    await _assert_error(resp, 413, "payload_too_large")
    assert await _all_streams(client) == []


async def test_bad_patches_change_nothing(client: Client, make_token: MakeToken) -> None:
    seller = make_token(Role.SELLER)
    stream = await _create(client, seller, title="Original")
    sid = stream["id"]
    for body, status in [
        ({}, 422),
        ({"title": None}, 422),
        ({"state": "live"}, 422),
        ({"scheduled_start": None}, 422),
        ({"featured_skus": "SKU-1"}, 422),
        ({"title": "Bad \u202e"}, 422),
        ({"description": "nul \x00"}, 422),
    ]:
        resp = await client.patch(f"/api/streams/{sid}", json=body, headers=bearer(seller))
        await _assert_error(resp, status)
    assert await (await client.get(f"/api/streams/{sid}")).json() == stream


async def test_unknown_ids_and_bad_queries(client: Client, make_token: MakeToken) -> None:
    seller = make_token(Role.SELLER)
    await _assert_error(await client.get("/api/streams/nope"), 404, "stream_not_found")
    await _assert_error(await client.get("/api/streams/bad%20id!"), 404, "stream_not_found")
    await _assert_error(
        await client.post("/api/streams/nope/end", headers=bearer(seller)), 404, "stream_not_found"
    )
    await _assert_error(
        await client.patch("/api/streams/nope", json={"title": "x"}, headers=bearer(seller)), 404
    )
    await _assert_error(
        await client.get("/api/streams", params={"state": "paused"}), 400, "invalid_query"
    )
    await _assert_error(
        await client.get("/api/streams", params={"limit": "0"}), 400, "invalid_query"
    )
    await _assert_error(await client.get("/api/nothing-here"), 404, "not_found")
    await _assert_error(await client.delete("/api/streams"), 405, "method_not_allowed")


async def test_openapi_describes_the_routes(client: Client) -> None:
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/streams", "/api/streams/{stream_id}", "/api/streams/{stream_id}/end"):
        assert path in doc["paths"]
    assert {"Stream", "CreateStream", "PatchStream", "Error"} <= set(doc["components"]["schemas"])
