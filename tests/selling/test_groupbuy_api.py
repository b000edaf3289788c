"""Group buys over real HTTP and Redis: each join takes a unit and authorizes the top
price; a group that reaches its minimum pays the lowest price reached and every member
gets an order; a failed group is voided and its units return; a settlement stopped
midway is finished by the next sweep; refused actions change nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from livecast.app import create_app
from livecast.auth import Role
from livecast.cart.payments import Payment, PaymentState
from livecast.cart.payments import TestPaymentProvider as Provider
from livecast.cart.service import CART
from livecast.config import Settings
from livecast.inventory.money import Money
from livecast.selling.groupbuy_service import GROUPBUYS
from tests.conftest import AppServer, MakeToken, bearer
from tests.ingest.conftest import eventually
from tests.inventory.conftest import assert_error, listen
from tests.selling.conftest import Floor, buyer

TIERS = [
    {"min_buyers": 1, "price": {"amount_minor": 2000, "currency": "EUR"}},
    {"min_buyers": 2, "price": {"amount_minor": 1700, "currency": "EUR"}},
    {"min_buyers": 3, "price": {"amount_minor": 1500, "currency": "EUR"}},
]


async def start(floor: Floor, sku: str, **change: Any) -> Any:
    body: dict[str, Any] = {"sku": sku, "tiers": TIERS, "cap": 10, "duration_s": 60}
    body.update(change)
    return await floor.client.post(
        f"/api/streams/{floor.stream_id}/groupbuys", json=body, headers=bearer(floor.seller)
    )


async def join(floor: Floor, token: str, gid: str, key: str | None = None, **extra: Any) -> Any:
    body = {"key": key or uuid.uuid4().hex, **extra}
    return await floor.client.post(f"/api/groupbuys/{gid}/join", json=body, headers=bearer(token))


async def orders_of(floor: Floor, token: str) -> list[dict[str, Any]]:
    data = await (await floor.client.get("/api/orders", headers=bearer(token))).json()
    orders: list[dict[str, Any]] = data["orders"]
    return orders


async def payment(app: web.Application, payment_id: str) -> Payment | None:
    provider = app[CART].payments
    assert isinstance(provider, Provider)
    return await provider.get(payment_id)


async def test_a_group_that_reaches_its_tiers_pays_the_lowest_price(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("KETTLE-1", stock=5)
    ana, bo, cy, dee = (buyer(make_token, n) for n in ("ana", "bo", "cy", "dee"))
    async with listen(app, floor.stream_id) as log:
        resp = await start(floor, "KETTLE-1")
        assert resp.status == 201, await resp.text()
        group = await resp.json()
        assert resp.headers["Location"] == f"/api/groupbuys/{group['id']}"
        assert (group["state"], group["members"], group["price"]["amount_minor"]) == (
            "running",
            0,
            2000,
        )
        assert (group["next_tier"]["min_buyers"], group["needed"]) == (2, 2)
        # No unit leaves stock before someone joins.
        assert await floor.stock("KETTLE-1") == (5, 0, 0, 0)
        await log.wait_for("groupbuy.started")

        first = await (await join(floor, ana, group["id"], key="k1")).json()
        assert (first["state"], first["members"], first["authorized"]["amount_minor"]) == (
            "authorized",
            1,
            2000,
        )
        # A retried key is the same join, and takes nothing more.
        again = await (await join(floor, ana, group["id"], key="k1")).json()
        assert (again["replayed"], again["order_id"]) == (True, first["order_id"])
        await assert_error(await join(floor, ana, group["id"]), 409, "already_joined")
        assert await floor.stock("KETTLE-1") == (4, 1, 0, 0)
        authorized = await payment(app, first["order_id"])
        assert authorized is not None
        assert (authorized.state, authorized.amount) == (
            PaymentState.AUTHORIZED,
            Money(amount_minor=2000, currency="EUR"),
        )

        for token in (bo, cy, dee):
            assert (await join(floor, token, group["id"])).status == 200
        await log.wait_for("groupbuy.updated", 4)
        last = log.of("groupbuy.updated")[-1]
        assert (last["members"], last["price"]["amount_minor"], last["next_tier"]) == (
            4,
            1500,
            None,
        )
        # A late joiner's hello carries the running group buy.
        async with floor.client.ws_connect(f"/ws/streams/{floor.stream_id}") as ws:
            hello = await ws.receive_json()
        shown = hello["data"]["state"]["groupbuy"]
        assert (shown["id"], shown["members"], shown["price"]["amount_minor"]) == (
            group["id"],
            4,
            1500,
        )
        # Dee leaves: her authorization is voided and her unit returns.
        resp = await floor.client.post(f"/api/groupbuys/{group['id']}/leave", headers=bearer(dee))
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["members"] == 3
        await assert_error(
            await floor.client.post(f"/api/groupbuys/{group['id']}/leave", headers=bearer(dee)),
            409,
            "not_joined",
        )
        assert await floor.stock("KETTLE-1") == (2, 3, 0, 0)

        # The seller cannot join; anonymous callers neither; buyers cannot end it.
        await assert_error(await join(floor, floor.seller, group["id"]), 403, "own_groupbuy")
        await assert_error(
            await floor.client.post(f"/api/groupbuys/{group['id']}/join", json={"key": "k"}),
            401,
            "unauthorized",
        )
        end_url = f"/api/groupbuys/{group['id']}/end"
        await assert_error(await floor.client.post(end_url, headers=bearer(ana)), 403, "forbidden")
        # The second group buy on a running stream waits.
        await floor.product("KETTLE-2", stock=5)
        await assert_error(await start(floor, "KETTLE-2"), 409, "groupbuy_running")

        resp = await floor.client.post(end_url, headers=bearer(floor.seller))
        assert resp.status == 200, await resp.text()
        ended = await resp.json()
        assert (ended["state"], ended["captured"], ended["price"]["amount_minor"]) == (
            "succeeded",
            3,
            1500,
        )
        await log.wait_for("groupbuy.ended")
        assert log.of("groupbuy.ended")[0]["state"] == "capturing"
    await assert_error(
        await floor.client.post(end_url, headers=bearer(floor.seller)), 409, "groupbuy_ended"
    )
    await assert_error(await join(floor, dee, group["id"]), 409, "groupbuy_ended")

    # Every member paid the final price and has one order for it.
    for token in (ana, bo, cy):
        (order,) = await orders_of(floor, token)
        assert order["total"] == {"amount_minor": 1500, "currency": "EUR"}
        assert order["lines"][0]["sku"] == "KETTLE-1"
        paid = await payment(app, order["payment_id"])
        assert paid is not None
        assert (paid.state, paid.captured) == (
            PaymentState.CAPTURED,
            Money(amount_minor=1500, currency="EUR"),
        )
    assert await orders_of(floor, dee) == []
    assert await floor.stock("KETTLE-1") == (2, 0, 0, 3)

    stats_url = f"/api/streams/{floor.stream_id}/groupbuy-stats"
    await assert_error(await floor.client.get(stats_url, headers=bearer(ana)), 403, "forbidden")
    stats = await (await floor.client.get(stats_url, headers=bearer(floor.seller))).json()
    assert (stats["runs"], stats["succeeded"], stats["joins"], stats["units"]) == (1, 1, 4, 3)
    assert stats["gmv"] == [{"amount_minor": 4500, "currency": "EUR"}]
    sales = await (
        await floor.client.get(
            f"/api/streams/{floor.stream_id}/stats", headers=bearer(floor.seller)
        )
    ).json()
    assert sales["orders"] == 3
    metrics = await (await floor.client.get("/metrics")).text()
    assert 'livecast_groupbuys_closed_total{outcome="succeeded"} 1.0' in metrics
    assert 'livecast_groupbuy_captured_value_minor_total{currency="EUR"} 4500.0' in metrics


async def test_a_group_short_of_its_minimum_is_voided_at_its_end(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("LAMP-1", stock=4)
    group = await (await start(floor, "LAMP-1", duration_s=1, min_buyers=3)).json()
    ana, bo = buyer(make_token, "ana"), buyer(make_token, "bo")
    joined = [await (await join(floor, t, group["id"])).json() for t in (ana, bo)]
    assert await floor.stock("LAMP-1") == (2, 2, 0, 0)

    async def failed() -> bool:
        data = await (await floor.client.get(f"/api/groupbuys/{group['id']}")).json()
        return bool(data["state"] == "failed")

    # The sweep closes it at its end time and voids every authorization.
    await eventually(failed, within=10)
    for member in joined:
        voided = await payment(app, member["order_id"])
        assert voided is not None
        assert voided.state is PaymentState.VOIDED
    assert await orders_of(floor, ana) == []
    assert await floor.stock("LAMP-1") == (4, 0, 0, 0)
    current = await (await floor.client.get(f"/api/streams/{floor.stream_id}/groupbuy")).json()
    assert current["groupbuy"]["voided"] == 2


async def test_concurrent_joins_never_take_more_units_than_exist(
    floor: Floor, make_token: MakeToken
) -> None:
    await floor.product("MUG-1", stock=5)
    group = await (await start(floor, "MUG-1", cap=8)).json()
    buyers = [buyer(make_token, f"b{i}") for i in range(12)]
    answers = await asyncio.gather(*(join(floor, t, group["id"]) for t in buyers))
    codes = sorted([r.status for r in answers])
    assert codes == [200] * 5 + [409] * 7
    refused = {(await r.json())["error"]["code"] for r in answers if r.status == 409}
    assert refused == {"sold_out"}
    assert await floor.stock("MUG-1") == (0, 5, 0, 0)
    data = await (await floor.client.get(f"/api/groupbuys/{group['id']}")).json()
    assert data["members"] == 5
    # The cap holds too: with stock to spare, the ninth buyer is refused.
    await floor.product("MUG-2", stock=50)
    await floor.client.post(f"/api/groupbuys/{group['id']}/end", headers=bearer(floor.seller))
    capped = await (await start(floor, "MUG-2", cap=3)).json()
    more = await asyncio.gather(*(join(floor, t, capped["id"]) for t in buyers[:6]))
    assert sorted(r.status for r in more) == [200] * 3 + [409] * 3
    assert await floor.stock("MUG-2") == (47, 3, 0, 0)


async def test_a_declined_card_takes_nothing(floor: Floor, make_token: MakeToken) -> None:
    await floor.product("BAG-1", stock=2)
    group = await (await start(floor, "BAG-1")).json()
    ana = buyer(make_token, "ana")
    await assert_error(
        await join(floor, ana, group["id"], card_number="4000000000000002"),
        402,
        "payment_declined",
    )
    assert await floor.stock("BAG-1") == (2, 0, 0, 0)
    # A good card joins after.
    assert (await join(floor, ana, group["id"])).status == 200


async def test_bad_group_buys_change_nothing(floor: Floor, make_token: MakeToken) -> None:
    await floor.product("SOCK-1", stock=3)

    def tier(n: int, price: int, currency: str = "EUR") -> dict[str, Any]:
        return {"min_buyers": n, "price": {"amount_minor": price, "currency": currency}}

    bad = [
        ([tier(1, 1000), tier(5, 1200)], "invalid_tiers"),
        ([tier(5, 1000), tier(5, 900)], "invalid_tiers"),
        ([tier(1, 1000), tier(5, 900, "USD")], "invalid_tiers"),
        ([tier(1, 1000, "USD")], "currency_mismatch"),
        ([tier(20, 1000)], "invalid_tiers"),
    ]
    for tiers, code in bad:
        await assert_error(await start(floor, "SOCK-1", tiers=tiers), 422, code)
    await assert_error(await start(floor, "SOCK-1", tiers=[]), 422, "invalid_field")
    await assert_error(await start(floor, "SOCK-1", cap=0), 422, "invalid_field")
    await assert_error(await start(floor, "NOPE-1"), 404, "unknown_sku")
    viewer = buyer(make_token, "eve")
    resp = await floor.client.post(
        f"/api/streams/{floor.stream_id}/groupbuys",
        json={"sku": "SOCK-1", "tiers": TIERS, "cap": 3, "duration_s": 60},
        headers=bearer(viewer),
    )
    await assert_error(resp, 403, "forbidden")
    await assert_error(await join(floor, viewer, "nope"), 404, "unknown_groupbuy")
    await assert_error(await floor.client.get("/api/groupbuys/nope"), 404, "unknown_groupbuy")
    assert await floor.stock("SOCK-1") == (3, 0, 0, 0)
    current = await (await floor.client.get(f"/api/streams/{floor.stream_id}/groupbuy")).json()
    assert current == {"groupbuy": None}


class DyingProvider(Provider):
    """The built-in provider whose node goes away right after its n-th capture or void
    (the money moved; nothing after it ran)."""

    def __init__(self, base: Provider, *, after: int) -> None:
        self.__dict__.update(base.__dict__)
        self.left = after

    def _count(self) -> None:
        if self.left <= 0:
            raise ConnectionError("the node is gone")
        self.left -= 1

    async def capture(self, payment_id: str, amount: Money | None = None) -> Payment:
        self._count()
        payment = await super().capture(payment_id, amount)
        if self.left == 0:
            raise ConnectionError("the node went away")
        return payment

    async def void(self, payment_id: str) -> Payment:
        self._count()
        payment = await super().void(payment_id)
        if self.left == 0:
            raise ConnectionError("the node went away")
        return payment


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
async def test_a_settlement_stopped_midway_is_finished_after_a_restart(
    settings: Settings, make_token: MakeToken, outcome: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node settling a group buy dies after its second capture (or void); a new node
    on the same Redis finishes: every member ends captured with exactly one order at the
    final price, or voided with the unit back."""
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana")
    first = create_app(settings)
    async with TestClient(AppServer(first)) as client:
        floor = Floor(client=client, app=first, seller=seller, stream_id="")
        resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(seller))
        floor.stream_id = (await resp.json())["id"]
        await client.post(f"/api/streams/{floor.stream_id}/start", headers=bearer(seller))
        await floor.product("CHAIR-1", stock=6)
        minimum = 3 if outcome == "succeeded" else 5
        group = await (await start(floor, "CHAIR-1", min_buyers=minimum)).json()
        members = [buyer(make_token, f"m{i}") for i in range(4)]
        for token in members:
            assert (await join(floor, token, group["id"])).status == 200
        groupbuys = first[GROUPBUYS]
        dying = DyingProvider(first[CART].payments, after=2)  # type: ignore[arg-type]
        monkeypatch.setattr(groupbuys, "_payments", dying)
        # The host's end settles at once and stops midway (a lost connection: 503); this
        # node's sweep meets the dead provider too.
        resp = await client.post(f"/api/groupbuys/{group['id']}/end", headers=bearer(seller))
        assert resp.status == 503
        midway = await groupbuys.get(group["id"])
        assert midway.state.value == ("capturing" if outcome == "succeeded" else "voiding")
        assert midway.captured + midway.voided <= 1

    second = create_app(settings)
    async with TestClient(AppServer(second)) as client:
        floor.client, floor.app = client, second

        async def settled() -> bool:
            data = await (await client.get(f"/api/groupbuys/{group['id']}")).json()
            return bool(data["state"] == outcome)

        await eventually(settled, within=10)
        for token in members:
            orders = await orders_of(floor, token)
            if outcome == "succeeded":
                (order,) = orders
                assert order["total"] == {"amount_minor": 1500, "currency": "EUR"}
                paid = await payment(second, order["payment_id"])
                assert paid is not None
                assert paid.state is PaymentState.CAPTURED
            else:
                assert orders == []
        sold = 4 if outcome == "succeeded" else 0
        assert await floor.stock("CHAIR-1") == (6 - sold, 0, 0, sold)
        sales = await (
            await client.get(f"/api/streams/{floor.stream_id}/stats", headers=bearer(seller))
        ).json()
        assert sales["orders"] == sold


