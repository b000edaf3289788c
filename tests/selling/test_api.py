"""Auctions over real HTTP and Redis: the unit leaves stock when the auction starts, bids
are ordered and proxied by the server, soft close moves the end, the winner's hold is
checked out as any cart line, and refused actions change nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
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


async def test_proxy_bids_win_and_the_winner_checks_out(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("WATCH-1", stock=3)
    ana, bo = buyer(make_token, "ana"), buyer(make_token, "bo")
    async with listen(app, floor.stream_id) as log:
        resp = await floor.start("WATCH-1", duration_s=5, soft_close_s=0)
        assert resp.status == 201, await resp.text()
        auction = await resp.json()
        assert resp.headers["Location"] == f"/api/auctions/{auction['id']}"
        assert (auction["state"], auction["price"], auction["next_bid"]["amount_minor"]) == (
            "running",
            None,
            500,
        )
        # The unit is the auction's from now on.
        assert await floor.stock("WATCH-1") == (2, 1, 0, 0)
        await log.wait_for("auction.started")

        # Ana's maximum is 20.00; the price stays at the start.
        resp = await floor.bid(ana, auction["id"], 2000, key="a1")
        first = await resp.json()
        assert (first["outcome"], first["leading"], first["price"]["amount_minor"]) == (
            "accepted",
            True,
            500,
        )
        # A retried key is answered the same, and bids nothing more.
        again = await (await floor.bid(ana, auction["id"], 2000, key="a1")).json()
        assert again["replayed"] is True
        assert again["price"] == first["price"]
        assert again["bids"] == 1
        # Bo bids 10.00: Ana's maximum covers it; the price rises a step over Bo's bid.
        outbid = await (await floor.bid(bo, auction["id"], 1000)).json()
        assert (outbid["outcome"], outbid["leading"], outbid["price"]["amount_minor"]) == (
            "outbid",
            False,
            1100,
        )
        # Bo bids 20.00, equal to Ana's maximum: the earlier one leads at 20.00.
        tie = await (await floor.bid(bo, auction["id"], 2000)).json()
        assert (tie["outcome"], tie["price"]["amount_minor"]) == ("outbid", 2000)
        # Below the next step: refused, with the lowest accepted now.
        body = await assert_error(await floor.bid(bo, auction["id"], 2050), 409, "bid_too_low")
        assert body["error"]["next_bid"] == {"amount_minor": 2100, "currency": "EUR"}
        # Bo bids 30.00 and leads at a step over Ana's maximum.
        lead = await (await floor.bid(bo, auction["id"], 3000)).json()
        assert (lead["outcome"], lead["leading"], lead["price"]["amount_minor"]) == (
            "accepted",
            True,
            2100,
        )
        # Bo raises his own maximum: nothing visible changes.
        raised = await (await floor.bid(bo, auction["id"], 4000)).json()
        assert (raised["outcome"], raised["price"]["amount_minor"], raised["bids"]) == (
            "max_raised",
            2100,
            4,
        )
        await log.wait_for("auction.bid", 4)
        assert [b["price"]["amount_minor"] for b in log.of("auction.bid")] == [
            500,
            1100,
            2000,
            2100,
        ]
        assert log.of("auction.bid")[-1]["leader_name"] == "Bo"

        # The seller cannot bid on their own auction.
        await assert_error(await floor.bid(floor.seller, auction["id"], 9000), 403, "own_auction")
        await assert_error(
            await floor.client.post(
                f"/api/auctions/{auction['id']}/bids",
                json={"amount": {"amount_minor": 9000, "currency": "EUR"}, "key": "k"},
            ),
            401,
            "unauthorized",
        )
        # Ends at the bell (sudden death); Bo wins at 21.00.
        await eventually(lambda: bool(log.of("auction.ended")), within=10)
        ended = log.of("auction.ended")[0]
        assert (ended["state"], ended["leader_name"], ended["price"]["amount_minor"]) == (
            "sold",
            "Bo",
            2100,
        )
    await assert_error(await floor.bid(ana, auction["id"], 9000), 409, "auction_ended")
    assert await floor.stock("WATCH-1") == (2, 0, 1, 0)
    stats_url = f"/api/streams/{floor.stream_id}/auction-stats"
    await assert_error(await floor.client.get(stats_url, headers=bearer(ana)), 403, "forbidden")
    stats = await (await floor.client.get(stats_url, headers=bearer(floor.seller))).json()
    assert (stats["auctions"], stats["sold"], stats["bids"], stats["bidders"]) == (1, 1, 4, 2)
    assert stats["gmv"] == [{"amount_minor": 2100, "currency": "EUR"}]
    metrics = await (await floor.client.get("/metrics")).text()
    assert 'livecast_auctions_ended_total{state="sold"} 1.0' in metrics
    assert 'livecast_auction_won_value_minor_total{currency="EUR"} 2100.0' in metrics
    assert 'livecast_auction_bids_total{outcome="outbid"} 2.0' in metrics
    bids = (await (await floor.client.get(f"/api/auctions/{auction['id']}/bids")).json())["bids"]
    assert [b["price"]["amount_minor"] for b in bids] == [500, 1100, 2000, 2100]

    # The winner's cart holds the unit at the winning price; checkout is as usual.
    cart = await (await floor.client.get("/api/cart", headers=bearer(bo))).json()
    (line,) = cart["lines"]
    assert line["line_total"] == {"amount_minor": 2100, "currency": "EUR"}
    resp = await floor.client.post(
        "/api/checkout", headers={**bearer(bo), "Idempotency-Key": "pay-1"}
    )
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    assert order["total"] == {"amount_minor": 2100, "currency": "EUR"}
    assert await floor.stock("WATCH-1") == (2, 0, 0, 1)
    ana_cart = await (await floor.client.get("/api/cart", headers=bearer(ana))).json()
    assert ana_cart["lines"] == []


# Waits out real auction clocks: the scripts' keys are proved to share a slot on the
# cluster-mode Redis by the state machine and the other tests here, so once is enough.
@pytest.mark.parametrize("redis_url", ["embedded"], indirect=True)
async def test_soft_close_moves_the_end_by_exactly_its_window(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("LAMP-1", stock=1)
    ana, bo = buyer(make_token, "ana"), buyer(make_token, "bo")
    auction = await (await floor.start("LAMP-1", duration_s=5, soft_close_s=3)).json()
    early = await (await floor.bid(ana, auction["id"], 500)).json()
    assert early["ends_at_ms"] == auction["ends_at_ms"]
    async with listen(app, floor.stream_id) as log:
        await asyncio.sleep(max(0, (auction["ends_at_ms"] - early["server_ms"]) / 1000 - 2))
        late = await (await floor.bid(bo, auction["id"], 600)).json()
        assert late["ends_at_ms"] == auction["ends_at_ms"] + 3000
        await log.wait_for("auction.extended")
        (extended,) = log.of("auction.extended")
        assert (extended["ends_at_ms"], extended["extended_ms"]) == (late["ends_at_ms"], 3000)
        await eventually(lambda: bool(log.of("auction.ended")), within=10)
    ended = await (await floor.client.get(f"/api/auctions/{auction['id']}")).json()
    assert ended["state"] == "sold"
    assert ended["extensions"] == 1
    assert ended["ended_at_ms"] >= late["ends_at_ms"]


async def test_cancel_before_the_first_bid_only(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("VASE-1", stock=2)
    # One running auction per stream, also when two start at once.
    both = await asyncio.gather(floor.start("VASE-1"), floor.start("VASE-1"))
    assert sorted(r.status for r in both) == [201, 409]
    first = await next(r for r in both if r.status == 201).json()
    await assert_error(await floor.start("VASE-1"), 409, "auction_running")
    assert await floor.stock("VASE-1") == (1, 1, 0, 0)
    viewer = buyer(make_token, "cy")
    url = f"/api/auctions/{first['id']}/cancel"
    await assert_error(await floor.client.post(url, headers=bearer(viewer)), 403, "forbidden")
    async with listen(app, floor.stream_id) as log:
        resp = await floor.client.post(url, headers=bearer(floor.seller))
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["state"] == "cancelled"
        await log.wait_for("auction.cancelled")
    assert await floor.stock("VASE-1") == (2, 0, 0, 0)
    await assert_error(await floor.bid(viewer, first["id"], 500), 409, "auction_ended")
    await assert_error(
        await floor.client.post(url, headers=bearer(floor.seller)), 409, "auction_ended"
    )

    second = await (await floor.start("VASE-1")).json()
    await floor.bid(viewer, second["id"], 500)
    url = f"/api/auctions/{second['id']}/cancel"
    await assert_error(
        await floor.client.post(url, headers=bearer(floor.seller)), 409, "auction_has_bids"
    )
    current = await (await floor.client.get(f"/api/streams/{floor.stream_id}/auction")).json()
    assert current["auction"]["id"] == second["id"]


# Waits out real auction clocks: the scripts' keys are proved to share a slot on the
# cluster-mode Redis by the state machine and the other tests here, so once is enough.
@pytest.mark.parametrize("redis_url", ["embedded"], indirect=True)
async def test_unsold_and_unpaid_units_return_to_stock(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("RING-1", stock=1)
    auction = await (await floor.start("RING-1", duration_s=5, soft_close_s=0)).json()
    assert await floor.stock("RING-1") == (0, 1, 0, 0)
    await eventually(lambda: _state(floor, auction["id"], "unsold"), within=8)
    assert await floor.stock("RING-1") == (1, 0, 0, 0)

    ana = buyer(make_token, "ana")
    auction = await (
        await floor.start("RING-1", duration_s=5, soft_close_s=0, pay_within_s=1)
    ).json()
    await floor.bid(ana, auction["id"], 700)
    await eventually(lambda: _state(floor, auction["id"], "sold"), within=8)
    assert await floor.stock("RING-1") == (0, 0, 1, 0)
    # Unpaid within its deadline, the hold expires and the unit is back.
    await eventually(lambda: _stock_is(floor, "RING-1", (1, 0, 0, 0)), within=5)


async def test_bad_auctions_change_nothing(floor: Floor, make_token: MakeToken) -> None:
    await floor.product("BOOK-1", stock=1)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"sku": "NOPE-1"}, 404, "unknown_sku"),
        ({"start_price": {"amount_minor": 500, "currency": "USD"}}, 422, "currency_mismatch"),
        ({"duration_s": 1}, 422, "invalid_field"),
        (
            {"increments": [{"below_minor": 1000, "step_minor": 50}]},
            422,
            "invalid_increments",
        ),
        (
            {
                "increments": [
                    {"below_minor": 1000, "step_minor": 50},
                    {"below_minor": 900, "step_minor": 50},
                    {"below_minor": None, "step_minor": 100},
                ]
            },
            422,
            "invalid_increments",
        ),
    ]
    for change, status, code in cases:
        sku = change.pop("sku", "BOOK-1")
        await assert_error(await floor.start(sku, **change), status, code)
    assert await floor.stock("BOOK-1") == (1, 0, 0, 0)
    host = make_token(Role.HOST, sub="host-9", streams={floor.stream_id})
    body = {
        "sku": "BOOK-1",
        "start_price": {"amount_minor": 100, "currency": "EUR"},
        "duration_s": 30,
    }
    resp = await floor.client.post(
        f"/api/streams/{floor.stream_id}/auctions", json=body, headers=bearer(host)
    )
    assert resp.status == 201, await resp.text()
    auction = await resp.json()
    # A host of the stream may not bid either; and the last unit is taken.
    await assert_error(await floor.bid(host, auction["id"], 100), 403, "own_auction")
    await assert_error(await floor.start("BOOK-1"), 409, "auction_running")
    await assert_error(await floor.bid(buyer(make_token, "x"), "nope", 100), 404, "unknown_auction")


async def test_joiner_sees_the_running_auction_in_hello(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("HAT-1", stock=1)
    auction = await (await floor.start("HAT-1")).json()
    await floor.bid(buyer(make_token, "dee"), auction["id"], 800)
    async with floor.client.ws_connect(f"/ws/streams/{floor.stream_id}") as ws:
        hello = await ws.receive_json()
    shown = hello["data"]["state"]["auction"]
    assert (shown["id"], shown["leader_name"], shown["price"]["amount_minor"]) == (
        auction["id"],
        "Dee",
        500,
    )
    assert app[SELLING].auctions is not None


async def test_an_auction_ends_with_its_stream(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    """Ending the stream ends its running auction at once: the leader wins at the price
    reached, and the bid keys' answers are kept for a day, not forever."""
    await floor.product("LAMP-1", stock=2)
    auction = await (await floor.start("LAMP-1", duration_s=600)).json()
    ana = buyer(make_token, "ana")
    assert (await floor.bid(ana, auction["id"], 900, key="k1")).status == 200
    async with listen(app, floor.stream_id) as log:
        url = f"/api/streams/{floor.stream_id}/end"
        resp = await floor.client.post(url, headers=bearer(floor.seller))
        assert resp.status == 200, await resp.text()
        await log.wait_for("auction.ended")
    [ended] = log.of("auction.ended")
    assert (ended["state"], ended["price"]["amount_minor"]) == ("sold", 500)
    assert ended["ended_at_ms"] < ended["ends_at_ms"]
    data = await (await floor.client.get(f"/api/auctions/{auction['id']}")).json()
    assert data["state"] == "sold"
    cart = await (await floor.client.get("/api/cart", headers=bearer(ana))).json()
    assert [line["line_total"]["amount_minor"] for line in cart["lines"]] == [500]
    assert await floor.stock("LAMP-1") == (1, 0, 1, 0)
    # The retried bid still gets its first answer; its key goes within a day.
    again = await (await floor.bid(ana, auction["id"], 900, key="k1")).json()
    assert again["replayed"] is True
    auctions = app[SELLING].auctions
    base = auctions._reservations.base("LAMP-1")
    ttl = await auctions._redis.ttl(f"{base}:auction:{auction['id']}:keys")
    assert 0 < ttl <= 86_400
    assert await auctions._redis.ttl(f"{base}:auction:{auction['id']}:log") == -1


