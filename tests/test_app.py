"""The capabilities wired together in one app: what a host does through REST reaches
viewers live, and a viewer who arrives later sees the same state in its hello."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import ClientWebSocketResponse, WSMsgType

from livecast.auth import Role
from tests.conftest import Client, MakeToken, bearer, next_event


async def _hello(client: Client, stream_id: str) -> tuple[ClientWebSocketResponse, dict[str, Any]]:
    ws = await client.ws_connect(f"/ws/streams/{stream_id}", protocols=("livecast.v1.json",))
    message = await ws.receive(timeout=5)
    assert message.type is WSMsgType.TEXT
    hello: dict[str, Any] = msgspec.json.decode(message.data)
    assert hello["type"] == "hello"
    return ws, hello["data"]


async def _until_seen(ws: ClientWebSocketResponse, *wanted: tuple[str, dict[str, Any]]) -> None:
    """Read events (in any order) until each (type, data) in ``wanted`` has arrived."""
    missing = list(wanted)
    async with asyncio.timeout(5):
        while missing:
            message = await ws.receive()
            assert message.type is WSMsgType.TEXT, message
            event = msgspec.json.decode(message.data)
            if (event["type"], event["data"]) in missing:
                missing.remove((event["type"], event["data"]))


async def test_pins_and_deals_reach_viewers_and_late_joiners(
    client: Client, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER, sub="seller", name="Ana")
    resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(seller))
    stream_id = (await resp.json())["id"]
    await client.post(f"/api/streams/{stream_id}/start", headers=bearer(seller))
    for sku, stock in (("JACKET", 10), ("BEANIE", 50)):
        resp = await client.put(
            f"/api/products/{sku}",
            json={
                "title": sku.title(),
                "price": {"amount_minor": 9900, "currency": "EUR"},
                "stock": stock,
            },
            headers=bearer(seller),
        )
        assert resp.status in (200, 201), await resp.text()

    early, hello = await _hello(client, stream_id)
    assert hello["pinned"] is None
    assert hello["deals"] == []

    resp = await client.post(
        f"/api/streams/{stream_id}/pin", json={"sku": "JACKET"}, headers=bearer(seller)
    )
    assert resp.status == 200, await resp.text()
    resp = await client.post(
        f"/api/streams/{stream_id}/deals",
        json={
            "sku": "BEANIE",
            "price": {"amount_minor": 500, "currency": "EUR"},
            "quantity": 20,
            "duration_s": 300,
            "per_buyer_limit": 2,
        },
        headers=bearer(seller),
    )
    assert resp.status == 201, await resp.text()
    deal_id = (await resp.json())["id"]
    assert (await next_event(early, "pin.set"))["sku"] == "JACKET"
    assert (await next_event(early, "deal.started"))["id"] == deal_id

    # a viewer buys from the deal and the pinned card; everyone sees the numbers move
    buyer = make_token(Role.VIEWER, sub="buyer", name="Bo")
    for body in (
        {"sku": "BEANIE", "quantity": 2, "deal_id": deal_id},
        {"sku": "JACKET", "quantity": 3},
    ):
        resp = await client.post(
            "/api/cart/items", json={"stream_id": stream_id, **body}, headers=bearer(buyer)
        )
        assert resp.status == 201, await resp.text()
    await _until_seen(
        early,
        (
            "deal.updated",
            {"id": deal_id, "sku": "BEANIE", "left": 18, "sold": 0, "sold_out": False},
        ),
        ("stock", {"sku": "JACKET", "left": 7, "sold_out": False}),
    )

    late, hello = await _hello(client, stream_id)
    assert hello["pinned"]["sku"] == "JACKET"
    assert hello["pinned"]["stock_left"] == 7
    (deal,) = hello["deals"]
    assert (deal["id"], deal["left"], deal["price"]["amount_minor"]) == (deal_id, 18, 500)

    # ending the deal and clearing the pin empties what the next viewer sees
    assert (await client.post(f"/api/deals/{deal_id}/end", headers=bearer(seller))).status == 200
    assert (
        await client.delete(f"/api/streams/{stream_id}/pin", headers=bearer(seller))
    ).status == 200
    for ws in (early, late):
        assert (await next_event(ws, "deal.ended"))["id"] == deal_id
        assert (await next_event(ws, "pin.cleared"))["sku"] == "JACKET"
    await asyncio.sleep(0.6)  # past a notifier flush: nothing brings the deal back
    last, hello = await _hello(client, stream_id)
    assert (hello["pinned"], hello["deals"]) == (None, [])
    for ws in (early, late, last):
        await ws.close()