async def test_a_decline_its_node_did_not_record_is_settled_with_the_rest(
    floor: Floor, make_token: MakeToken, app: web.Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node stops right after the provider declines a join: the member is left pending
    with the unit; the settlement gives that unit back and charges the others."""
    await floor.product("VASE-1", stock=3)
    group = await (await start(floor, "VASE-1")).json()

    async def node_gone(*args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("the node went away")

    monkeypatch.setattr(app[GROUPBUYS], "_settle_member", node_gone)
    resp = await join(floor, buyer(make_token, "eve"), group["id"], card_number="4000000000000002")
    assert resp.status == 503
    monkeypatch.undo()
    assert await floor.stock("VASE-1") == (2, 1, 0, 0)
    ana = buyer(make_token, "ana")
    assert (await join(floor, ana, group["id"])).status == 200
    url = f"/api/groupbuys/{group['id']}/end"
    ended = await (await floor.client.post(url, headers=bearer(floor.seller))).json()
    assert (ended["state"], ended["captured"], ended["voided"]) == ("succeeded", 1, 1)
    assert await floor.stock("VASE-1") == (2, 0, 0, 1)
    assert len(await orders_of(floor, ana)) == 1


# Waits out a real clock; the scripts' keys share a slot on the cluster-mode Redis (the
# state machine and the other tests here prove it), so once is enough.
@pytest.mark.parametrize("redis_url", ["embedded"], indirect=True)
async def test_a_running_group_buy_survives_a_restart(
    settings: Settings, make_token: MakeToken
) -> None:
    """Everything is in Redis: the node that started the group buy stops with members in
    it, another one (same Redis) takes the next join, closes it at its time and charges
    everyone the price the three of them reached."""
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana")
    members = [buyer(make_token, f"m{i}") for i in range(3)]
    first = create_app(settings)
    async with TestClient(AppServer(first)) as client:
        floor = Floor(client=client, app=first, seller=seller, stream_id="")
        resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(seller))
        floor.stream_id = (await resp.json())["id"]
        await client.post(f"/api/streams/{floor.stream_id}/start", headers=bearer(seller))
        await floor.product("STOOL-1", stock=5)
        # long enough for a node to stop and another to start on a busy machine
        group = await (await start(floor, "STOOL-1", duration_s=4)).json()
        for token in members[:2]:
            assert (await join(floor, token, group["id"])).status == 200

    second = create_app(settings)
    async with TestClient(AppServer(second)) as client:
        floor.client, floor.app = client, second
        third = await (await join(floor, members[2], group["id"])).json()
        assert (third["members"], third["price"]["amount_minor"]) == (3, 1500)

        async def succeeded() -> bool:
            data = await (await client.get(f"/api/groupbuys/{group['id']}")).json()
            return bool(data["state"] == "succeeded")

        await eventually(succeeded, within=15)
        for token in members:
            (order,) = await orders_of(floor, token)
            assert order["total"] == {"amount_minor": 1500, "currency": "EUR"}
        assert await floor.stock("STOOL-1") == (2, 0, 0, 3)
