"""Fixtures for the cart, checkout, order and stats tests: each runs on the embedded and
the cluster-mode Redis; ``shop`` is a live stream with a seller, over real HTTP."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from livecast.appkeys import TOKENS
from livecast.auth import Role
from tests.conftest import Client, MakeToken, bearer
from tests.redis_both import redis_url as redis_url


@dataclass
class Shop:
    client: Client
    app: web.Application
    seller: str
    stream_id: str

    async def product(self, sku: str, *, price: int, stock: int, currency: str = "EUR") -> None:
        resp = await self.client.put(
            f"/api/products/{sku}",
            json={
                "title": f"Product {sku}",
                "price": {"amount_minor": price, "currency": currency},
                "stock": stock,
            },
            headers=bearer(self.seller),
        )
        assert resp.status in (200, 201), await resp.text()

    async def add(self, buyer: str, sku: str, qty: int = 1, **extra: Any) -> Any:
        body = {"stream_id": self.stream_id, "sku": sku, "quantity": qty, **extra}
        return await self.client.post("/api/cart/items", json=body, headers=bearer(buyer))

    async def stock(self, sku: str) -> dict[str, int]:
        resp = await self.client.get(f"/api/products/{sku}")
        data: dict[str, Any] = await resp.json()
        return {k: data[k] for k in ("stock", "held", "sold")}

    async def checkout(self, buyer: str, key: str | None, body: Any = None) -> Any:
        headers = bearer(buyer)
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.client.post("/api/checkout", json=body, headers=headers)


@pytest.fixture
async def shop(client: Client, app: web.Application, make_token: MakeToken) -> Shop:
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana")
    resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(seller))
    stream_id = (await resp.json())["id"]
    await client.post(f"/api/streams/{stream_id}/start", headers=bearer(seller))
    return Shop(client=client, app=app, seller=seller, stream_id=stream_id)


def new_buyer(make_token: MakeToken, name: str = "buyer") -> str:
    return make_token(Role.VIEWER, sub=f"{name}-{uuid.uuid4().hex[:6]}", name=name.title())


def sub_of(token: str, shop: Shop) -> str:
    return shop.app[TOKENS].verify(token).sub
