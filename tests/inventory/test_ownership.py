"""Products belong to their seller, over real HTTP and Redis: only the owner and admins
change them, streams sell their own seller's products and those the owners allowed, and
products stored before products had owners keep working."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from livecast.appkeys import REDIS, STREAMS
from livecast.auth import Role
from livecast.errors import Forbidden
from livecast.inventory.ownership import Right
from livecast.inventory.service import INVENTORY
from tests.conftest import Client, MakeToken, bearer
from tests.inventory.conftest import assert_error, create_live_stream, listen, put_product
from tests.redis_both import redis_url as redis_url  # grant.lua's keys share one slot

_PRICE = {"amount_minor": 2500, "currency": "EUR"}


async def _product(client: Client, sku: str) -> dict[str, Any]:
    resp = await client.get(f"/api/products/{sku}")
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def _grant(
    client: Client, token: str, sku: str, grantee: str, *, deals: bool = False
) -> dict[str, Any]:
    resp = await client.put(
        f"/api/products/{sku}/grants/{grantee}", json={"deals": deals}, headers=bearer(token)
    )
    assert resp.status in (200, 201), await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def _pin(client: Client, token: str, stream_id: str, sku: str) -> Any:
    return await client.post(
        f"/api/streams/{stream_id}/pin", json={"sku": sku}, headers=bearer(token)
    )


async def _add_to_cart(client: Client, buyer: str, stream_id: str, sku: str) -> Any:
    body = {"stream_id": stream_id, "sku": sku, "quantity": 1}
    return await client.post("/api/cart/items", json=body, headers=bearer(buyer))


async def _start_deal(
    client: Client, token: str, stream_id: str, sku: str, quantity: int = 3
) -> Any:
    body = {"sku": sku, "price": {"amount_minor": 999, "currency": "EUR"},
            "quantity": quantity, "duration_s": 60}  # fmt: skip
    return await client.post(f"/api/streams/{stream_id}/deals", json=body, headers=bearer(token))


async def test_only_the_owner_and_admins_change_a_product(
    client: Client, make_token: MakeToken
) -> None:
    ana = make_token(Role.SELLER, sub="ana")
    bo = make_token(Role.SELLER, sub="bo")
    admin = make_token(Role.ADMIN, sub="root")
    created = await put_product(client, ana, "BOOT-42", 10)
    assert created["owner"] == "ana"

    body = {"title": "Mine now", "price": {"amount_minor": 1, "currency": "EUR"}, "stock": 0}
    await assert_error(
        await client.put("/api/products/BOOT-42", json=body, headers=bearer(bo)),
        403,
        "not_product_owner",
    )
    for change in ({"delta": -10}, {"set": 0}):
        resp = await client.post("/api/products/BOOT-42/stock", json=change, headers=bearer(bo))
        await assert_error(resp, 403, "not_product_owner")
    # A seller cannot give a product away, nor create one for someone else.
    resp = await client.put(
        "/api/products/BOOT-42", json={**body, "owner": "ana"}, headers=bearer(bo)
    )
    await assert_error(resp, 403, "not_product_owner")
    resp = await client.put(
        "/api/products/BOOT-43", json={**body, "owner": "ana"}, headers=bearer(bo)
    )
    await assert_error(resp, 403, "not_product_owner")
    await assert_error(await client.get("/api/products/BOOT-43"), 404, "unknown_sku")
    assert await _product(client, "BOOT-42") == created

    resp = await client.post("/api/products/BOOT-42/stock", json={"delta": 5}, headers=bearer(ana))
    assert (await resp.json())["stock"] == 15
    resp = await client.put(
        "/api/products/BOOT-42", json={"title": "Boot", "price": _PRICE}, headers=bearer(ana)
    )
    assert resp.status == 200
    assert ((await resp.json())["title"], (await resp.json())["owner"]) == ("Boot", "ana")

    # Admins change any product, keep its owner unless they name another, and create
    # products for a seller.
    resp = await client.post("/api/products/BOOT-42/stock", json={"set": 7}, headers=bearer(admin))
    assert ((await resp.json())["stock"], (await resp.json())["owner"]) == (7, "ana")
    resp = await client.put(
        "/api/products/BOOT-44", json={**body, "owner": "bo"}, headers=bearer(admin)
    )
    assert resp.status == 201
    assert (await resp.json())["owner"] == "bo"
    resp = await client.put(
        "/api/products/BOOT-42", json={**body, "owner": "bo"}, headers=bearer(admin)
    )
    assert (await resp.json())["owner"] == "bo"
    resp = await client.post("/api/products/BOOT-42/stock", json={"delta": 1}, headers=bearer(ana))
    await assert_error(resp, 403, "not_product_owner")


async def test_an_import_refuses_other_sellers_rows_one_by_one(
    client: Client, make_token: MakeToken
) -> None:
    ana = make_token(Role.SELLER, sub="ana")
    bo = make_token(Role.SELLER, sub="bo")
    before = await put_product(client, ana, "ANA-1", 4)
    csv = "\r\n".join(
        [
            "sku,title,price_minor,currency,stock,owner",
            "ANA-1,Stolen,1,EUR,0,",
            "BO-1,Bo's own,100,EUR,2,",
            "BO-2,For Ana,100,EUR,2,ana",
            "BO-3,Named mine,100,EUR,2,bo",
            "",
        ]
    )
    resp = await client.post(
        "/api/products/import", data=csv.encode(),
        headers={**bearer(bo), "Content-Type": "text/csv"},
    )  # fmt: skip
    report = await resp.json()
    assert (report["rows"], report["created"], report["updated"]) == (4, 2, 0)
    assert [(e["row"], e["sku"], e["code"]) for e in report["errors"]] == [
        (2, "ANA-1", "not_product_owner"),
        (4, "BO-2", "not_product_owner"),
    ]
    assert await _product(client, "ANA-1") == before
    await assert_error(await client.get("/api/products/BO-2"), 404, "unknown_sku")
    assert (await _product(client, "BO-1"))["owner"] == "bo"
    assert (await _product(client, "BO-3"))["owner"] == "bo"

    # An admin's import writes any row and may name owners.
    admin = make_token(Role.ADMIN)
    lines = '{"sku": "ANA-1", "title": "Renamed", "price": {"amount_minor": 1, "currency": "EUR"}}'
    lines += '\n{"sku": "BO-2", "title": "For Ana", "price": {"amount_minor": 1, "currency": "EUR"}'
    lines += ', "owner": "ana"}\n'
    resp = await client.post(
        "/api/products/import", data=lines.encode(),
        headers={**bearer(admin), "Content-Type": "application/x-ndjson"},
    )  # fmt: skip
    report = await resp.json()
    assert (report["created"], report["updated"], report["errors"]) == (1, 1, [])
    renamed = await _product(client, "ANA-1")
    assert (renamed["title"], renamed["owner"]) == ("Renamed", "ana")
    assert (await _product(client, "BO-2"))["owner"] == "ana"


async def test_grants_are_the_owners_to_give_list_and_take_back(
    client: Client, make_token: MakeToken
) -> None:
    ana = make_token(Role.SELLER, sub="ana")
    bo = make_token(Role.SELLER, sub="bo")
    stream_id = await create_live_stream(client, bo, start=False)
    await put_product(client, ana, "TEE-1", 5)
    url = "/api/products/TEE-1/grants"

    grant = await _grant(client, ana, "TEE-1", "seller:bo", deals=True)
    assert {k: grant[k] for k in ("sku", "grantee", "seller", "stream_id", "deals")} == {
        "sku": "TEE-1", "grantee": "seller:bo", "seller": "bo", "stream_id": None, "deals": True,
    }  # fmt: skip
    assert (grant["granted_by"], grant["granted_at"] is not None) == ("ana", True)
    resp = await client.put(f"{url}/seller:bo", json={}, headers=bearer(ana))
    assert resp.status == 200  # replaced: now without deals
    assert (await resp.json())["deals"] is False
    resp = await client.put(f"{url}/stream:{stream_id}", json={"deals": True}, headers=bearer(ana))
    assert resp.status == 201
    listed = (await (await client.get(url, headers=bearer(ana))).json())["grants"]
    assert [(g["grantee"], g["deals"]) for g in listed] == [
        ("seller:bo", False), (f"stream:{stream_id}", True)
    ]  # fmt: skip

    # Nobody else gives, sees or takes back the owner's grants; bad input changes nothing.
    viewer, host = make_token(Role.VIEWER), make_token(Role.HOST, streams={stream_id})
    await assert_error(await client.get(url), 401, "unauthorized")
    for token in (viewer, host):
        await assert_error(await client.get(url, headers=bearer(token)), 403, "forbidden")
    await assert_error(await client.get(url, headers=bearer(bo)), 403, "not_product_owner")
    for method in ("put", "delete"):
        resp = await client.request(method, f"{url}/seller:bo", json={}, headers=bearer(bo))
        await assert_error(resp, 403, "not_product_owner")
    for grantee, status, code in [
        ("bo", 422, "invalid_field"),
        ("buyer:bo", 422, "invalid_field"),
        ("seller:", 422, "invalid_field"),
        ("seller:has space", 422, "invalid_field"),
        ("stream:nope", 404, "stream_not_found"),
    ]:
        resp = await client.put(f"{url}/{grantee}", json={}, headers=bearer(ana))
        await assert_error(resp, status, code)
    bad_bodies: list[Any] = [{"deals": "yes"}, {"sell": True}, []]
    for body in bad_bodies:
        resp = await client.put(f"{url}/seller:cy", json=body, headers=bearer(ana))
        await assert_error(resp, 422, "invalid_field")
    resp = await client.put("/api/products/NOPE/grants/seller:bo", json={}, headers=bearer(ana))
    await assert_error(resp, 404, "unknown_sku")
    await assert_error(
        await client.delete(f"{url}/seller:cy", headers=bearer(ana)), 404, "unknown_grant"
    )
    assert (await (await client.get(url, headers=bearer(ana))).json())["grants"] == listed

    resp = await client.delete(f"{url}/seller:bo", headers=bearer(ana))
    assert (await resp.json())["revoked"]["grantee"] == "seller:bo"
    admin = make_token(Role.ADMIN)
    resp = await client.delete(f"{url}/stream:{stream_id}", headers=bearer(admin))
    assert resp.status == 200
    assert (await (await client.get(url, headers=bearer(admin))).json())["grants"] == []


async def test_a_stream_sells_its_sellers_products_and_granted_ones(
    client: Client, make_token: MakeToken, app: web.Application
) -> None:
    ana = make_token(Role.SELLER, sub="ana")
    influencer = make_token(Role.SELLER, sub="ivy")
    buyer = make_token(Role.VIEWER, sub="buyer-1")
    await put_product(client, ana, "BAG-1", 20)
    await put_product(client, influencer, "IVY-1", 5)
    live = await create_live_stream(client, influencer)
    other_live = await create_live_stream(client, influencer)

    # Her own product: everything.
    assert (await _pin(client, influencer, live, "IVY-1")).status == 200
    resp = await _start_deal(client, influencer, live, "IVY-1")
    assert resp.status == 201, await resp.text()

    # Another seller's product, without consent: nothing, and nothing changes.
    await assert_error(await _pin(client, influencer, live, "BAG-1"), 403, "product_not_granted")
    resp = await _start_deal(client, influencer, live, "BAG-1")
    await assert_error(resp, 403, "deals_not_granted")
    await assert_error(await _add_to_cart(client, buyer, live, "BAG-1"), 403, "product_not_granted")
    bag = await _product(client, "BAG-1")
    assert (bag["stock"], bag["held"], bag["in_deals"]) == (20, 0, 0)
    assert (await (await client.get(f"/api/streams/{live}/pin")).json())["pin"]["sku"] == "IVY-1"

    # Allowed to sell on one stream: pin and sell there, still no deals, and not elsewhere.
    await _grant(client, ana, "BAG-1", f"stream:{live}")
    assert (await _pin(client, influencer, live, "BAG-1")).status == 200
    assert (await _add_to_cart(client, buyer, live, "BAG-1")).status == 201
    resp = await _start_deal(client, influencer, live, "BAG-1")
    await assert_error(resp, 403, "deals_not_granted")
    await assert_error(
        await _pin(client, influencer, other_live, "BAG-1"), 403, "product_not_granted"
    )

    # Allowed to run deals, for every stream of hers.
    await _grant(client, ana, "BAG-1", "seller:ivy", deals=True)
    resp = await _start_deal(client, influencer, other_live, "BAG-1")
    assert resp.status == 201, await resp.text()
    assert (await _add_to_cart(client, buyer, other_live, "BAG-1")).status == 201
    bag = await _product(client, "BAG-1")
    assert (bag["held"], bag["in_deals"]) == (2, 3)

    # Admins act for a stream only within its rights, like its seller.
    admin = make_token(Role.ADMIN, streams={"*"})
    await put_product(client, admin, "HOUSE-1", 1)  # nobody's: every stream may sell it
    assert (await _pin(client, admin, other_live, "HOUSE-1")).status == 200
    await assert_error(await _pin(client, admin, other_live, "NOPE-1"), 404, "unknown_sku")


async def test_taking_a_right_back_ends_its_deals_and_pins_at_once(
    client: Client, make_token: MakeToken, app: web.Application
) -> None:
    ana = make_token(Role.SELLER, sub="ana")
    ivy = make_token(Role.SELLER, sub="ivy")
    await put_product(client, ana, "LAMP-1", 10)
    live = await create_live_stream(client, ivy)
    await _grant(client, ana, "LAMP-1", "seller:ivy", deals=True)
    assert (await _pin(client, ivy, live, "LAMP-1")).status == 200
    resp = await _start_deal(client, ivy, live, "LAMP-1", 4)
    deal = await resp.json()
    assert (await _product(client, "LAMP-1"))["in_deals"] == 4

    async with listen(app, live) as log:
        # Narrowed to selling only: the deal ends, its units return; the pin stays.
        await _grant(client, ana, "LAMP-1", "seller:ivy", deals=False)
        await log.wait_for("deal.ended")
        ended = await (await client.get(f"/api/deals/{deal['id']}")).json()
        assert (ended["state"], ended["ended_reason"]) == ("ended", "consent_revoked")
        lamp = await _product(client, "LAMP-1")
        assert (lamp["stock"], lamp["in_deals"]) == (10, 0)
        assert (await (await client.get(f"/api/streams/{live}/pin")).json())["pin"] is not None

        # Revoked: the pin goes, and the stream can no longer pin or sell it.
        resp = await client.delete("/api/products/LAMP-1/grants/seller:ivy", headers=bearer(ana))
        assert resp.status == 200
        await log.wait_for("pin.cleared")
    assert (await (await client.get(f"/api/streams/{live}/pin")).json())["pin"] is None
    await assert_error(await _pin(client, ivy, live, "LAMP-1"), 403, "product_not_granted")
    buyer = make_token(Role.VIEWER)
    await assert_error(
        await _add_to_cart(client, buyer, live, "LAMP-1"), 403, "product_not_granted"
    )


async def test_featured_skus_must_be_sellable_by_the_stream(
    client: Client, make_token: MakeToken
) -> None:
    ana = make_token(Role.SELLER, sub="ana")
    ivy = make_token(Role.SELLER, sub="ivy")
    await put_product(client, ana, "CAP-1", 3)
    await put_product(client, ivy, "IVY-2", 3)

    body = {"title": "Haul", "featured_skus": ["IVY-2", "CAP-1", "NOT-YET-1"]}
    resp = await client.post("/api/streams", json=body, headers=bearer(ivy))
    error = (await assert_error(resp, 403, "product_not_granted"))["error"]
    assert error["skus"] == ["CAP-1"]
    assert (await (await client.get("/api/streams")).json())["streams"] == []

    # A SKU not in the catalog yet may be featured; a granted one too.
    resp = await client.post(
        "/api/streams", json={"title": "Haul", "featured_skus": ["IVY-2", "NOT-YET-1"]},
        headers=bearer(ivy),
    )  # fmt: skip
    assert resp.status == 201
    stream = await resp.json()
    patch = {"featured_skus": ["IVY-2", "CAP-1"]}
    url = f"/api/streams/{stream['id']}"
    await assert_error(
        await client.patch(url, json=patch, headers=bearer(ivy)), 403, "product_not_granted"
    )
    assert (await (await client.get(url)).json())["featured_skus"] == ["IVY-2", "NOT-YET-1"]
    await _grant(client, ana, "CAP-1", f"stream:{stream['id']}")
    resp = await client.patch(url, json=patch, headers=bearer(ivy))
    assert resp.status == 200
    assert (await resp.json())["featured_skus"] == ["IVY-2", "CAP-1"]
    await _grant(client, ana, "CAP-1", "seller:ivy")
    resp = await client.post("/api/streams", json=body, headers=bearer(ivy))
    assert resp.status == 201, await resp.text()


async def test_products_stored_before_owners_keep_selling_and_admins_adopt_them(
    client: Client, make_token: MakeToken, app: web.Application
) -> None:
    ana = make_token(Role.SELLER, sub="ana")
    ivy = make_token(Role.SELLER, sub="ivy")
    await put_product(client, ana, "OLD-1", 10)
    # As a product stored before products had owners: no owner field at all.
    base = app[INVENTORY].reservations.base("OLD-1")
    await app[REDIS].hdel(base + ":product", "owner")
    old = await _product(client, "OLD-1")
    assert old["owner"] is None

    # Every stream still features, pins, deals and sells it.
    live = await create_live_stream(client, ivy)
    resp = await client.patch(
        f"/api/streams/{live}", json={"featured_skus": ["OLD-1"]}, headers=bearer(ivy)
    )
    assert resp.status == 200
    assert (await _pin(client, ivy, live, "OLD-1")).status == 200
    resp = await _start_deal(client, ivy, live, "OLD-1")
    assert resp.status == 201, await resp.text()
    buyer = make_token(Role.VIEWER)
    assert (await _add_to_cart(client, buyer, live, "OLD-1")).status == 201

    # Only admins change it, and an admin gives it an owner.
    body = {"title": "Claimed", "price": _PRICE}
    for seller in (ana, ivy):
        resp = await client.put("/api/products/OLD-1", json=body, headers=bearer(seller))
        await assert_error(resp, 403, "not_product_owner")
        resp = await client.post(
            "/api/products/OLD-1/stock", json={"delta": 1}, headers=bearer(seller)
        )
        await assert_error(resp, 403, "not_product_owner")
        resp = await client.put(
            "/api/products/OLD-1/grants/seller:ivy", json={}, headers=bearer(seller)
        )
        await assert_error(resp, 403, "not_product_owner")
    assert (await _product(client, "OLD-1"))["title"] == old["title"]

    admin = make_token(Role.ADMIN)
    async with listen(app, live) as log:
        resp = await client.put(
            "/api/products/OLD-1", json={**body, "owner": "ana"}, headers=bearer(admin)
        )
        assert (await resp.json())["owner"] == "ana"
        # Ivy's stream had no right from Ana: its deal ends and its pin goes.
        await log.wait_for("deal.ended")
        await log.wait_for("pin.cleared")
    resp = await client.post("/api/products/OLD-1/stock", json={"delta": 1}, headers=bearer(ana))
    assert resp.status == 200
    await assert_error(await _pin(client, ivy, live, "OLD-1"), 403, "product_not_granted")


async def test_a_pin_or_deal_that_lost_its_right_while_starting_is_undone(
    client: Client, make_token: MakeToken, app: web.Application
) -> None:
    ana = make_token(Role.SELLER, sub="ana")
    ivy = make_token(Role.SELLER, sub="ivy")
    await put_product(client, ana, "RACE-1", 10)
    live = await create_live_stream(client, ivy)
    await _grant(client, ana, "RACE-1", "seller:ivy", deals=True)
    assert (await _pin(client, ivy, live, "RACE-1")).status == 200
    resp = await _start_deal(client, ivy, live, "RACE-1", 4)
    assert resp.status == 201
    # The grant goes between the check and the start: as if a revocation had raced them
    # and read the stream's pin and deals before they were written.
    ownership = app[INVENTORY].ownership
    await app[REDIS].hdel(ownership.grants_key("RACE-1"), "seller:ivy")
    stream = await app[STREAMS].get(live)
    with pytest.raises(Forbidden) as refused:
        await ownership.confirm(stream, "RACE-1", Right.DEALS)
    assert refused.value.code == "deals_not_granted"
    assert (await (await client.get(f"/api/streams/{live}/pin")).json())["pin"] is None
    race = await _product(client, "RACE-1")
    assert (race["stock"], race["in_deals"]) == (10, 0)
    (deal,) = (await (await client.get(f"/api/streams/{live}/deals")).json())["deals"]
    assert (deal["state"], deal["ended_reason"]) == ("ended", "consent_revoked")
