"""Signed order webhooks, delivered from a durable queue in Redis.

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

Keys (one hash tag so the scripts are Cluster-safe)::

    <prefix>{webhooks}:due         sorted set: delivery id -> due time (ms)
    <prefix>{webhooks}:deliveries  hash: delivery id -> Delivery JSON
    <prefix>{webhooks}:dead        list of Delivery JSON that ran out of attempts
    <prefix>{webhooks}:event:<id>  marker: this event was enqueued (kept 7 days)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import redis.asyncio as aioredis

from livecast.ids import new_id
from livecast.redisdb import KeySpace, load_lua
from livecast.streams.registry import iso_time

__all__ = [
    "Delivery",
    "WebhookDispatcher",
    "WebhookEvent",
    "signature_header",
    "verify_signature",
]

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent
_EVENT_MARKER_TTL_MS = 7 * 86_400 * 1000


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


class WebhookDispatcher:
    """Enqueues events and, in :meth:`run`, delivers them until cancelled."""

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
        batch: int = 32,
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
        self._batch = batch
        self._observe = observe or (lambda outcome: None)
        self._lease_ms = int((timeout_s + 5) * 1000)
        self._due_key = keys.key("{webhooks}", "due")
        self._deliveries_key = keys.key("{webhooks}", "deliveries")
        self._dead_key = keys.key("{webhooks}", "dead")
        self._enqueue = load_lua(redis, _HERE / "webhook_enqueue.lua")
        self._claim = load_lua(redis, _HERE / "webhook_claim.lua")
        self._settle = load_lua(redis, _HERE / "webhook_settle.lua")
        self._wake = asyncio.Event()
        self._stopped = False
        self._encoder = msgspec.json.Encoder()

    async def enqueue(
        self, event_type: str, data: Mapping[str, Any], *, event_id: str | None = None
    ) -> WebhookEvent:
        """Store the event's deliveries durably; they are sent by :meth:`run`.

        An ``event_id`` enqueued before (within 7 days) is not enqueued again.
        """
        seconds, micros = await self._redis.time()
        event = WebhookEvent(
            id=event_id or f"evt_{new_id(12)}",
            type=event_type,
            created_at=iso_time(int(seconds) * 1000 + int(micros) // 1000) or "",
            data=dict(data),
        )
        if not self._urls:
            return event
        body = self._encoder.encode(event).decode()
        args: list[Any] = [_EVENT_MARKER_TTL_MS]
        for index, url in enumerate(self._urls):
            delivery = Delivery(
                id=f"{event.id}.{index}",
                event_id=event.id,
                event_type=event_type,
                url=url,
                body=body,
            )
            args += [delivery.id, self._encoder.encode(delivery)]
        marker = self._keys.key("{webhooks}", "event", event.id)
        await self._enqueue(keys=[self._due_key, self._deliveries_key, marker], args=args)
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
        """Deliver due events until stopped; one worker per node is enough."""
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            while not self._stopped:
                try:
                    delivered_some = await self.deliver_due(session)
                except Exception:
                    log.exception("webhook delivery round failed")
                    delivered_some = False
                if not delivered_some and not self._stopped:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)

    async def deliver_due(self, session: aiohttp.ClientSession) -> bool:
        """Claim and attempt the due deliveries; True if there were any."""
        claimed = await self._claim(
            keys=[self._due_key, self._deliveries_key], args=[self._batch, self._lease_ms]
        )
        if not claimed:
            return False
        deliveries = [
            msgspec.json.decode(claimed[i + 1], type=Delivery) for i in range(0, len(claimed), 2)
        ]
        await asyncio.gather(*(self._attempt(session, d) for d in deliveries))
        return True

    async def _attempt(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
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
        keys = [self._due_key, self._deliveries_key, self._dead_key]
        if ok:
            self._observe("delivered")
            await self._settle(keys=keys, args=[delivery.id, "delivered", "", 0])
            return
        encoded = self._encoder.encode(delivery)
        if delivery.attempts >= self._max_attempts:
            self._observe("dead")
            log.warning(
                "webhook %s to %s gave up: %s", delivery.id, delivery.url, delivery.last_error
            )
            await self._settle(keys=keys, args=[delivery.id, "dead", encoded, 0])
            return
        self._observe("retry")
        delay = min(self._backoff_cap_s, self._backoff_base_s * 2 ** (delivery.attempts - 1))
        delay_ms = int(delay * random.uniform(0.8, 1.2) * 1000)
        log.info(
            "webhook %s to %s failed (%s), attempt %d, retry in %d ms",
            delivery.id, delivery.url, delivery.last_error, delivery.attempts, delay_ms,
        )  # fmt: skip
        await self._settle(keys=keys, args=[delivery.id, "retry", encoded, delay_ms])
