"""Webhooks reach real local HTTP receivers, signed, retried, and survive a restart; a
slow endpoint delays only its own deliveries, with bounded concurrency."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from livecast.aio import cancel_and_wait
from livecast.cart.webhooks import (
    Delivery,
    WebhookDispatcher,
    endpoint_id,
    signature_header,
    verify_signature,
)
from livecast.redisdb import KeySpace
from tests.ingest.conftest import eventually

SECRET = "w" * 40


@dataclass
class Receiver:
    """A merchant's endpoint: answers with the next scripted status, records what came.

    With a ``gate``, every request waits for it to open before it is answered (a slow
    endpoint); ``in_flight`` and ``peak`` count the requests waiting, here and, through
    ``shared``, across receivers."""

    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event | None = None
    in_flight: int = 0
    peak: int = 0
    shared: Receiver | None = None

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
        if self.gate is not None:
            counters = [self] if self.shared is None else [self, self.shared]
            for counter in counters:
                counter.in_flight += 1
                counter.peak = max(counter.peak, counter.in_flight)
            try:
                await self.gate.wait()
            finally:
                for counter in counters:
                    counter.in_flight -= 1
        return web.Response(status=status)

    async def wait_for(self, count: int, within: float = 10) -> None:
        async with asyncio.timeout(within):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def _serve(rec: Receiver) -> tuple[TestServer, str]:
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, str(server.make_url("/hook"))


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    server, url = await _serve(rec)
    yield rec, url
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
    due_key, delivery_id = f"{key_prefix}{{webhooks}}:due:{endpoint_id(url)}", f"{event.id}.0"
    delays = []
    async with ClientSession() as session:
        for _ in range(5):
            assert await dispatcher.deliver_due(session) == 1
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


async def test_a_slow_endpoint_delays_only_its_own_deliveries(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    """One merchant's endpoint holds every answer (until the test lets it go); the other
    merchant gets all its events meanwhile, and the slow one gets its own afterwards."""
    slow, fast = Receiver(gate=asyncio.Event()), Receiver()
    (slow_server, slow_url), (fast_server, fast_url) = await _serve(slow), await _serve(fast)
    dispatcher = _dispatcher(
        redis_client, key_prefix, slow_url, fast_url, timeout_s=30.0, max_in_flight_per_endpoint=4
    )
    worker = await _run(dispatcher)
    try:
        events = [await dispatcher.enqueue("order.paid", {"n": i}) for i in range(20)]
        await fast.wait_for(20, within=10)
        assert sorted(r["id"] for r in fast.received) == sorted(e.id for e in events)
        # the slow endpoint has exactly its slots' worth, all still unanswered
        assert (len(slow.received), slow.in_flight) == (4, 4)

        assert slow.gate is not None
        slow.gate.set()
        await slow.wait_for(20)
        await _drained(dispatcher)
    finally:
        await _stop(worker)
        await slow_server.close()
        await fast_server.close()
    assert sorted(r["id"] for r in slow.received) == sorted(e.id for e in events)
    assert len(fast.received) == 20
    assert slow.peak == 4
    assert not await redis_client.exists(f"{key_prefix}{{webhooks}}:endpoints")


async def test_deliveries_in_flight_are_bounded_per_endpoint_and_in_all(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    everyone = Receiver()
    gate = asyncio.Event()
    receivers = [Receiver(gate=gate, shared=everyone) for _ in range(3)]
    served = [await _serve(rec) for rec in receivers]
    dispatcher = _dispatcher(
        redis_client,
        key_prefix,
        *(url for _, url in served),
        timeout_s=30.0,
        max_in_flight=5,
        max_in_flight_per_endpoint=2,
    )
    worker = await _run(dispatcher)
    try:
        for i in range(6):
            await dispatcher.enqueue("order.paid", {"n": i})
        await eventually(lambda: everyone.in_flight == 5, within=10)
        assert sorted(rec.in_flight for rec in receivers) == [1, 2, 2]
        gate.set()
        for rec in receivers:
            await rec.wait_for(6)
        await _drained(dispatcher)
    finally:
        await _stop(worker)
        for server, _ in served:
            await server.close()
    assert everyone.peak == 5
    assert max(rec.peak for rec in receivers) == 2


async def test_deliveries_left_in_the_former_single_queue_are_sent(
    redis_client: aioredis.Redis, key_prefix: str, receiver: tuple[Receiver, str]
) -> None:
    """Data of an earlier version: every delivery in one queue. A node of this version
    moves them into their endpoints' queues and sends them."""
    rec, url = receiver
    legacy = Delivery(
        id="evt_old.0",
        event_id="evt_old",
        event_type="order.paid",
        url=url,
        body='{"id":"evt_old"}',
    )
    await redis_client.hset(
        f"{key_prefix}{{webhooks}}:deliveries", legacy.id, msgspec.json.encode(legacy)
    )
    await redis_client.zadd(f"{key_prefix}{{webhooks}}:due", {legacy.id: 0, "evt_gone.0": 0})
    dispatcher = _dispatcher(redis_client, key_prefix, url)
    worker = await _run(dispatcher)
    await rec.wait_for(1)
    await _drained(dispatcher)
    await _stop(worker)
    assert [r["id"] for r in rec.received] == ["evt_old"]
    assert not await redis_client.exists(f"{key_prefix}{{webhooks}}:due")


async def test_a_delivery_cut_short_by_a_stop_is_sent_again_at_once(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    """A node stops while an endpoint is still answering: the next node sends that
    delivery again right away, not once its lease (timeout + 5 s, here 35 s) runs out."""
    slow = Receiver(gate=asyncio.Event())
    server, url = await _serve(slow)
    first = _dispatcher(redis_client, key_prefix, url, timeout_s=30.0)
    worker = await _run(first)
    event = await first.enqueue("order.paid", {"order_id": "ord_7"})
    await slow.wait_for(1)
    await _stop(worker)

    assert slow.gate is not None
    slow.gate.set()
    second = _dispatcher(redis_client, key_prefix, url, timeout_s=30.0)
    worker = await _run(second)
    try:
        await slow.wait_for(2, within=5)
        await _drained(second)
    finally:
        await _stop(worker)
        await server.close()
    # sent twice (the first answer never reached the stopped node): the receiver
    # deduplicates on the event id
    assert [r["id"] for r in slow.received] == [event.id, event.id]
