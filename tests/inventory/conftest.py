"""Inventory services over a real Redis (every Redis of the run), without the web app."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from livecast.aio import cancel_and_wait
from livecast.appkeys import EVENTS, SETTINGS
from livecast.inventory.catalog import Catalog, ProductFields
from livecast.inventory.money import Money
from livecast.inventory.reserve import Reservations
from livecast.redisdb import KeySpace
from tests.conftest import Client, bearer, published_event


@dataclass
class Services:
    redis: aioredis.Redis
    keys: KeySpace
    reservations: Reservations
    catalog: Catalog

    async def add_product(self, sku: str, stock: int, *, price: int = 1999) -> None:
        await self.catalog.put(
            sku,
            ProductFields(
                title=f"Product {sku}",
                price=Money(amount_minor=price, currency="EUR"),
                stock=stock,
            ),
        )

    async def now_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000


@pytest.fixture
async def services(any_redis_url: str) -> AsyncIterator[Services]:
    prefix = f"t-{uuid.uuid4().hex[:12]}:"
    client = aioredis.Redis.from_url(any_redis_url, max_connections=32)
    keys = KeySpace(prefix)
    reservations = Reservations(client, keys)
    yield Services(client, keys, reservations, Catalog(client, keys, reservations))
    await reservations.batcher.aclose()
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()


class EventLog:
    """Every live event published on one stream's channel, decoded."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def add(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.arrived.set()

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["type"] == event_type]

    async def wait_for(self, event_type: str, count: int = 1) -> None:
        async with asyncio.timeout(5):
            while len(self.of(event_type)) < count:
                self.arrived.clear()
                await self.arrived.wait()


@asynccontextmanager
async def listen(app: web.Application, stream_id: str) -> AsyncIterator[EventLog]:
    log = EventLog()
    client = aioredis.Redis.from_url(app[SETTINGS].redis.url)
    pubsub = client.pubsub()
    await pubsub.subscribe(app[EVENTS].channel(stream_id))

    async def pump() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                log.add(published_event(message["data"]))

    task = asyncio.create_task(pump())
    try:
        yield log
    finally:
        await cancel_and_wait(task)
        await pubsub.aclose()
        await client.aclose()


async def create_live_stream(client: Client, token: str, *, start: bool = True) -> str:
    resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    stream_id: str = (await resp.json())["id"]
    if start:
        resp = await client.post(f"/api/streams/{stream_id}/start", headers=bearer(token))
        assert resp.status == 200, await resp.text()
    return stream_id


async def put_product(
    client: Client, token: str, sku: str, stock: int, *, price: int = 2500, currency: str = "EUR"
) -> dict[str, Any]:
    body = {
        "title": f"Product {sku}",
        "price": {"amount_minor": price, "currency": currency},
        "image_url": f"https://img.example.com/{sku}.jpg",
        "stock": stock,
    }
    resp = await client.put(f"/api/products/{sku}", json=body, headers=bearer(token))
    assert resp.status in (200, 201), await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body
