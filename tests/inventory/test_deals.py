"""Flash deals over real HTTP and Redis: carving stock, windows, limits, events, ending
early and at the end time, and never overselling a deal."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from livecast.appkeys import KEYS, REDIS
from livecast.auth import Role
from livecast.config import Settings
from livecast.errors import ApiError
from livecast.events import EventPublisher
from livecast.inventory.deals import Deals
from livecast.inventory.money import Money
from livecast.inventory.reserve import Hold
from livecast.inventory.service import INVENTORY
from livecast.streams.registry import StreamRegistry, StreamState
from livecast.timeline import Timeline
from tests.conftest import Client, MakeToken, bearer, make_settings
from tests.ingest.conftest import eventually
from tests.inventory.conftest import (
    Services,
    assert_error,
    create_live_stream,
    listen,
    put_product,
)


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    """The app sweeps and announces every 50 ms, so deals end on time within a test."""
    return make_settings(
        redis_url,
        key_prefix,
        tmp_path,
        inventory__sweep_interval_s=0.05,
        inventory__event_interval_s=0.05,
    )


def _deal_body(sku: str, **change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sku": sku,
        "price": {"amount_minor": 999, "currency": "EUR"},
        "quantity": 5,
        "duration_s": 60,
        "per_buyer_limit": 2,
    }
    body.update(change)
    return body


async def test_deal_lifecycle_with_events(
    client: Client, make_token: MakeToken, app: web.Application
) -> None:
    seller = make_token(Role.SELLER, sub="seller-1")
    stream_id = await create_live_stream(client, seller)
    await put_product(client, seller, "BAG-1", 8, price=4999)
    async with listen(app, stream_id) as log:
        resp = await client.post(
            f"/api/streams/{stream_id}/deals", json=_deal_body("BAG-1"), headers=bearer(seller)
        )
        assert resp.status == 201, await resp.text()
        deal = await resp.json()
        assert (deal["state"], deal["quantity"], deal["left"]) == ("active", 5, 5)
        assert deal["regular_price"] == {"amount_minor": 4999, "currency": "EUR"}
        product = await (await client.get("/api/products/BAG-1")).json()
        assert (product["stock"], product["in_deals"]) == (3, 5)
        await log.wait_for("deal.started")
        assert log.of("deal.started")[0]["id"] == deal["id"]

        reservations = app[INVENTORY].reservations
        hold = await reservations.reserve("BAG-1", 2, "buyer-1", "h1", deal_id=deal["id"])
        assert hold.price == Money(amount_minor=999, currency="EUR")
        with pytest.raises(ApiError) as err:
            await reservations.reserve("BAG-1", 1, "buyer-1", "h2", deal_id=deal["id"])
        assert err.value.code == "over_limit"
        await reservations.commit("BAG-1", "h1")
        await reservations.reserve("BAG-1", 1, "buyer-2", "h3", deal_id=deal["id"])
        await log.wait_for("deal.updated")
        assert log.of("deal.updated")[-1]["left"] in (2, 3)

        resp = await client.get(f"/api/streams/{stream_id}/deals")
        (listed,) = (await resp.json())["deals"]
        assert (listed["left"], listed["sold"], listed["held"]) == (2, 2, 1)

        resp = await client.post(f"/api/deals/{deal['id']}/end", headers=bearer(seller))
        ended = await resp.json()
        assert (ended["state"], ended["ended_reason"]) == ("ended", "host")
        await log.wait_for("deal.ended")
        with pytest.raises(ApiError) as err:
            await reservations.reserve("BAG-1", 1, "buyer-3", "h4", deal_id=deal["id"])
        assert err.value.code == "deal_ended"
        product = await (await client.get("/api/products/BAG-1")).json()
        # 2 unsold deal units back; the live deal hold keeps its unit until it finishes.
        assert (product["stock"], product["in_deals"], product["held"], product["sold"]) == (
            5,
            0,
            1,
            2,
        )
        await reservations.release("BAG-1", "h3")
        product = await (await client.get("/api/products/BAG-1")).json()
        assert (product["stock"], product["held"]) == (6, 0)
        # Ending twice is harmless and announces nothing more.
        resp = await client.post(f"/api/deals/{deal['id']}/end", headers=bearer(seller))
        assert resp.status == 200
        await asyncio.sleep(0.1)
        assert len(log.of("deal.ended")) == 1


async def test_bad_deals_change_nothing(
    client: Client, make_token: MakeToken, app: web.Application
) -> None:
    seller = make_token(Role.SELLER, sub="seller-2")
    live = await create_live_stream(client, seller)
    scheduled = await create_live_stream(client, seller, start=False)
    ended = await create_live_stream(client, seller)
    await client.post(f"/api/streams/{ended}/end", headers=bearer(seller))
    await put_product(client, seller, "CAP-1", 4)
    await put_product(client, seller, "CAP-USD", 4, currency="USD")
    url = f"/api/streams/{live}/deals"
    cases: list[tuple[str, dict[str, Any], str, int, str]] = [
        (f"/api/streams/{scheduled}/deals", {}, seller, 409, "stream_not_live"),
        (f"/api/streams/{ended}/deals", {}, seller, 409, "stream_not_live"),
        ("/api/streams/nostream/deals", {}, seller, 404, "stream_not_found"),
        (url, {"sku": "NOPE"}, seller, 404, "unknown_sku"),
        (url, {"quantity": 5}, seller, 409, "insufficient_stock"),
        (url, {"quantity": 0}, seller, 422, "invalid_field"),
        (url, {"quantity": -3}, seller, 422, "invalid_field"),
        (
            url,
            {"price": {"amount_minor": 999, "currency": "USD"}},
            seller,
            422,
            "currency_mismatch",
        ),
        (url, {"price": {"amount_minor": 9.99, "currency": "EUR"}}, seller, 422, "invalid_field"),
        (url, {"price": {"amount_minor": 999.0, "currency": "EUR"}}, seller, 422, "invalid_field"),
        (url, {"duration_s": 0}, seller, 422, "invalid_field"),
        (url, {"duration_s": 10**7}, seller, 422, "invalid_field"),
        (url, {}, make_token(Role.VIEWER), 403, "forbidden"),
        (url, {}, make_token(Role.SELLER, sub="other-seller"), 403, "forbidden"),
        (url, {}, make_token(Role.HOST, streams={"elsewhere"}), 403, "forbidden"),
    ]
    for target, change, token, status, code in cases:
        body = {**_deal_body("CAP-1", quantity=4), **change}
        resp = await client.post(target, json=body, headers=bearer(token))
        await assert_error(resp, status, code)
    product = await (await client.get("/api/products/CAP-1")).json()
    assert (product["stock"], product["in_deals"]) == (4, 0)
    assert (await (await client.get(f"/api/streams/{live}/deals")).json())["deals"] == []

    # A host granted the stream may run a deal on it; others may not end it.
    host = make_token(Role.HOST, streams={live})
    resp = await client.post(url, json=_deal_body("CAP-1", quantity=4), headers=bearer(host))
    assert resp.status == 201
    deal_id = (await resp.json())["id"]
    resp = await client.post(
        f"/api/deals/{deal_id}/end", headers=bearer(make_token(Role.SELLER, sub="x"))
    )
    await assert_error(resp, 403, "forbidden")
    await assert_error(
        await client.post("/api/deals/nodeal/end", headers=bearer(seller)), 404, "unknown_deal"
    )


async def test_deal_window_before_start_and_after_end(services: Services) -> None:
    deals = Deals(
        services.redis,
        services.keys,
        services.reservations,
        services.catalog,
        EventPublisher(services.redis, services.keys),
        Timeline(services.redis, services.keys, max_entries=100, retention_s=0),
    )
    await services.add_product("WIN-1", 10)
    euro = Money(amount_minor=500, currency="EUR")
    later = await deals.start(
        stream_id="s1", sku="WIN-1", price=euro, quantity=3, duration_s=60,
        per_buyer_limit=0, start_in_s=30,
    )  # fmt: skip
    with pytest.raises(ApiError) as err:
        await services.reservations.reserve("WIN-1", 1, "ann", "w1", deal_id=later.id)
    assert err.value.code == "deal_not_started"
    assert later.state.value == "scheduled"

    short = await deals.start(
        stream_id="s1", sku="WIN-1", price=euro, quantity=3, duration_s=1, per_buyer_limit=0
    )
    await services.reservations.reserve("WIN-1", 1, "ann", "w2", deal_id=short.id)
    await asyncio.sleep(1.05)
    with pytest.raises(ApiError) as err:
        await services.reservations.reserve("WIN-1", 1, "ann", "w3", deal_id=short.id)
    assert err.value.code == "deal_ended"
    assert (await deals.get(short.id)).state.value == "ended"
    # The time's up but nothing returned the deal's stock yet: ending it (as the sweeper
    # does) gives back the 2 unheld units.
    assert await deals.due(await services.now_ms()) == [short.id]
    ended = await deals.end(short.id, "time", only_if_due=True)
    assert ended.ended_reason == "time"
    levels = await services.reservations.stock("WIN-1")
    assert levels is not None
    assert (levels.available, levels.held, levels.deal_reserved) == (6, 1, 3)


async def test_ten_thousand_attempts_on_a_deal_carved_from_larger_stock(
    services: Services,
) -> None:
    deals = Deals(
        services.redis,
        services.keys,
        services.reservations,
        services.catalog,
        EventPublisher(services.redis, services.keys),
        Timeline(services.redis, services.keys, max_entries=100, retention_s=0),
    )
    await services.add_product("DEAL-1", 3000)
    deal = await deals.start(
        stream_id="s1",
        sku="DEAL-1",
        price=Money(amount_minor=100, currency="EUR"),
        quantity=1000,
        duration_s=600,
        per_buyer_limit=1,
    )

    async def attempt(user: int, n: int) -> Hold | ApiError:
        try:
            return await services.reservations.reserve(
                "DEAL-1", 1, f"user-{user}", f"d-{user}-{n}", ttl_s=3, deal_id=deal.id
            )
        except ApiError as exc:
            return exc

    results = await asyncio.gather(*(attempt(u, n) for n in range(2) for u in range(5000)))
    holds = [r for r in results if isinstance(r, Hold)]
    assert len(holds) == 1000
    assert {r.code for r in results if isinstance(r, ApiError)} <= {"sold_out", "over_limit"}
    levels = await services.reservations.stock("DEAL-1")
    assert levels is not None
    assert (levels.available, levels.held, levels.deal_reserved) == (2000, 1000, 0)
    assert (await deals.get(deal.id)).left == 0

    replayed = await asyncio.gather(
        *(attempt(int(h.hold_id.split("-")[1]), int(h.hold_id.split("-")[2])) for h in holds)
    )
    assert all(isinstance(r, Hold) and r.replayed for r in replayed)
    assert await services.reservations.stock("DEAL-1") == levels

    last = max(h.expires_at_ms for h in holds)
    await asyncio.sleep((last - await services.now_ms()) / 1000 + 0.02)
    assert (await services.reservations.expire_due("DEAL-1", batch=5000)).expired == 1000
    levels = await services.reservations.stock("DEAL-1")
    assert levels is not None
    assert (levels.available, levels.held, levels.deal_reserved) == (2000, 0, 1000)
    assert (await deals.get(deal.id)).left == 1000
    await deals.end(deal.id, "host")
    levels = await services.reservations.stock("DEAL-1")
    assert levels is not None
    assert (levels.available, levels.held, levels.deal_reserved, levels.sold) == (3000, 0, 0, 0)


# -- deals always end, sold out or not -------------------------------------------------------


async def _sold_out_deal(
    client: Client, make_token: MakeToken, sku: str, *, stream_id: str | None = None
) -> tuple[str, str, dict[str, Any]]:
    """A live stream with a 2-unit deal on ``sku`` (of 5 in stock) that two buyers emptied
    over HTTP; returns the seller's token, the stream and the deal."""
    seller = make_token(Role.SELLER, sub="seller-so")
    stream_id = stream_id or await create_live_stream(client, seller)
    await put_product(client, seller, sku, 5)
    resp = await client.post(
        f"/api/streams/{stream_id}/deals",
        json=_deal_body(sku, quantity=2, per_buyer_limit=1),
        headers=bearer(seller),
    )
    assert resp.status == 201, await resp.text()
    deal: dict[str, Any] = await resp.json()
    for n in range(3):
        buyer = make_token(Role.VIEWER, sub=f"buyer-{sku}-{n}")
        resp = await client.post(
            "/api/cart/items",
            json={"stream_id": stream_id, "sku": sku, "deal_id": deal["id"]},
            headers=bearer(buyer),
        )
        if n < 2:
            assert resp.status == 201, await resp.text()
        else:
            await assert_error(resp, 409, "sold_out")
    return seller, stream_id, deal


