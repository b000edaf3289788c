"""Pinned product cards: events viewers get, the getters the chat hub calls, and what a
stream's end takes with it."""

from __future__ import annotations

import pytest
from aiohttp import web

from livecast.auth import Role
from livecast.inventory.service import INVENTORY
from tests.conftest import Client, MakeToken, bearer
from tests.inventory.conftest import assert_error, create_live_stream, listen, put_product


async def test_pin_events_and_snapshot_getters(
    client: Client, make_token: MakeToken, app: web.Application
) -> None:
    seller = make_token(Role.SELLER, sub="seller-p")
    stream_id = await create_live_stream(client, seller)
    await put_product(client, seller, "HAT-1", 3, price=1200)
    inventory = app[INVENTORY]
    assert await inventory.current_pin(stream_id) is None
    async with listen(app, stream_id) as log:
        resp = await client.post(
            f"/api/streams/{stream_id}/pin", json={"sku": "HAT-1"}, headers=bearer(seller)
        )
        assert resp.status == 200, await resp.text()
        await log.wait_for("pin.set")
        card = log.of("pin.set")[0]
        assert card["sku"] == "HAT-1"
        assert card["title"] == "Product HAT-1"
        assert card["price"] == {"amount_minor": 1200, "currency": "EUR"}
        assert card["image_url"] == "https://img.example.com/HAT-1.jpg"
        assert (card["stock_left"], card["sold_out"]) == (3, False)
        assert await inventory.current_pin(stream_id) == card

        # Viewers of the pinning stream hear about stock, coalesced: three buys, the last
        # event says sold out.
        for n in range(3):
            await inventory.reservations.reserve("HAT-1", 1, f"buyer-{n}", f"p{n}")
        await log.wait_for("stock")
        while log.of("stock")[-1]["left"] != 0:
            await log.wait_for("stock", len(log.of("stock")) + 1)
        assert log.of("stock")[-1] == {"sku": "HAT-1", "left": 0, "sold_out": True}
        assert len(log.of("stock")) <= 3

        resp = await client.get(f"/api/streams/{stream_id}/pin")
        assert (await resp.json())["pin"]["stock_left"] == 0

        resp = await client.delete(f"/api/streams/{stream_id}/pin", headers=bearer(seller))
        assert (await resp.json()) == {"cleared": "HAT-1"}
        await log.wait_for("pin.cleared")
        assert log.of("pin.cleared") == [{"sku": "HAT-1"}]
    assert await inventory.current_pin(stream_id) is None


async def test_bad_pins_change_nothing(client: Client, make_token: MakeToken) -> None:
    seller = make_token(Role.SELLER, sub="seller-q")
    live = await create_live_stream(client, seller)
    scheduled = await create_live_stream(client, seller, start=False)
    await put_product(client, seller, "HAT-2", 3)
    body = {"sku": "HAT-2"}
    await assert_error(
        await client.post(f"/api/streams/{scheduled}/pin", json=body, headers=bearer(seller)),
        409,
        "stream_not_live",
    )
    await assert_error(
        await client.post(f"/api/streams/{live}/pin", json={"sku": "NOPE"}, headers=bearer(seller)),
        404,
        "unknown_sku",
    )
    await assert_error(
        await client.post(
            f"/api/streams/{live}/pin", json={"sku": "bad sku"}, headers=bearer(seller)
        ),
        422,
        "invalid_field",
    )
    for token in (make_token(Role.VIEWER), make_token(Role.SELLER, sub="someone-else")):
        await assert_error(
            await client.post(f"/api/streams/{live}/pin", json=body, headers=bearer(token)),
            403,
            "forbidden",
        )
    await assert_error(
        await client.post(f"/api/streams/{live}/pin", json=body), 401, "unauthorized"
    )
    resp = await client.get(f"/api/streams/{live}/pin")
    assert (await resp.json()) == {"pin": None}


@pytest.mark.parametrize("pin_too", [True, False])
async def test_stream_end_ends_its_deals_and_clears_its_pin(
    client: Client, make_token: MakeToken, app: web.Application, pin_too: bool
) -> None:
    seller = make_token(Role.SELLER, sub="seller-r")
    stream_id = await create_live_stream(client, seller)
    await put_product(client, seller, "HAT-3", 10)
    resp = await client.post(
        f"/api/streams/{stream_id}/deals",
        json={
            "sku": "HAT-3",
            "price": {"amount_minor": 100, "currency": "EUR"},
            "quantity": 4,
            "duration_s": 600,
        },
        headers=bearer(seller),
    )
    assert resp.status == 201
    if pin_too:
        await client.post(
            f"/api/streams/{stream_id}/pin", json={"sku": "HAT-3"}, headers=bearer(seller)
        )
        pinned = await app[INVENTORY].current_pin(stream_id)
        assert pinned is not None
        assert pinned["deal"]["quantity"] == 4
    assert len(await app[INVENTORY].active_deals(stream_id)) == 1
    async with listen(app, stream_id) as log:
        await client.post(f"/api/streams/{stream_id}/end", headers=bearer(seller))
        await log.wait_for("deal.ended")
        assert log.of("deal.ended")[0]["ended_reason"] == "stream_ended"
        if pin_too:
            await log.wait_for("pin.cleared")
    assert await app[INVENTORY].active_deals(stream_id) == []
    assert await app[INVENTORY].current_pin(stream_id) is None
    product = await (await client.get("/api/products/HAT-3")).json()
    assert (product["stock"], product["in_deals"]) == (10, 0)
