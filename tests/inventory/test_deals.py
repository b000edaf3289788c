"""Flash deals over real HTTP and Redis: carving stock, windows, limits, events, ending
early and at the end time, and never overselling a deal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from livecast.auth import Role
from livecast.errors import ApiError
from livecast.events import EventPublisher
from livecast.inventory.deals import Deals
from livecast.inventory.money import Money
from livecast.inventory.reserve import Hold
from livecast.inventory.service import INVENTORY
from tests.conftest import Client, MakeToken, bearer
from tests.inventory.conftest import (
    Services,
    assert_error,
    create_live_stream,
    listen,
    put_product,
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
