"""Auction tests run the app over real HTTP and Redis (every Redis of the run), with a
sweep every 50 ms so auctions end on time within a test."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from livecast.auth import Role
from livecast.config import Settings
from tests.conftest import Client, MakeToken, bearer, make_settings
from tests.redis_both import redis_url as redis_url


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(
        redis_url,
        key_prefix,
        tmp_path,
        inventory__sweep_interval_s=0.05,
        inventory__event_interval_s=0.05,
    )


@dataclass
class Floor:
    """A live stream with its seller, and a product to auction."""

    client: Client
    app: web.Application
    seller: str
    stream_id: str

    async def product(self, sku: str, *, stock: int, price: int = 5000) -> None:
        body = {
            "title": f"Product {sku}",
            "price": {"amount_minor": price, "currency": "EUR"},
            "stock": stock,
        }
        resp = await self.client.put(f"/api/products/{sku}", json=body, headers=bearer(self.seller))
        assert resp.status in (200, 201), await resp.text()

    async def start(self, sku: str, **change: Any) -> Any:
        body: dict[str, Any] = {
            "sku": sku,
            "start_price": {"amount_minor": 500, "currency": "EUR"},
            "duration_s": 30,
            "soft_close_s": 10,
        }
        body.update(change)
        return await self.client.post(
            f"/api/streams/{self.stream_id}/auctions", json=body, headers=bearer(self.seller)
        )

    async def bid(self, token: str, auction_id: str, amount: int, key: str | None = None) -> Any:
        body = {
            "amount": {"amount_minor": amount, "currency": "EUR"},
            "key": key or uuid.uuid4().hex,
        }
        return await self.client.post(
            f"/api/auctions/{auction_id}/bids", json=body, headers=bearer(token)
        )

    async def stock(self, sku: str) -> tuple[int, int, int, int]:
        data = await (await self.client.get(f"/api/products/{sku}")).json()
        return data["stock"], data["in_deals"], data["held"], data["sold"]


@pytest.fixture
async def floor(client: Client, app: web.Application, make_token: MakeToken) -> Floor:
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana")
    resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(seller))
    stream_id = (await resp.json())["id"]
    await client.post(f"/api/streams/{stream_id}/start", headers=bearer(seller))
    return Floor(client=client, app=app, seller=seller, stream_id=stream_id)


def buyer(make_token: MakeToken, name: str) -> str:
    return make_token(Role.VIEWER, sub=f"{name}-{uuid.uuid4().hex[:6]}", name=name.title())
