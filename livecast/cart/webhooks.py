"""Signed order webhooks, delivered from durable queues in Redis, one queue per endpoint.

Every event (``order.created``, ``order.paid``) gets a unique id and one delivery per
configured merchant URL. A delivery is a POST of the event's JSON with::

    Livecast-Event-Id: evt_...           (the receiver deduplicates on it)
    Livecast-Event-Type: order.paid
    Livecast-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

as Stripe and Shopify sign theirs: the timestamp inside the signed bytes lets a receiver
refuse replays (:func:`verify_signature` checks both). A 2xx settles the delivery; any
other answer, a timeout or a refused connection schedules a retry with exponential
backoff and jitter, up to ``max_attempts``, after which the delivery moves to a
dead-letter list. Deliveries live in Redis (AOF-persisted), claimed with a lease by a
Lua script, so a restart or a second node loses and duplicates nothing beyond what
at-least-once delivery implies.

Each endpoint (merchant URL) has its own queue, and a node sends to each at most
``max_in_flight_per_endpoint`` deliveries at a time and ``max_in_flight`` in all. A
delivery is claimed only when a slot for its endpoint is free, so a slow or dead
endpoint fills its own slots and its queue grows, while every other endpoint's
deliveries go out as they come. Within an endpoint, deliveries are claimed oldest first.

Keys (one hash tag so the scripts are Cluster-safe)::

    <prefix>{webhooks}:due:<endpoint>  sorted set per endpoint: delivery id -> due time (ms)
    <prefix>{webhooks}:endpoints       hash: endpoint id -> URL, for each non-empty queue
    <prefix>{webhooks}:deliveries      hash: delivery id -> Delivery JSON
    <prefix>{webhooks}:dead            list of Delivery JSON that ran out of attempts
    <prefix>{webhooks}:event:<id>      marker: this event was enqueued (kept 7 days)
    <prefix>{webhooks}:due             the one queue of earlier versions: what it holds
                                       moves to the endpoints' queues
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import aiohttp
import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from livecast.aio import cancel_and_wait
from livecast.ids import new_id
from livecast.redisdb import KeySpace, load_lua
from livecast.streams.registry import iso_time

__all__ = [
    "Delivery",
    "WebhookDispatcher",
    "WebhookEvent",
    "endpoint_id",
    "signature_header",
    "verify_signature",
]

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent
_EVENT_MARKER_TTL_MS = 7 * 86_400 * 1000
# How often a node looks for deliveries left in the queue of earlier versions (a node of
# an earlier version may still be enqueuing there during a rolling upgrade).
_ADOPT_EVERY_S = 60.0


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    created_at: str
    data: dict[str, Any]


class Delivery(msgspec.Struct, kw_only=True):
    id: str
    event_id: str
    event_type: str
    url: str
    body: str
    attempts: int = 0
    last_error: str = ""


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """What a merchant's receiver does: check the HMAC and that the timestamp is fresh."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = signature_header(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def endpoint_id(url: str) -> str:
    """The name of a merchant URL's queue: short, stable, fit for a key."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


class WebhookDispatcher:
    """Enqueues events and, in :meth:`run`, delivers them until stopped."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        *,
        urls: tuple[str, ...],
        secret: str,
        timeout_s: float,
        max_attempts: int,
        backoff_base_s: float,
        backoff_cap_s: float,
        poll_interval_s: float,
        max_in_flight: int = 64,
        max_in_flight_per_endpoint: int = 4,
        observe: Callable[[str], None] | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._urls = urls
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._poll_interval_s = poll_interval_s
        self._max_in_flight = max_in_flight
        self._max_per_endpoint = max_in_flight_per_endpoint
        self._observe = observe or (lambda outcome: None)
        self._lease_ms = int((timeout_s + 5) * 1000)
        self._endpoints_key = keys.key("{webhooks}", "endpoints")
        self._deliveries_key = keys.key("{webhooks}", "deliveries")
        self._dead_key = keys.key("{webhooks}", "dead")
        self._legacy_due_key = keys.key("{webhooks}", "due")
        self._enqueue = load_lua(redis, _HERE / "webhook_enqueue.lua")
        self._claim = load_lua(redis, _HERE / "webhook_claim.lua")
        self._settle = load_lua(redis, _HERE / "webhook_settle.lua")
        self._adopt = load_lua(redis, _HERE / "webhook_adopt.lua")
        self._wake = asyncio.Event()
        self._stopped = False
        self._encoder = msgspec.json.Encoder()
        # This node's deliveries in flight: each attempt's endpoint and delivery id, and
        # how many per endpoint.
        self._attempts: dict[asyncio.Task[None], tuple[str, str]] = {}
        self._in_flight: dict[str, int] = {}
        self._turn = 0

    @property
    def enabled(self) -> bool:
        """Whether any endpoint is configured (with none, :meth:`enqueue` stores nothing)."""
        return bool(self._urls)

    def queue_key(self, endpoint: str) -> str:
        return self._keys.key("{webhooks}", "due", endpoint)

    async def enqueue(
        self, event_type: str, data: Mapping[str, Any], *, event_id: str | None = None
    ) -> WebhookEvent:
        """Store the event's deliveries durably; they are sent by :meth:`run`.

        An ``event_id`` enqueued before (within 7 days) is not enqueued again. With no
        endpoint configured nothing is stored and Redis is not asked at all (a checkout
        calls this twice per order); the event's time is then this node's clock.
        """
        if not self._urls:
            return WebhookEvent(
                id=event_id or f"evt_{new_id(12)}",
                type=event_type,
                created_at=iso_time(int(time.time() * 1000)) or "",
                data=dict(data),
            )
        seconds, micros = await self._redis.time()
        event = WebhookEvent(
            id=event_id or f"evt_{new_id(12)}",
            type=event_type,
            created_at=iso_time(int(seconds) * 1000 + int(micros) // 1000) or "",
            data=dict(data),
        )
        body = self._encoder.encode(event).decode()
        args: list[Any] = [_EVENT_MARKER_TTL_MS]
        queues = []
        for index, url in enumerate(self._urls):
            delivery = Delivery(
                id=f"{event.id}.{index}",
                event_id=event.id,
                event_type=event_type,
                url=url,
                body=body,
            )
            endpoint = endpoint_id(url)
            args += [delivery.id, self._encoder.encode(delivery), endpoint, url]
            queues.append(self.queue_key(endpoint))
        marker = self._keys.key("{webhooks}", "event", event.id)
        await self._enqueue(
            keys=[self._deliveries_key, marker, self._endpoints_key, *queues], args=args
        )
        self._wake.set()
        return event

    async def pending(self) -> int:
        count: int = await self._redis.hlen(self._deliveries_key)
        return count

    async def dead_letters(self) -> list[Delivery]:
        raw = await self._redis.lrange(self._dead_key, 0, -1)
        return [msgspec.json.decode(item, type=Delivery) for item in raw]

    def stop(self) -> None:
        """Make :meth:`run` return after its current round (the owner also cancels it).

        redis-py's asyncio client can swallow a cancellation that lands mid-command, so a
        loop that relied on ``cancel()`` alone could run on and hang the shutdown.
        """
        self._stopped = True
        self._wake.set()

    async def run(self) -> None:
        """Deliver due events until stopped; one worker per node.

        Each round claims, for every endpoint with a free slot, what is due for it, and
        starts those attempts without waiting for them; a finished attempt frees its
        slot and starts the next round. Attempts still running when it stops are
        cancelled and their deliveries made due again at once (the receiver may have
        had one already: at least once); if Redis cannot be told, their leases run out.
        """
        connector = aiohttp.TCPConnector(limit=self._max_in_flight)
        async with aiohttp.ClientSession(timeout=self._timeout, connector=connector) as session:
            try:
                next_adoption = 0.0
                while not self._stopped:
                    self._wake.clear()
                    try:
                        if time.monotonic() >= next_adoption:
                            await self.adopt_legacy_queue()
                            next_adoption = time.monotonic() + _ADOPT_EVERY_S
                        started = await self._start_due(session)
                    except Exception:
                        log.exception("webhook delivery round failed")
                        started = []
                    if not started and not self._stopped:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
            finally:
                running = dict(self._attempts)
                await cancel_and_wait(*running)
                await self._release([lease for t, lease in running.items() if t.cancelled()])

    async def deliver_due(self, session: aiohttp.ClientSession) -> int:
        """Claim what is due (as one round of :meth:`run` does) and attempt it; return how
        many deliveries were attempted, once they are settled."""
        started = await self._start_due(session)
        await asyncio.gather(*started, return_exceptions=True)
        return len(started)

    async def adopt_legacy_queue(self) -> int:
        """Move what the one queue of earlier versions holds into its endpoints' queues
        (due times kept); return how many deliveries moved."""
        moved = 0
        while ids := cast(list[bytes], await self._redis.zrange(self._legacy_due_key, 0, 99)):
            bodies = await self._redis.hmget(self._deliveries_key, ids)
            for raw_id, body in zip(ids, bodies, strict=True):
                url = "" if body is None else msgspec.json.decode(body, type=Delivery).url
                moved += await self._adopt(
                    keys=[
                        self._legacy_due_key,
                        self._deliveries_key,
                        self._endpoints_key,
                        self.queue_key(endpoint_id(url)),
                    ],
                    args=[raw_id, endpoint_id(url), url],
                )
        return moved

    async def _start_due(self, session: aiohttp.ClientSession) -> list[asyncio.Task[None]]:
        free = self._max_in_flight - len(self._attempts)
        if free <= 0:
            return []
        endpoints = cast(list[bytes], await self._redis.hkeys(self._endpoints_key))
        wanted = [
            (endpoint, slots)
            for endpoint in sorted(e.decode() for e in endpoints)
            if (slots := self._max_per_endpoint - self._in_flight.get(endpoint, 0)) > 0
        ]
        if not wanted:
            return []
        # Start with another endpoint each round, so that a total too small for every
        # endpoint's free slots serves them in turn.
        self._turn = (self._turn + 1) % len(wanted)
        wanted = wanted[self._turn :] + wanted[: self._turn]
        args: list[Any] = [self._lease_ms, free]
        for endpoint, slots in wanted:
            args += [endpoint, slots]
        claimed = await self._claim(
            keys=[
                self._deliveries_key,
                self._endpoints_key,
                *(self.queue_key(endpoint) for endpoint, _ in wanted),
            ],
            args=args,
        )
        started = []
        for i in range(0, len(claimed), 3):
            endpoint = claimed[i].decode()
            delivery = msgspec.json.decode(claimed[i + 2], type=Delivery)
            task = asyncio.create_task(
                self._attempt(session, endpoint, delivery), name=f"webhook-{delivery.id}"
            )
            self._in_flight[endpoint] = self._in_flight.get(endpoint, 0) + 1
            self._attempts[task] = (endpoint, delivery.id)
            task.add_done_callback(functools.partial(self._attempt_done, endpoint))
            started.append(task)
        return started

    async def _release(self, leases: list[tuple[str, str]]) -> None:
        for endpoint, delivery_id in leases:
            keys = [
                self.queue_key(endpoint),
                self._deliveries_key,
                self._dead_key,
                self._endpoints_key,
            ]
            try:
                await self._settle(keys=keys, args=[delivery_id, "release", "", 0, endpoint])
            except (RedisError, OSError) as exc:
                log.warning("webhook %s: lease not released: %s", delivery_id, exc)

    def _attempt_done(self, endpoint: str, task: asyncio.Task[None]) -> None:
        self._attempts.pop(task, None)
        left = self._in_flight.get(endpoint, 1) - 1
        if left > 0:
            self._in_flight[endpoint] = left
        else:
            self._in_flight.pop(endpoint, None)
        self._wake.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The outcome was not recorded (Redis out of reach): the lease runs out and
            # the delivery is attempted again.
            log.warning("webhook %s: outcome not recorded: %r", task.get_name(), exc)

    async def _attempt(
        self, session: aiohttp.ClientSession, endpoint: str, delivery: Delivery
    ) -> None:
        body = delivery.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "livecast-webhooks",
            "Livecast-Event-Id": delivery.event_id,
            "Livecast-Event-Type": delivery.event_type,
            "Livecast-Signature": signature_header(self._secret, int(time.time()), body),
        }
        delivery.attempts += 1
        try:
            async with session.post(delivery.url, data=body, headers=headers) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
                delivery.last_error = "" if ok else f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            ok = False
            delivery.last_error = f"{type(exc).__name__}: {exc}"
        keys = [self.queue_key(endpoint), self._deliveries_key, self._dead_key, self._endpoints_key]
        if ok:
            self._observe("delivered")
            await self._settle(keys=keys, args=[delivery.id, "delivered", "", 0, endpoint])
            return
        encoded = self._encoder.encode(delivery)
        if delivery.attempts >= self._max_attempts:
            self._observe("dead")
            log.warning(
                "webhook %s to %s gave up: %s", delivery.id, delivery.url, delivery.last_error
            )
            await self._settle(keys=keys, args=[delivery.id, "dead", encoded, 0, endpoint])
            return
        self._observe("retry")
        delay = min(self._backoff_cap_s, self._backoff_base_s * 2 ** (delivery.attempts - 1))
        delay_ms = int(delay * random.uniform(0.8, 1.2) * 1000)
        log.info(
            "webhook %s to %s failed (%s), attempt %d, retry in %d ms",
            delivery.id, delivery.url, delivery.last_error, delivery.attempts, delay_ms,
        )  # fmt: skip
        await self._settle(keys=keys, args=[delivery.id, "retry", encoded, delay_ms, endpoint])
