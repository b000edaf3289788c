"""The catalog REST API over real HTTP and Redis: roles, money rules, stock changes, and
bad input getting a clear 4xx and changing nothing."""

from __future__ import annotations

from typing import Any

import pytest

from livecast.auth import Role
from tests.conftest import Client, MakeToken, bearer
from tests.inventory.conftest import assert_error, put_product


async def test_seller_creates_reads_and_updates_a_product(
    client: Client, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER)
    body = {
        "title": "Runner 42 red",
        "description": "Light trail runner",
        "image_url": "https://img.example.com/run42.jpg",
        "price": {"amount_minor": 8999, "currency": "EUR"},
        "stock": 25,
    }
    resp = await client.put("/api/products/RUN-42-RED", json=body, headers=bearer(seller))
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["price"] == {"amount_minor": 8999, "currency": "EUR"}
    assert (created["stock"], created["held"], created["sold"]) == (25, 0, 0)

    resp = await client.get("/api/products/RUN-42-RED")  # reading is public
    assert await resp.json() == created

    body["title"] = "Runner 42 crimson"
    del body["stock"]
    resp = await client.put("/api/products/RUN-42-RED", json=body, headers=bearer(seller))
    assert resp.status == 200
    updated = await resp.json()
    assert (updated["title"], updated["stock"]) == ("Runner 42 crimson", 25)

    await put_product(client, seller, "RUN-43-RED", 3)
    resp = await client.get(
        "/api/products", params=[("sku", "RUN-43-RED"), ("sku", "RUN-42-RED"), ("sku", "NOPE")]
    )
    listed = await resp.json()
    assert [p["sku"] for p in listed["products"]] == ["RUN-43-RED", "RUN-42-RED"]
    assert listed["missing"] == ["NOPE"]


async def test_stock_changes_never_go_below_what_is_held(
    client: Client, make_token: MakeToken, app: Any
) -> None:
    from livecast.inventory.service import INVENTORY

    seller = make_token(Role.SELLER)
    await put_product(client, seller, "MUG-1", 10)
    await app[INVENTORY].reservations.reserve("MUG-1", 4, "buyer-1", "hold-1")
    url = "/api/products/MUG-1/stock"

    resp = await client.post(url, json={"delta": -6}, headers=bearer(seller))
    assert (await resp.json())["stock"] == 0
    await assert_error(
        await client.post(url, json={"delta": -1}, headers=bearer(seller)), 409, "below_committed"
    )
    await assert_error(
        await client.post(url, json={"set": 3}, headers=bearer(seller)), 409, "below_committed"
    )
    resp = await client.post(url, json={"set": 14}, headers=bearer(seller))
    data = await resp.json()
    assert (data["stock"], data["held"], data["total_stock"]) == (10, 4, 14)
    for bad in ({}, {"delta": 1, "set": 2}, {"delta": 1.0}, {"set": -1}):
        await assert_error(
            await client.post(url, json=bad, headers=bearer(seller)), 422, "invalid_field"
        )
    await assert_error(
        await client.post("/api/products/NOPE/stock", json={"delta": 1}, headers=bearer(seller)),
        404,
        "unknown_sku",
    )
    resp = await client.get("/api/products/MUG-1")
    assert (await resp.json())["stock"] == 10


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"price": {"amount_minor": 10.5, "currency": "EUR"}}, 422, "invalid_field"),
        ({"price": {"amount_minor": 1000.0, "currency": "EUR"}}, 422, "invalid_field"),
        ({"price": {"amount_minor": "1000", "currency": "EUR"}}, 422, "invalid_field"),
        ({"price": {"amount_minor": -1, "currency": "EUR"}}, 422, "invalid_field"),
        ({"price": {"amount_minor": 100, "currency": "eur"}}, 422, "invalid_field"),
        ({"price": {"amount_minor": 100, "currency": "EURO"}}, 422, "invalid_field"),
        ({"price": 10.5}, 422, "invalid_field"),
        ({"image_url": "javascript:alert(1)"}, 422, "invalid_field"),
        ({"image_url": "ftp://img.example.com/x.jpg"}, 422, "invalid_field"),
        ({"stock": -1}, 422, "invalid_field"),
        ({"stock": 1.5}, 422, "invalid_field"),
        ({"title": ""}, 422, "invalid_field"),
        ({"title": "   "}, 422, "invalid_field"),
        ({"title": "Tee\x00"}, 422, "invalid_field"),
        ({"title": "Tee\x1b[31m"}, 422, "invalid_field"),
        ({"title": "Tee\u0085"}, 422, "invalid_field"),
        ({"title": "Tee \u202egnp.exe"}, 422, "invalid_field"),
        ({"title": "Tee\u2067"}, 422, "invalid_field"),
        ({"title": "Tee\ufeff"}, 422, "invalid_field"),
        ({"title": "two\nlines"}, 422, "invalid_field"),
        ({"description": "ok\nbut \u202d"}, 422, "invalid_field"),
        ({"description": "bell\x07"}, 422, "invalid_field"),
        ({"colour": "red"}, 422, "invalid_field"),
    ],
)
async def test_bad_product_input_changes_nothing(
    client: Client, make_token: MakeToken, change: dict[str, Any], status: int, code: str
) -> None:
    seller = make_token(Role.SELLER)
    before = await put_product(client, seller, "TEE-M", 5)
    body: dict[str, Any] = {
        "title": "Tee",
        "price": {"amount_minor": 1500, "currency": "EUR"},
        "stock": 9,
    }
    body.update(change)
    resp = await client.put("/api/products/TEE-M", json=body, headers=bearer(seller))
    await assert_error(resp, status, code)
    resp = await client.get("/api/products/TEE-M")
    assert await resp.json() == before


