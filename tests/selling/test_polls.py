"""Polls over real HTTP and Redis (every Redis of the run): one vote per person,
changeable until the poll closes, live totals, a final tally announced once, refused
actions that change nothing, and a poll that outlives the node that started it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from livecast.app import create_app
from livecast.auth import Role
from livecast.config import Settings
from livecast.selling.service import SELLING
from tests.conftest import AppServer, MakeToken, bearer
from tests.ingest.conftest import eventually
from tests.inventory.conftest import assert_error, listen
from tests.selling.conftest import Floor, buyer


async def _start(floor: Floor, **change: Any) -> Any:
    body: dict[str, Any] = {
        "question": "Which colour next?",
        "options": ["Red", "Green", "Blue"],
        "key": uuid.uuid4().hex,
    }
    body.update(change)
    return await floor.client.post(
        f"/api/streams/{floor.stream_id}/polls", json=body, headers=bearer(floor.seller)
    )


async def _vote(floor: Floor, token: str | None, poll_id: str, option: Any) -> Any:
    headers = bearer(token) if token else {}
    return await floor.client.put(
        f"/api/polls/{poll_id}/vote", json={"option": option}, headers=headers
    )


async def test_one_vote_each_changeable_until_the_host_closes(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    ana, bo, cy = (buyer(make_token, n) for n in ("ana", "bo", "cy"))
    async with listen(app, floor.stream_id) as log:
        resp = await _start(floor, key="start-1")
        assert resp.status == 201, await resp.text()
        poll = await resp.json()
        assert resp.headers["Location"] == f"/api/polls/{poll['id']}"
        assert (poll["state"], poll["counts"], poll["ends_at_ms"]) == ("running", [0, 0, 0], None)
        # The same key again is the same poll; another poll waits for this one.
        again = await (await _start(floor, key="start-1")).json()
        assert again["id"] == poll["id"]
        body = await assert_error(await _start(floor), 409, "poll_running")
        assert body["error"]["poll_id"] == poll["id"]
        await log.wait_for("poll.started")

        pid = poll["id"]
        first = await (await _vote(floor, ana, pid, 0)).json()
        assert (first["changed"], first["counts"], first["voters"]) == (True, [1, 0, 0], 1)
        await _vote(floor, bo, pid, 0)
        await _vote(floor, cy, pid, 2)
        # Ana changes her mind: the vote moves; the same option again changes nothing.
        moved = await (await _vote(floor, ana, pid, 1)).json()
        assert (moved["counts"], moved["voters"], moved["votes"]) == ([1, 1, 1], 3, 4)
        same = await (await _vote(floor, ana, pid, 1)).json()
        assert (same["changed"], same["counts"], same["votes"]) == (False, [1, 1, 1], 4)
        mine = await floor.client.get(f"/api/polls/{pid}/vote", headers=bearer(ana))
        assert (await mine.json())["option"] == 1
        # Anonymous viewers may not vote; options out of range change nothing.
        await assert_error(await _vote(floor, None, pid, 0), 401, "unauthorized")
        await assert_error(await _vote(floor, bo, pid, 3), 422, "invalid_option")
        await assert_error(await _vote(floor, bo, pid, 6), 422, "invalid_field")
        await assert_error(await _vote(floor, bo, pid, "1"), 422, "invalid_field")
        await assert_error(await _vote(floor, bo, "nope", 0), 404, "unknown_poll")
        # Live totals: coalesced, the last one has every vote.
        await eventually(lambda: any(t["votes"] == 4 for t in log.of("poll.totals")), within=5)
        assert log.of("poll.totals")[-1]["counts"] == [1, 1, 1]
        assert len(log.of("poll.totals")) < 5
        # Only the host closes it, once.
        close = f"/api/polls/{pid}/close"
        await assert_error(await floor.client.post(close, headers=bearer(ana)), 403, "forbidden")
        closed = await (await floor.client.post(close, headers=bearer(floor.seller))).json()
        assert (closed["state"], closed["counts"]) == ("closed", [1, 1, 1])
        await assert_error(
            await floor.client.post(close, headers=bearer(floor.seller)), 409, "poll_closed"
        )
        await log.wait_for("poll.closed")
        assert [c["counts"] for c in log.of("poll.closed")] == [[1, 1, 1]]
    await assert_error(await _vote(floor, bo, pid, 2), 409, "poll_closed")
    # The next poll may start now.
    assert (await _start(floor)).status == 201
    stats_url = f"/api/streams/{floor.stream_id}/poll-stats"
    await assert_error(await floor.client.get(stats_url, headers=bearer(ana)), 403, "forbidden")
    stats = await (await floor.client.get(stats_url, headers=bearer(floor.seller))).json()
    assert (stats["polls"], stats["running"], stats["closed"]) == (2, 1, 1)
    assert (stats["votes"], stats["voters"]) == (4, 3)
    metrics = await (await floor.client.get("/metrics")).text()
    assert 'livecast_polls_ended_total{state="closed"} 1.0' in metrics
    assert 'livecast_poll_votes_total{outcome="changed"} 1.0' in metrics


async def test_bad_polls_change_nothing(floor: Floor, make_token: MakeToken) -> None:
    bad: list[dict[str, Any]] = [
        {"options": ["Only one"]},
        {"options": ["a", "b", "c", "d", "e", "f", "g"]},
        {"options": ["Red", " red "]},
        {"options": ["Red", "Gr\u202eeen"]},
        {"options": ["Red", "   "]},
        {"question": "Line\nbreak"},
        {"question": "   "},
        {"question": "q" * 201},
        {"options": ["Red", "x" * 81]},
        {"duration_s": -1},
        {"key": "bad key"},
        {"extra": 1},
    ]
    for change in bad:
        await assert_error(await _start(floor, **change), 422, "invalid_field")
    viewer = buyer(make_token, "eve")
    resp = await floor.client.post(
        f"/api/streams/{floor.stream_id}/polls",
        json={"question": "q", "options": ["a", "b"], "key": "k"},
        headers=bearer(viewer),
    )
    await assert_error(resp, 403, "forbidden")
    current = await floor.client.get(f"/api/streams/{floor.stream_id}/poll")
    assert (await current.json())["poll"] is None


async def test_a_poll_closes_at_its_time_exactly_once(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    polls = app[SELLING].polls
    async with listen(app, floor.stream_id) as log:
        poll = await (await _start(floor, duration_s=1)).json()
        assert poll["ends_at_ms"] == poll["starts_at_ms"] + 1000
        await _vote(floor, buyer(make_token, "ana"), poll["id"], 2)
        # Many closers at once (the sweep and others): exactly one closes it.
        await asyncio.sleep(max(0, (poll["ends_at_ms"] - poll["server_ms"]) / 1000))
        closers = await asyncio.gather(*(polls.close_due(poll["id"]) for _ in range(8)))
        await eventually(lambda: bool(log.of("poll.closed")), within=5)
        await asyncio.sleep(0.2)
    assert sum(c is not None for c in closers) <= 1
    assert len(log.of("poll.closed")) == 1
    closed = log.of("poll.closed")[0]
    assert (closed["counts"], closed["closed_at_ms"]) == ([0, 0, 1], poll["ends_at_ms"])


async def test_the_hello_carries_the_running_poll(floor: Floor, make_token: MakeToken) -> None:
    poll = await (await _start(floor)).json()
    await _vote(floor, buyer(make_token, "dee"), poll["id"], 1)
    async with floor.client.ws_connect(f"/ws/streams/{floor.stream_id}") as ws:
        hello = await ws.receive_json()
    shown = hello["data"]["state"]["poll"]
    assert (shown["id"], shown["options"]) == (poll["id"], ["Red", "Green", "Blue"])


async def test_a_running_poll_survives_a_restart(settings: Settings, make_token: MakeToken) -> None:
    """Everything is in Redis: the node that started the poll stops; another one (same
    Redis) takes the next votes, and its host closes the poll with every vote counted."""
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana")
    ana, bo = buyer(make_token, "ana"), buyer(make_token, "bo")
    first = create_app(settings)
    async with TestClient(AppServer(first)) as client:
        floor = Floor(client=client, app=first, seller=seller, stream_id="")
        resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(seller))
        floor.stream_id = (await resp.json())["id"]
        await client.post(f"/api/streams/{floor.stream_id}/start", headers=bearer(seller))
        poll = await (await _start(floor)).json()
        assert (await _vote(floor, ana, poll["id"], 0)).status == 200

    second = create_app(settings)
    async with TestClient(AppServer(second)) as client:
        floor.client, floor.app = client, second
        assert (await _vote(floor, bo, poll["id"], 0)).status == 200
        assert (await _vote(floor, ana, poll["id"], 2)).status == 200
        await assert_error(await _start(floor), 409, "poll_running")
        resp = await client.post(f"/api/polls/{poll['id']}/close", headers=bearer(seller))
        closed = await resp.json()
        assert (closed["state"], closed["counts"], closed["voters"]) == ("closed", [1, 0, 1], 2)


async def test_cancel_announces_no_result(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    async with listen(app, floor.stream_id) as log:
        poll = await (await _start(floor)).json()
        await _vote(floor, buyer(make_token, "ana"), poll["id"], 0)
        url = f"/api/polls/{poll['id']}/cancel"
        cancelled = await (await floor.client.post(url, headers=bearer(floor.seller))).json()
        assert cancelled["state"] == "cancelled"
        await log.wait_for("poll.cancelled")
    assert not log.of("poll.closed")
    async with floor.client.ws_connect(f"/ws/streams/{floor.stream_id}") as ws:
        hello = await ws.receive_json()
    assert "poll" not in hello["data"]["state"]