async def _state(floor: Floor, auction_id: str, state: str) -> bool:
    data = await (await floor.client.get(f"/api/auctions/{auction_id}")).json()
    return bool(data["state"] == state)


async def _stock_is(floor: Floor, sku: str, levels: tuple[int, int, int, int]) -> bool:
    return await floor.stock(sku) == levels


# Waits out real auction clocks: the scripts' keys are proved to share a slot on the
# cluster-mode Redis by the state machine and the other tests here, so once is enough.
@pytest.mark.parametrize("redis_url", ["embedded"], indirect=True)
async def test_a_running_auction_survives_a_restart(
    settings: Settings, make_token: MakeToken
) -> None:
    """Everything is in Redis: the node that started the auction stops, another one
    (same Redis) takes the next bid and ends it on time, and the winner holds the unit."""
    first = create_app(settings)
    async with TestClient(AppServer(first)) as client:
        floor = Floor(
            client=client,
            app=first,
            seller=make_token(Role.SELLER, sub="seller-1", name="Ana"),
            stream_id="",
        )
        resp = await client.post(
            "/api/streams", json={"title": "Drop"}, headers=bearer(floor.seller)
        )
        floor.stream_id = (await resp.json())["id"]
        await client.post(f"/api/streams/{floor.stream_id}/start", headers=bearer(floor.seller))
        await floor.product("BELL-1", stock=1)
        # long enough for a node to stop and another to start on a busy machine
        auction = await (await floor.start("BELL-1", duration_s=8, soft_close_s=0)).json()
        ana = buyer(make_token, "ana")
        assert (await floor.bid(ana, auction["id"], 600)).status == 200

    second = create_app(settings)
    async with TestClient(AppServer(second)) as client:
        floor.client, floor.app = client, second
        bo = buyer(make_token, "bo")
        taken = await (await floor.bid(bo, auction["id"], 900)).json()
        assert (taken["outcome"], taken["price"]["amount_minor"]) == ("accepted", 650)
        await eventually(lambda: _state(floor, auction["id"], "sold"), within=10)
        cart = await (await client.get("/api/cart", headers=bearer(bo))).json()
        assert [line["line_total"]["amount_minor"] for line in cart["lines"]] == [650]
        assert await floor.stock("BELL-1") == (0, 0, 1, 0)
