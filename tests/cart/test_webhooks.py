"""Webhooks reach a real local HTTP receiver, signed, retried, and survive a restart."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from livecast.aio import cancel_and_wait
from livecast.cart.webhooks import WebhookDispatcher, signature_header, verify_signature
from livecast.redisdb import KeySpace

SECRET = "w" * 40


@dataclass
class Receiver:
    """A merchant's endpoint: answers with the next scripted status, records what came."""

    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.statuses.pop(0) if self.statuses else 200
        self.received.append(
            {
                "status": status,
                "body": body,
                "id": request.headers["Livecast-Event-Id"],
                "type": request.headers["Livecast-Event-Type"],
                "signature": request.headers["Livecast-Signature"],
            }
        )
        self.arrived.set()
        return web.Response(status=status)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield rec, str(server.make_url("/hook"))
    await server.close()


def _dispatcher(redis: aioredis.Redis, prefix: str, *urls: str, **kw: Any) -> WebhookDispatcher:
    options: dict[str, Any] = {
        "timeout_s": 2.0,
        "max_attempts": 5,
        "backoff_base_s": 0.05,
        "backoff_cap_s": 0.2,
        "poll_interval_s": 0.05,
    }
    options.update(kw)
    return WebhookDispatcher(redis, KeySpace(prefix), urls=urls, secret=SECRET, **options)


async def _drained(dispatcher: WebhookDispatcher) -> None:
    """Until every delivery is settled (the answer reaches the receiver before the settle)."""
    for _ in range(250):
        if not await dispatcher.pending():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("deliveries still pending after 5 s")


async def _run(dispatcher: WebhookDispatcher) -> asyncio.Task[None]:
    return asyncio.create_task(dispatcher.run())


async def _stop(task: asyncio.Task[None]) -> None:
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_delivered_signed_once(
    redis_client: aioredis.Redis, key_prefix: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    dispatcher = _dispatcher(redis_client, key_prefix, url)
    worker = await _run(dispatcher)
    event = await dispatcher.enqueue("order.paid", {"order_id": "ord_1", "total_minor": 4999})
    await rec.wait_for(1)
    await _drained(dispatcher)
    await asyncio.sleep(0.2)  # and nothing more arrives
    await _stop(worker)

    (got,) = rec.received
    assert got["id"] == event.id
    assert got["type"] == "order.paid"
    # what a merchant computes on its own: HMAC-SHA256 over "<timestamp>." + the raw body
    parts = dict(item.split("=", 1) for item in got["signature"].split(","))
    assert abs(int(parts["t"]) - time.time()) < 60
    expected = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + got["body"], hashlib.sha256)
    assert parts["v1"] == expected.hexdigest()
    assert verify_signature(SECRET, got["signature"], got["body"])
    assert not verify_signature("x" * 40, got["signature"], got["body"])
    assert not verify_signature(SECRET, got["signature"], got["body"] + b" ")
    payload = json.loads(got["body"])
    assert payload["id"] == event.id
    assert payload["data"] == {"order_id": "ord_1", "total_minor": 4999}
    assert await dispatcher.pending() == 0


