"""Every selling format ends with its stream, exactly once, on the node that ends it or,
if that node stops first, on any node's sweep."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.cart.payments import PaymentState
from livecast.inventory.money import Money
from tests.conftest import MakeToken, bearer
from tests.ingest.conftest import eventually
from tests.inventory.conftest import listen
from tests.selling.conftest import Floor, buyer
from tests.selling.test_groupbuy_api import join, orders_of, payment
from tests.selling.test_groupbuy_api import start as start_groupbuy
from tests.selling.test_knockdown_api import buy
from tests.selling.test_knockdown_api import start as start_knockdown


async def _end_stream(floor: Floor) -> None:
    url = f"/api/streams/{floor.stream_id}/end"
    resp = await floor.client.post(url, headers=bearer(floor.seller))
    assert resp.status == 200, await resp.text()


async def _post(floor: Floor, path: str, body: dict[str, Any], token: str) -> Any:
    resp = await floor.client.post(path, json=body, headers=bearer(token))
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()


async def _start_poll(floor: Floor, **change: Any) -> Any:
    body = {"question": "Which colour?", "options": ["Red", "Blue"], "key": uuid.uuid4().hex}
    return await _post(floor, f"/api/streams/{floor.stream_id}/polls", body | change, floor.seller)


async def test_a_poll_closes_with_its_stream(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    poll = await _start_poll(floor)  # no end time: only the host or the stream ends it
    ana = buyer(make_token, "ana")
    vote = await floor.client.put(
        f"/api/polls/{poll['id']}/vote", json={"option": 1}, headers=bearer(ana)
    )
    assert vote.status == 200, await vote.text()
    async with listen(app, floor.stream_id) as log:
        await _end_stream(floor)
        await log.wait_for("poll.closed")
        await asyncio.sleep(0.2)
    assert [(c["state"], c["counts"]) for c in log.of("poll.closed")] == [("closed", [0, 1])]
    data = await (await floor.client.get(f"/api/polls/{poll['id']}")).json()
    assert (data["state"], data["counts"]) == ("closed", [0, 1])


async def test_a_giveaway_is_drawn_with_its_stream(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("PEN-1", stock=2)
    url = f"/api/streams/{floor.stream_id}/giveaways"
    giveaway = await _post(floor, url, {"sku": "PEN-1"}, floor.seller)  # the host draws
    ana = buyer(make_token, "ana")
    entry = await floor.client.put(f"/api/giveaways/{giveaway['id']}/entry", headers=bearer(ana))
    assert entry.status in (200, 201), await entry.text()
    async with listen(app, floor.stream_id) as log:
        await _end_stream(floor)
        await log.wait_for("giveaway.drawn")
        await asyncio.sleep(0.2)
    [drawn] = log.of("giveaway.drawn")
    assert (drawn["state"], drawn["winner_name"]) == ("drawn", "Ana")
    orders = (await (await floor.client.get("/api/orders", headers=bearer(ana))).json())["orders"]
    assert [o["total"]["amount_minor"] for o in orders] == [0]
    assert await floor.stock("PEN-1") == (1, 0, 0, 1)


async def test_a_giveaway_nobody_entered_returns_its_unit_with_the_stream(
    floor: Floor, app: web.Application
) -> None:
    await floor.product("CAP-1", stock=1)
    url = f"/api/streams/{floor.stream_id}/giveaways"
    await _post(floor, url, {"sku": "CAP-1"}, floor.seller)
    assert await floor.stock("CAP-1") == (0, 1, 0, 0)
    async with listen(app, floor.stream_id) as log:
        await _end_stream(floor)
        await log.wait_for("giveaway.drawn")
    assert [d["state"] for d in log.of("giveaway.drawn")] == ["no_entries"]
    assert await floor.stock("CAP-1") == (1, 0, 0, 0)


async def test_a_group_buy_settles_with_its_stream(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("KETTLE-1", stock=5)
    group = await (await start_groupbuy(floor, "KETTLE-1", duration_s=600)).json()
    ana, bo = buyer(make_token, "ana"), buyer(make_token, "bo")
    joined = [await (await join(floor, t, group["id"])).json() for t in (ana, bo)]
    async with listen(app, floor.stream_id) as log:
        await _end_stream(floor)
        await log.wait_for("groupbuy.ended")
        await asyncio.sleep(0.2)
    [ended] = log.of("groupbuy.ended")
    assert (ended["members"], ended["price"]["amount_minor"]) == (2, 1700)
    data = await (await floor.client.get(f"/api/groupbuys/{group['id']}")).json()
    assert data["state"] == "succeeded"  # settled before the stream's end answered
    for member in joined:
        captured = await payment(app, member["order_id"])
        assert captured is not None
        assert captured.state is PaymentState.CAPTURED
        assert captured.captured == Money(amount_minor=1700, currency="EUR")
    assert len(await orders_of(floor, ana)) == 1
    assert await floor.stock("KETTLE-1") == (3, 0, 0, 2)


async def test_a_group_buy_short_of_its_minimum_is_voided_with_its_stream(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("LAMP-1", stock=4)
    group = await (await start_groupbuy(floor, "LAMP-1", duration_s=600, min_buyers=3)).json()
    [member] = [await (await join(floor, buyer(make_token, "ana"), group["id"])).json()]
    await _end_stream(floor)
    data = await (await floor.client.get(f"/api/groupbuys/{group['id']}")).json()
    assert data["state"] == "failed"
    voided = await payment(app, member["order_id"])
    assert voided is not None
    assert voided.state is PaymentState.VOIDED
    assert await floor.stock("LAMP-1") == (4, 0, 0, 0)


async def test_a_knockdown_ends_with_its_stream(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("SHOE-1", stock=10)
    knock = await (await start_knockdown(floor, "SHOE-1", duration_s=600)).json()
    assert (await buy(floor, buyer(make_token, "ana"), knock["id"])).status == 200
    assert await floor.stock("SHOE-1") == (4, 5, 1, 0)
    async with listen(app, floor.stream_id) as log:
        await _end_stream(floor)
        await log.wait_for("knockdown.ended")
        await asyncio.sleep(0.2)
    [ended] = log.of("knockdown.ended")
    assert (ended["state"], ended["sold"]) == ("ended", 1)
    # The units left return to stock; the one bought stays held for its buyer.
    assert await floor.stock("SHOE-1") == (9, 0, 1, 0)


async def test_the_sweep_ends_what_a_stopped_node_left_running(
    floor: Floor, app: web.Application
) -> None:
    """The node that ended the stream stopped before its listeners ran (here: it has
    none): every node's sweep ends the formats of streams that ended."""
    await floor.product("SHOE-1", stock=10)
    poll = await _start_poll(floor)
    knock = await (await start_knockdown(floor, "SHOE-1", duration_s=600)).json()
    registry = app[STREAMS]
    listeners, registry._listeners = registry._listeners, []
    try:
        async with listen(app, floor.stream_id) as log:
            await _end_stream(floor)
            await log.wait_for("poll.closed")
            await log.wait_for("knockdown.ended")
            await asyncio.sleep(0.3)
    finally:
        registry._listeners = listeners
    assert len(log.of("poll.closed")) == len(log.of("knockdown.ended")) == 1

    async def over(path: str, state: str) -> bool:
        data = await (await floor.client.get(path)).json()
        return bool(data["state"] == state)

    await eventually(lambda: over(f"/api/polls/{poll['id']}", "closed"), within=5)
    await eventually(lambda: over(f"/api/knockdowns/{knock['id']}", "ended"), within=5)
    assert await floor.stock("SHOE-1") == (10, 0, 0, 0)
