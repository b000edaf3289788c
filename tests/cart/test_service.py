"""The cart package wired into a real app: order webhooks reach the merchant, signed with
the data dir's secret, and a restart between the order and the merchant coming back loses
nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from livecast.app import create_app
from livecast.appkeys import EVENTS, REDIS, TOKENS
from livecast.auth import Role, load_or_create_secret
from livecast.cart.service import CART
from livecast.cart.webhooks import verify_signature
from tests.conftest import AppServer, bearer, free_port, make_settings, published_event


def _settings(redis_url: str, key_prefix: str, data_dir: Path, hook_url: str) -> Any:
    return make_settings(
        redis_url,
        key_prefix,
        data_dir,
        webhooks__urls=[hook_url],
        webhooks__backoff_base_s=0.05,
        webhooks__backoff_cap_s=0.2,
        webhooks__poll_interval_s=0.05,
    )


async def _place_order(
    client: TestClient[web.Request, web.Application], app: web.Application
) -> str:
    def token(role: Role, sub: str) -> str:
        return app[TOKENS].issue(sub=sub, name=sub.title(), role=role, ttl_s=600)

    seller, buyer = token(Role.SELLER, "seller"), token(Role.VIEWER, "buyer")
    resp = await client.post("/api/streams", json={"title": "Live"}, headers=bearer(seller))
    stream_id = (await resp.json())["id"]
    await client.post(f"/api/streams/{stream_id}/start", headers=bearer(seller))
    await client.put(
        "/api/products/KETTLE",
        json={"title": "Kettle", "price": {"amount_minor": 3900, "currency": "EUR"}, "stock": 5},
        headers=bearer(seller),
    )
    resp = await client.post(
        "/api/cart/items", json={"stream_id": stream_id, "sku": "KETTLE"}, headers=bearer(buyer)
    )
    assert resp.status == 201, await resp.text()
    resp = await client.post("/api/checkout", headers={**bearer(buyer), "Idempotency-Key": "k"})
    assert resp.status == 201, await resp.text()
    order_id: str = (await resp.json())["id"]
    return order_id


async def test_order_webhooks_survive_a_restart(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    hook_url = f"http://127.0.0.1:{port}/hooks"
    settings = _settings(redis_url, key_prefix, tmp_path, hook_url)

    # the merchant is down while the order is placed, then this node stops
    first = create_app(settings)
    async with TestClient(AppServer(first)) as client:
        order_id = await _place_order(client, first)
        await asyncio.sleep(0.3)

    received: list[tuple[dict[str, str], bytes]] = []
    got_both = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        if len(received) == 1:
            return web.Response(status=500)  # the first attempt fails once more
        if len({h["Livecast-Event-Id"] for h, _ in received[1:]}) == 2:
            got_both.set()
        return web.Response(status=204)

    merchant = web.Application()
    merchant.router.add_post("/hooks", hook)
    async with TestServer(merchant, host="127.0.0.1", port=port):
        second = create_app(settings)
        async with TestClient(AppServer(second)):
            async with asyncio.timeout(10):
                await got_both.wait()

    secret = load_or_create_secret("", tmp_path, "webhook-secret")
    delivered = {}
    for headers, body in received[1:]:
        assert verify_signature(secret, headers["Livecast-Signature"], body)
        delivered[headers["Livecast-Event-Type"]] = json.loads(body)
    assert set(delivered) == {"order.created", "order.paid"}
    for event_type, event in delivered.items():
        assert event["id"] == f"evt_{order_id}_{event_type.split('.')[1]}"
        assert event["data"]["id"] == order_id
        assert event["data"]["total"] == {"amount_minor": 3900, "currency": "EUR"}
        assert event["data"]["receipt_url"] == f"/receipt/{order_id}/index.m3u8"


async def test_live_numbers_are_pushed_to_the_stream_channel(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    settings = make_settings(redis_url, key_prefix, tmp_path, cart__stats_push_interval_s=0.5)
    app = create_app(settings)
    async with TestClient(AppServer(app)) as client:
        order_id = await _place_order(client, app)
        order = app[CART].orders
        stream_id = (await order.get(order_id)).stream_id
        pubsub = app[REDIS].pubsub()
        await pubsub.subscribe(app[EVENTS].channel(stream_id))
        try:
            async with asyncio.timeout(5):
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if message is None:
                        continue
                    event = published_event(message["data"])
                    if event["type"] == "stats":
                        break
        finally:
            await pubsub.aclose()
    stats = event["data"]
    assert (stats["orders"], stats["units_sold"], stats["add_to_carts"]) == (1, 1, 1)
    assert stats["gmv"] == [{"amount_minor": 3900, "currency": "EUR"}]