async def test_retried_after_500_until_accepted(
    redis_client: aioredis.Redis, key_prefix: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    rec.statuses = [500, 503]
    dispatcher = _dispatcher(redis_client, key_prefix, url)
    worker = await _run(dispatcher)
    event = await dispatcher.enqueue("order.created", {"order_id": "ord_2"})
    await rec.wait_for(3)
    await _drained(dispatcher)
    await asyncio.sleep(0.2)
    await _stop(worker)
    assert [r["status"] for r in rec.received] == [500, 503, 200]
    # every attempt carries the same event id, so the receiver can deduplicate
    assert {r["id"] for r in rec.received} == {event.id}
    assert await dispatcher.pending() == 0


async def test_retries_back_off_exponentially_from_the_queue(
    redis_client: aioredis.Redis, key_prefix: str, receiver: tuple[Receiver, str]
) -> None:
    """Each failed attempt is rescheduled in the Redis queue base * 2^(n-1) later (capped,
    +-20% jitter); the test makes it due again at once instead of waiting."""
    rec, url = receiver
    rec.statuses = [500] * 10
    dispatcher = _dispatcher(
        redis_client, key_prefix, url, backoff_base_s=1.0, backoff_cap_s=8.0, max_attempts=10
    )
    event = await dispatcher.enqueue("order.paid", {"order_id": "ord_6"})
    due_key, delivery_id = f"{key_prefix}{{webhooks}}:due", f"{event.id}.0"
    delays = []
    async with ClientSession() as session:
        for _ in range(5):
            assert await dispatcher.deliver_due(session)
            score = await redis_client.zscore(due_key, delivery_id)
            seconds, micros = await redis_client.time()
            assert score is not None
            delays.append((score - (seconds * 1000 + micros // 1000)) / 1000)
            await redis_client.zadd(due_key, {delivery_id: 0})
    assert len(rec.received) == 5
    for delay, expected in zip(delays, [1, 2, 4, 8, 8], strict=True):
        assert 0.8 * expected - 0.2 <= delay <= 1.2 * expected, delays
    assert await dispatcher.pending() == 1


async def test_gives_up_into_dead_letters(
    redis_client: aioredis.Redis, key_prefix: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    rec.statuses = [500] * 10
    dispatcher = _dispatcher(redis_client, key_prefix, url, max_attempts=3)
    worker = await _run(dispatcher)
    await dispatcher.enqueue("order.created", {"order_id": "ord_3"})
    await rec.wait_for(3)
    await _drained(dispatcher)
    await asyncio.sleep(0.2)
    await _stop(worker)
    assert len(rec.received) == 3
    (dead,) = await dispatcher.dead_letters()
    assert (dead.attempts, dead.last_error) == (3, "HTTP 500")
    assert await dispatcher.pending() == 0


async def test_delivered_after_a_restart(
    redis_client: aioredis.Redis, key_prefix: str, receiver: tuple[Receiver, str]
) -> None:
    """Enqueued while the merchant was down and the node then stopped: a new node sends it."""
    rec, url = receiver
    unreachable = "http://127.0.0.1:9/down"
    first = _dispatcher(redis_client, key_prefix, unreachable)
    worker = await _run(first)
    event = await first.enqueue("order.paid", {"order_id": "ord_4"})
    deliveries_key = f"{key_prefix}{{webhooks}}:deliveries"
    while True:  # let at least one attempt fail
        deliveries = await redis_client.hgetall(deliveries_key)
        if any(json.loads(v)["attempts"] >= 1 for v in deliveries.values()):
            break
        await asyncio.sleep(0.02)
    await _stop(worker)
    assert await first.pending() == 1

    # the merchant's endpoint comes back at a new address; a new process picks the queue up
    stored = await redis_client.hget(deliveries_key, f"{event.id}.0")
    assert isinstance(stored, bytes)
    await redis_client.hset(
        deliveries_key, f"{event.id}.0", stored.decode().replace(unreachable, url)
    )
    second = _dispatcher(redis_client, key_prefix, url)
    worker = await _run(second)
    await rec.wait_for(1)
    await _drained(second)
    await _stop(worker)
    assert rec.received[0]["id"] == event.id


async def test_two_nodes_deliver_each_event_once(
    redis_client: aioredis.Redis, key_prefix: str, receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    nodes = [_dispatcher(redis_client, key_prefix, url) for _ in range(2)]
    workers = [await _run(n) for n in nodes]
    events = [await nodes[i % 2].enqueue("order.paid", {"n": i}) for i in range(40)]
    await rec.wait_for(40)
    await asyncio.sleep(0.3)
    for w in workers:
        await _stop(w)
    assert sorted(r["id"] for r in rec.received) == sorted(e.id for e in events)


def test_signature_refuses_stale_timestamps() -> None:
    body = b'{"id": "evt_1"}'
    header = signature_header(SECRET, 1_000_000, body)
    assert verify_signature(SECRET, header, body, now=1_000_100)
    assert not verify_signature(SECRET, header, body, now=1_000_000 + 301)
    assert not verify_signature(SECRET, "garbage", body)


async def test_an_event_id_is_enqueued_once(
    redis_client: aioredis.Redis, key_prefix: str, receiver: tuple[Receiver, str]
) -> None:
    """A retried checkout enqueues its events again under the same ids: sent once."""
    rec, url = receiver
    dispatcher = _dispatcher(redis_client, key_prefix, url)
    worker = await _run(dispatcher)
    for _ in range(3):
        await dispatcher.enqueue("order.paid", {"order_id": "ord_5"}, event_id="evt_ord_5_paid")
        await rec.wait_for(1)
        await _drained(dispatcher)
    await asyncio.sleep(0.2)
    await _stop(worker)
    assert [r["id"] for r in rec.received] == ["evt_ord_5_paid"]