async def _deal(client: Client, deal_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/deals/{deal_id}")
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def _stock(client: Client, sku: str) -> tuple[int, int, int]:
    product = await (await client.get(f"/api/products/{sku}")).json()
    return product["stock"], product["in_deals"], product["held"]


async def test_the_host_ends_a_sold_out_deal(client: Client, make_token: MakeToken) -> None:
    seller, _, deal = await _sold_out_deal(client, make_token, "SOLD-1")
    assert (await _deal(client, deal["id"]))["left"] == 0
    resp = await client.post(f"/api/deals/{deal['id']}/end", headers=bearer(seller))
    assert resp.status == 200, await resp.text()
    ended = await resp.json()
    assert (ended["state"], ended["ended_reason"], ended["left"]) == ("ended", "host", 0)
    assert ended["ended_at"]
    # Nothing came back (nothing was left); the two held units stay held.
    assert await _stock(client, "SOLD-1") == (3, 0, 2)
    resp = await client.post(f"/api/deals/{deal['id']}/end", headers=bearer(seller))
    assert resp.status == 200


async def test_a_sold_out_deal_ends_at_its_time(
    client: Client, make_token: MakeToken, app: web.Application, caplog: pytest.LogCaptureFixture
) -> None:
    seller = make_token(Role.SELLER, sub="seller-so")
    stream_id = await create_live_stream(client, seller)
    await put_product(client, seller, "SOLD-2", 5)
    deal = await app[INVENTORY].deals.start(
        stream_id=stream_id,
        sku="SOLD-2",
        price=Money(amount_minor=999, currency="EUR"),
        quantity=1,
        duration_s=1,
        per_buyer_limit=1,
    )
    resp = await client.post(
        "/api/cart/items",
        json={"stream_id": stream_id, "sku": "SOLD-2", "deal_id": deal.id},
        headers=bearer(make_token(Role.VIEWER, sub="buyer-t")),
    )
    assert resp.status == 201, await resp.text()
    assert (await _deal(client, deal.id))["left"] == 0

    async def ended_by_time() -> bool:
        data = await _deal(client, deal.id)
        return data["ended_reason"] == "time" and data["ended_at"] is not None

    with caplog.at_level(logging.ERROR, logger="livecast.inventory"):
        await eventually(ended_by_time, within=5)
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert await _stock(client, "SOLD-2") == (4, 0, 1)
    due = await app[INVENTORY].deals.due(2**62)
    assert deal.id not in due


async def test_ending_the_stream_ends_every_deal_and_clears_the_pin(
    client: Client, make_token: MakeToken, app: web.Application
) -> None:
    seller, stream_id, sold_out = await _sold_out_deal(client, make_token, "SOLD-3")
    await put_product(client, seller, "SOLD-4", 5)
    resp = await client.post(
        f"/api/streams/{stream_id}/deals", json=_deal_body("SOLD-4"), headers=bearer(seller)
    )
    assert resp.status == 201
    open_deal = await resp.json()
    resp = await client.post(
        f"/api/streams/{stream_id}/pin", json={"sku": "SOLD-3"}, headers=bearer(seller)
    )
    assert resp.status == 200
    async with listen(app, stream_id) as log:
        resp = await client.post(f"/api/streams/{stream_id}/end", headers=bearer(seller))
        assert resp.status == 200, await resp.text()
        await log.wait_for("deal.ended", 2)
        await log.wait_for("pin.cleared")
    for deal_id in (sold_out["id"], open_deal["id"]):
        data = await _deal(client, deal_id)
        assert (data["state"], data["ended_reason"]) == ("ended", "stream_ended")
    resp = await client.get(f"/api/streams/{stream_id}/deals?active=1")
    assert (await resp.json())["deals"] == []
    assert (await (await client.get(f"/api/streams/{stream_id}/pin")).json())["pin"] is None
    assert await _stock(client, "SOLD-3") == (3, 0, 2)
    assert await _stock(client, "SOLD-4") == (5, 0, 0)


async def test_one_deal_that_cannot_end_does_not_keep_the_others_running(
    client: Client,
    make_token: MakeToken,
    app: web.Application,
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seller = make_token(Role.SELLER, sub="seller-so")
    stream_id = await create_live_stream(client, seller)
    deal_ids = []
    for sku in ("BAD-1", "GOOD-1"):
        await put_product(client, seller, sku, 5)
        resp = await client.post(
            f"/api/streams/{stream_id}/deals", json=_deal_body(sku), headers=bearer(seller)
        )
        assert resp.status == 201
        deal_ids.append((await resp.json())["id"])
    await client.post(
        f"/api/streams/{stream_id}/pin", json={"sku": "GOOD-1"}, headers=bearer(seller)
    )
    # The first deal's record is damaged (its counter is not a number): its end fails.
    reservations = app[INVENTORY].reservations
    await redis_client.hset(
        reservations.base("BAD-1") + ":deal:" + deal_ids[0], "remaining", "garbage"
    )
    with caplog.at_level(logging.ERROR, logger="livecast.inventory"):
        resp = await client.post(f"/api/streams/{stream_id}/end", headers=bearer(seller))
    assert resp.status == 200, await resp.text()
    assert any(deal_ids[0] in r.getMessage() for r in caplog.records)
    good = await _deal(client, deal_ids[1])
    assert (good["state"], good["ended_reason"]) == ("ended", "stream_ended")
    assert await _stock(client, "GOOD-1") == (5, 0, 0)
    assert (await (await client.get(f"/api/streams/{stream_id}/pin")).json())["pin"] is None


async def test_a_full_sweep_ends_the_deals_of_a_stream_that_ended_without_them(
    client: Client, make_token: MakeToken, app: web.Application
) -> None:
    """The node ending a stream died before ending its deals: the next full sweep (on
    any node) ends them; a deal on a stream still live keeps running."""
    seller = make_token(Role.SELLER, sub="seller-so")
    ended_stream = await create_live_stream(client, seller)
    live_stream = await create_live_stream(client, seller)
    await put_product(client, seller, "ORPHAN-1", 10)
    deal_ids = []
    for stream_id in (ended_stream, live_stream):
        resp = await client.post(
            f"/api/streams/{stream_id}/deals",
            json=_deal_body("ORPHAN-1", quantity=3),
            headers=bearer(seller),
        )
        assert resp.status == 201, await resp.text()
        deal_ids.append((await resp.json())["id"])
    # The stream's state moves, but no listener runs (that node is gone).
    await StreamRegistry(app[REDIS], app[KEYS]).transition(ended_stream, StreamState.ENDED)
    assert (await _deal(client, deal_ids[0]))["state"] == "active"

    report = await app[INVENTORY].sweeper.sweep_once(full=True)
    assert report.deals_ended == 1
    orphan = await _deal(client, deal_ids[0])
    assert (orphan["state"], orphan["ended_reason"]) == ("ended", "stream_ended")
    assert (await _deal(client, deal_ids[1]))["state"] == "active"
    assert await _stock(client, "ORPHAN-1") == (7, 3, 0)
    assert (await app[INVENTORY].sweeper.sweep_once(full=True)).deals_ended == 0