async def test_roles_and_unknowns(client: Client, make_token: MakeToken) -> None:
    body = {"title": "Tee", "price": {"amount_minor": 1500, "currency": "EUR"}}
    await assert_error(await client.put("/api/products/TEE-S", json=body), 401, "unauthorized")
    for role in (Role.VIEWER, Role.HOST):
        resp = await client.put("/api/products/TEE-S", json=body, headers=bearer(make_token(role)))
        await assert_error(resp, 403, "forbidden")
    admin = make_token(Role.ADMIN)
    resp = await client.put("/api/products/TEE-S", json=body, headers=bearer(admin))
    assert resp.status == 201
    resp = await client.put("/api/products/bad%20sku", json=body, headers=bearer(admin))
    await assert_error(resp, 422, "invalid_field")
    await assert_error(await client.get("/api/products/NOPE"), 404, "unknown_sku")
    await assert_error(await client.get("/api/products"), 400, "invalid_query")
    resp = await client.post(
        "/api/products/TEE-S/stock", json={"delta": 5}, headers=bearer(make_token(Role.VIEWER))
    )
    await assert_error(resp, 403, "forbidden")
    assert (await (await client.get("/api/products/TEE-S")).json())["stock"] == 0


async def test_text_fields_name_the_bad_character_and_keep_real_text(
    client: Client, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER)
    body = {"title": "Tee \u202eM", "price": {"amount_minor": 1500, "currency": "EUR"}}
    resp = await client.put("/api/products/TEE-X", json=body, headers=bearer(seller))
    error = (await assert_error(resp, 422, "invalid_field"))["error"]
    assert error["message"].startswith("title may not contain U+202E")
    await assert_error(await client.get("/api/products/TEE-X"), 404, "unknown_sku")

    # Scripts, emoji sequences (ZWJ), flags and line breaks in a description are text.
    body = {
        "title": "T\u00e9e \u0645\u0631\u062d\u0628\u0627 \U0001f469\u200d\U0001f4bb "
        "\U0001f3f4\U000e0067\U000e0062\U000e007f",
        "description": "Line one\nLine two\r\n\tindented",
        "price": {"amount_minor": 1500, "currency": "EUR"},
    }
    resp = await client.put("/api/products/TEE-X", json=body, headers=bearer(seller))
    assert resp.status == 201, await resp.text()
    product = await resp.json()
    assert (product["title"], product["description"]) == (body["title"], body["description"])
