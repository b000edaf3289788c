"""Giveaways over real HTTP and Redis (every Redis of the run): the prize unit leaves
stock at the start, one entry per person, who may enter, a draw anyone can check from
the revealed seed, a zero-priced order for the winner, exactly one draw, and a giveaway
that outlives the node that started it."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from livecast.app import create_app
from livecast.auth import Role
from livecast.config import Settings
from livecast.selling.giveaways import winner_index
from livecast.selling.service import SELLING
from tests.conftest import AppServer, MakeToken, bearer
from tests.ingest.conftest import eventually
from tests.inventory.conftest import assert_error, listen
from tests.selling.conftest import Floor, buyer


async def _start(floor: Floor, sku: str, **change: Any) -> Any:
    body: dict[str, Any] = {"sku": sku}
    body.update(change)
    return await floor.client.post(
        f"/api/streams/{floor.stream_id}/giveaways", json=body, headers=bearer(floor.seller)
    )


async def _enter(floor: Floor, token: str | None, giveaway_id: str) -> Any:
    headers = bearer(token) if token else {}
    return await floor.client.put(f"/api/giveaways/{giveaway_id}/entry", headers=headers)


async def _orders(floor: Floor, token: str) -> list[dict[str, Any]]:
    resp = await floor.client.get("/api/orders", headers=bearer(token))
    orders: list[dict[str, Any]] = (await resp.json())["orders"]
    return orders


def _sha1_check(seed: str, entrants: list[str]) -> int:
    """The README's recipe, written out independently of the server's code."""
    text = seed + "\n" + "\n".join(entrants)
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) % len(entrants)


async def test_the_draw_is_checkable_and_the_winner_gets_a_free_order(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("MUG-1", stock=3, price=1500)
    tag = uuid.uuid4().hex[:6]
    tokens = {
        f"{n}-{tag}": make_token(Role.VIEWER, sub=f"{n}-{tag}", name=n.title())
        for n in ("ana", "bo", "cy", "dee")
    }
    people = list(tokens.values())
    async with listen(app, floor.stream_id) as log:
        resp = await _start(floor, "MUG-1")
        assert resp.status == 201, await resp.text()
        giveaway = await resp.json()
        gid = giveaway["id"]
        assert (giveaway["state"], giveaway["seed"], giveaway["winner_id"]) == (
            "running",
            None,
            None,
        )
        assert len(giveaway["seed_sha256"]) == 64
        # The prize is out of free stock from now on.
        assert await floor.stock("MUG-1") == (2, 1, 0, 0)
        await log.wait_for("giveaway.started")
        assert log.of("giveaway.started")[0]["seed_sha256"] == giveaway["seed_sha256"]
        await assert_error(await _start(floor, "MUG-1"), 409, "giveaway_running")

        for token in people:
            entered = await (await _enter(floor, token, gid)).json()
            assert (entered["entered"], entered["replayed"]) == (True, False)
        again = await (await _enter(floor, people[0], gid)).json()
        assert (again["replayed"], again["entries"]) == (True, 4)
        await assert_error(await _enter(floor, floor.seller, gid), 403, "own_giveaway")
        await assert_error(await _enter(floor, None, gid), 401, "unauthorized")
        await assert_error(await _enter(floor, people[0], "nope"), 404, "unknown_giveaway")
        # Nothing to check before the draw: the seed and the list stay hidden.
        audit = await (await floor.client.get(f"/api/giveaways/{gid}/audit")).json()
        assert (audit["seed"], audit["entrants"]) == (None, None)
        await eventually(
            lambda: any(e["entries"] == 4 for e in log.of("giveaway.entries")), within=5
        )

        draw = f"/api/giveaways/{gid}/draw"
        await assert_error(
            await floor.client.post(draw, headers=bearer(people[1])), 403, "forbidden"
        )
        drawn = await (await floor.client.post(draw, headers=bearer(floor.seller))).json()
        assert drawn["state"] == "drawn"
        await assert_error(
            await floor.client.post(draw, headers=bearer(floor.seller)), 409, "giveaway_ended"
        )
        await log.wait_for("giveaway.drawn")
        assert len(log.of("giveaway.drawn")) == 1
    await assert_error(await _enter(floor, buyer(make_token, "eve"), gid), 409, "giveaway_ended")

    # Anyone checks the draw: the seed matches the commitment, the winner follows.
    audit = await (await floor.client.get(f"/api/giveaways/{gid}/audit")).json()
    assert hashlib.sha256(audit["seed"].encode()).hexdigest() == giveaway["seed_sha256"]
    assert len(audit["entrants"]) == 4
    index = _sha1_check(audit["seed"], audit["entrants"])
    assert index == winner_index(audit["seed"], audit["entrants"]) == audit["winner_index"]
    assert audit["winner_id"] == audit["entrants"][index] == drawn["winner_id"]

    # The winner's zero-priced order, in the ledger and the stream's sales.
    orders = await _orders(floor, tokens[drawn["winner_id"]])
    assert [(o["id"], o["total"]["amount_minor"], o["units"]) for o in orders] == [
        (drawn["order_id"], 0, 1)
    ]
    assert orders[0]["payment_provider"] == "prize"
    assert orders[0]["lines"][0]["sku"] == "MUG-1"
    assert await floor.stock("MUG-1") == (2, 0, 0, 1)
    sales = await floor.client.get(
        f"/api/streams/{floor.stream_id}/stats", headers=bearer(floor.seller)
    )
    assert ((await sales.json())["orders"], (await sales.json())["units_sold"]) == (1, 1)
    # The winner is named in the chat too.
    history = await (await floor.client.get(f"/api/streams/{floor.stream_id}/chat")).json()
    assert any(drawn["winner_name"] in m["text"] for m in history["messages"])

    stats_url = f"/api/streams/{floor.stream_id}/giveaway-stats"
    stats = await (await floor.client.get(stats_url, headers=bearer(floor.seller))).json()
    assert (stats["giveaways"], stats["drawn"], stats["entries"], stats["entrants"]) == (
        1,
        1,
        4,
        4,
    )
    assert (stats["winners"], stats["prize_units"]) == (1, 1)
    metrics = await (await floor.client.get("/metrics")).text()
    assert "livecast_giveaway_entries_total 4.0" in metrics
    assert "livecast_giveaway_prize_units_total 1.0" in metrics


async def test_followers_and_buyers_only(floor: Floor, make_token: MakeToken) -> None:
    await floor.product("CAP-1", stock=5, price=900)
    fan = buyer(make_token, "fan")
    giveaway = await (await _start(floor, "CAP-1", eligibility="followers")).json()
    await assert_error(await _enter(floor, fan, giveaway["id"]), 403, "not_eligible")
    follow = "/api/sellers/seller-1/follow"
    following = await (await floor.client.put(follow, headers=bearer(fan))).json()
    assert (following["following"], following["followers"]) == (True, 1)
    assert (await _enter(floor, fan, giveaway["id"])).status == 200
    # Unfollowing later does not take the entry back; a bad seller id changes nothing.
    gone = await (await floor.client.delete(follow, headers=bearer(fan))).json()
    assert (gone["following"], gone["followers"]) == (False, 0)
    await assert_error(await floor.client.put(follow), 401, "unauthorized")
    too_long = "/api/sellers/" + "s" * 129 + "/follow"
    await assert_error(await floor.client.put(too_long, headers=bearer(fan)), 422, "invalid_field")
    assert (await (await _enter(floor, fan, giveaway["id"])).json())["replayed"] is True
    url = f"/api/giveaways/{giveaway['id']}/cancel"
    cancelled = await (await floor.client.post(url, headers=bearer(floor.seller))).json()
    assert cancelled["state"] == "cancelled"
    assert await floor.stock("CAP-1") == (5, 0, 0, 0)

    giveaway = await (await _start(floor, "CAP-1", eligibility="buyers")).json()
    await assert_error(await _enter(floor, fan, giveaway["id"]), 403, "not_eligible")
    resp = await floor.client.post(
        "/api/cart/items", json={"stream_id": floor.stream_id, "sku": "CAP-1"}, headers=bearer(fan)
    )
    assert resp.status == 201, await resp.text()
    resp = await floor.client.post(
        "/api/checkout", headers={**bearer(fan), "Idempotency-Key": "k1"}
    )
    assert resp.status == 201, await resp.text()
    assert (await _enter(floor, fan, giveaway["id"])).status == 200

    bad: list[dict[str, Any]] = [
        {"eligibility": "friends"},
        {"duration_s": -1},
        {"duration_s": 86_401},
        {"extra": True},
    ]
    for change in bad:
        await assert_error(await _start(floor, "CAP-1", **change), 422, "invalid_field")
    await assert_error(await _start(floor, ""), 422, "invalid_field")
    await assert_error(await _start(floor, "NOPE-1"), 404, "unknown_sku")


async def test_nobody_entered_the_unit_returns_at_the_deadline_once(
    floor: Floor, app: web.Application
) -> None:
    await floor.product("PEN-1", stock=1)
    giveaways = app[SELLING].giveaways
    async with listen(app, floor.stream_id) as log:
        giveaway = await (await _start(floor, "PEN-1", duration_s=1)).json()
        assert await floor.stock("PEN-1") == (0, 1, 0, 0)
        await asyncio.sleep(max(0, (giveaway["ends_at_ms"] - giveaway["server_ms"]) / 1000))
        drawers = await asyncio.gather(*(giveaways.draw_due(giveaway["id"]) for _ in range(6)))
        await eventually(lambda: bool(log.of("giveaway.drawn")), within=5)
        await asyncio.sleep(0.2)
    assert sum(d is not None for d in drawers) <= 1
    assert [d["state"] for d in log.of("giveaway.drawn")] == ["no_entries"]
    assert await floor.stock("PEN-1") == (1, 0, 0, 0)


# Waits out a real deadline: the scripts' keys are proved to share a slot on the
# cluster-mode Redis by the other tests here, so once is enough.
@pytest.mark.parametrize("redis_url", ["embedded"], indirect=True)
async def test_a_running_giveaway_survives_a_restart(
    settings: Settings, make_token: MakeToken
) -> None:
    """The node that started it stops; another (same Redis) takes entries and draws it at
    its deadline; the winner has the order."""
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana")
    ana = buyer(make_token, "ana")
    first = create_app(settings)
    async with TestClient(AppServer(first)) as client:
        floor = Floor(client=client, app=first, seller=seller, stream_id="")
        resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(seller))
        floor.stream_id = (await resp.json())["id"]
        await client.post(f"/api/streams/{floor.stream_id}/start", headers=bearer(seller))
        await floor.product("BAG-1", stock=1)
        # long enough for a node to stop and another to start on a busy machine
        giveaway = await (await _start(floor, "BAG-1", duration_s=4)).json()

    second = create_app(settings)
    async with TestClient(AppServer(second)) as client:
        floor.client, floor.app = client, second
        assert (await _enter(floor, ana, giveaway["id"])).status == 200

        async def drawn() -> bool:
            data = await (await client.get(f"/api/giveaways/{giveaway['id']}")).json()
            return bool(data["order_id"])

        await eventually(drawn, within=10)
        orders = await _orders(floor, ana)
        assert [o["total"]["amount_minor"] for o in orders] == [0]
        assert await floor.stock("BAG-1") == (0, 0, 0, 1)
