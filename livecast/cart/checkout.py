"""Checkout: a buyer's holds become one paid order, exactly once.

Idempotency. Every checkout carries an ``Idempotency-Key``. The first request with a key
stores a record ``{fingerprint, order_id, status}`` (``SET NX``) and takes a short lease
under its own token, which only it gives back (also when the lease's reply was lost, so
a lease nobody runs under never holds retries off); the same key again:

* with a different body (fingerprint) is 422 ``idempotency_key_reused``;
* after success returns the same order, and charges and sells nothing more;
* after a decline returns the same decline;
* while the first is still running waits for its outcome (or 409 after a while);
* after the first died mid-way (its lease ran out) resumes it with the same order id.

Resuming is safe because every step is idempotent by the order id: the payment provider's
authorization and capture, the all-or-nothing commit of the holds (the order id is its
txn), the order record, the stats marker and the webhook event ids. A request refused
before anything happened (empty cart, expired hold, mixed currencies) keeps no record,
so the buyer may fix the cart and retry with the same key.

Order of steps, chosen so that a failure leaves stock exact and money untouched:

1. read the cart's holds; refuse if any is no longer held: expired or released
   (``hold_expired``), bought by another order (``hold_committed``) or being committed by
   another checkout (``hold_in_checkout``), so no payment is even authorized;
2. authorize the total (a decline leaves every hold as it was);
3. commit all holds at once (a hold that expired in between fails the whole commit;
   the authorization is voided and the remaining holds stay held);
4. capture, store the order, count it, enqueue ``order.created`` and ``order.paid``,
   clear its lines from the cart, record the key done. A run resumed after the order
   was stored skips to the steps after storing it (the cart may be empty by then).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from livecast.auth import Identity
from livecast.cart.cart import CartEntry, CartStore
from livecast.cart.orders import Order, OrderLine, OrderStatus, OrderStore
from livecast.cart.payments import PaymentDeclined, PaymentProvider
from livecast.cart.stats import SalesStats
from livecast.cart.webhooks import WebhookDispatcher
from livecast.errors import ApiError, Conflict, Unprocessable
from livecast.ids import new_id
from livecast.inventory.money import Money
from livecast.inventory.reserve import Hold, HoldRef, HoldState, Reservations
from livecast.redisdb import KeySpace, load_lua
from livecast.streams.registry import StreamRegistry, iso_time

__all__ = ["Checkout", "CheckoutRequest", "CheckoutResult", "PaymentRequired"]

_HERE = Path(__file__).parent
_RECORD_TTL_MS = 7 * 86_400 * 1000


class PaymentRequired(ApiError):
    status = 402
    default_code = "payment_declined"


class CheckoutRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    card_number: str | None = None


class _Status(StrEnum):
    PENDING = "pending"
    DONE = "done"
    DECLINED = "declined"


class _Record(msgspec.Struct, kw_only=True):
    fingerprint: str
    order_id: str
    status: _Status
    decline_reason: str = ""


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    order: Order
    replayed: bool


class Checkout:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        *,
        carts: CartStore,
        orders: OrderStore,
        reservations: Reservations,
        streams: StreamRegistry,
        payments: PaymentProvider,
        stats: SalesStats,
        webhooks: WebhookDispatcher,
        lease_s: float = 30.0,
        wait_s: float = 15.0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._carts = carts
        self._orders = orders
        self._reservations = reservations
        self._streams = streams
        self._payments = payments
        self._stats = stats
        self._webhooks = webhooks
        self._lease_ms = int(lease_s * 1000)
        self._wait_s = wait_s
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(_Record)
        self._release_lease = load_lua(redis, _HERE / "lease_release.lua")

    async def checkout(
        self, buyer: Identity, idempotency_key: str, request: CheckoutRequest
    ) -> CheckoutResult:
        fingerprint = hashlib.sha256(self._encoder.encode(request)).hexdigest()
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
        record_key = self._keys.key("checkout", buyer.sub, digest)
        lease_key = record_key + ":lease"
        token = new_id(16)
        deadline = asyncio.get_running_loop().time() + self._wait_s
        while True:
            record = await self._record(record_key, fingerprint)
            if record.fingerprint != fingerprint:
                raise Unprocessable(
                    "this Idempotency-Key was used with a different request",
                    code="idempotency_key_reused",
                )
            if record.status is _Status.DONE:
                return CheckoutResult(await self._orders.get(record.order_id), replayed=True)
            if record.status is _Status.DECLINED:
                raise PaymentRequired(f"payment declined: {record.decline_reason}")
            if await self._lease(lease_key, token):
                break
            if asyncio.get_running_loop().time() > deadline:
                raise Conflict(
                    "a checkout with this Idempotency-Key is still running; retry shortly",
                    code="checkout_in_progress",
                )
            await asyncio.sleep(0.05)
        try:
            order = await self._run(buyer, record, request, record_key)
        except _NothingHappened as exc:
            await self._redis.delete(record_key)
            raise exc.error from None
        finally:
            await self._release_lease(keys=[lease_key], args=[token])
        return CheckoutResult(order, replayed=False)

    async def _lease(self, lease_key: str, token: str) -> bool:
        """Take the key's lease for this run, if no other run holds it."""
        try:
            return bool(await self._redis.set(lease_key, token, nx=True, px=self._lease_ms))
        except BaseException:
            # The SET may have applied with its reply lost (the request was cancelled,
            # the connection dropped): a lease nobody runs under would hold this key's
            # retries off until it expires.
            with contextlib.suppress(RedisError, OSError):
                await self._release_lease(keys=[lease_key], args=[token])
            raise

    async def _record(self, record_key: str, fingerprint: str) -> _Record:
        candidate = _Record(
            fingerprint=fingerprint, order_id=f"ord_{new_id(12)}", status=_Status.PENDING
        )
        created = await self._redis.set(
            record_key, self._encoder.encode(candidate), nx=True, px=_RECORD_TTL_MS
        )
        if created:
            return candidate
        raw = await self._redis.get(record_key)
        if raw is None:  # expired or deleted between the two calls: try again
            return await self._record(record_key, fingerprint)
        return self._decoder.decode(raw)

    async def _run(
        self, buyer: Identity, record: _Record, request: CheckoutRequest, record_key: str
    ) -> Order:
        order_id = record.order_id
        stored = await self._orders.find(order_id)
        if stored is not None:
            # An earlier run under this key stored the order, then stopped (a dropped
            # connection, a crash) before recording it done; it may already have cleared
            # the cart. Finish the steps after the order; each is idempotent.
            return await self._finish(buyer, record, record_key, stored)
        entries = await self._carts.entries(buyer.sub)
        if not entries:
            raise _NothingHappened(Unprocessable("the cart is empty", code="empty_cart"))
        holds = await self._live_holds(entries, order_id)
        currencies = {hold.price.currency for hold in holds}
        if len(currencies) > 1:
            raise _NothingHappened(
                Unprocessable(
                    f"the cart mixes currencies ({', '.join(sorted(currencies))}); "
                    "check out one currency at a time",
                    code="mixed_currencies",
                )
            )
        total = Money(
            amount_minor=sum(h.price.amount_minor * h.qty for h in holds),
            currency=currencies.pop(),
        )
        try:
            await self._payments.authorize(
                order_id, total, buyer=buyer.sub, card_number=request.card_number
            )
        except PaymentDeclined as exc:
            declined = msgspec.structs.replace(
                record, status=_Status.DECLINED, decline_reason=str(exc)
            )
            await self._redis.set(record_key, self._encoder.encode(declined), px=_RECORD_TTL_MS)
            raise PaymentRequired(f"payment declined: {exc}") from None
        refs = [HoldRef(sku=e.sku, hold_id=e.hold_id) for e in entries]
        try:
            committed = await self._reservations.commit_holds(refs, txn=order_id)
        except ApiError as exc:
            await self._payments.void(order_id)
            raise _NothingHappened(exc) from None
        await self._payments.capture(order_id)
        order = await self._store_order(buyer, order_id, entries, committed, total)
        return await self._finish(buyer, record, record_key, order)

    async def _finish(
        self, buyer: Identity, record: _Record, record_key: str, order: Order
    ) -> Order:
        """After the order is stored: count it, enqueue its events, clear its lines from
        the cart, record the key done. Idempotent, so a resumed checkout repeats it."""
        for stream_id in order.stream_ids:
            mine = [line for line in order.lines if line.stream_id == stream_id]
            await self._stats.count_order(
                stream_id,
                order.id,
                units=sum(line.quantity for line in mine),
                amount=Money(
                    amount_minor=sum(line.line_total.amount_minor for line in mine),
                    currency=order.total.currency,
                ),
                buyer_id=buyer.sub,
            )
        payload = msgspec.to_builtins(order)
        await self._webhooks.enqueue("order.created", payload, event_id=f"evt_{order.id}_created")
        await self._webhooks.enqueue("order.paid", payload, event_id=f"evt_{order.id}_paid")
        await self._carts.remove(buyer.sub, *(line.hold_id for line in order.lines))
        done = msgspec.structs.replace(record, status=_Status.DONE)
        await self._redis.set(record_key, self._encoder.encode(done), px=_RECORD_TTL_MS)
        return order

    async def _live_holds(self, entries: list[CartEntry], order_id: str) -> list[Hold]:
        """The cart's holds, if all are still this order's to commit. A hold this order
        (its id is the commit's txn) prepared or committed in an earlier, interrupted run
        passes: committing it again is a no-op."""
        found = await asyncio.gather(
            *(self._reservations.get_hold(e.sku, e.hold_id) for e in entries)
        )
        seconds, micros = await self._redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        gone = [
            e.hold_id
            for e, hold in zip(entries, found, strict=True)
            if hold is None
            or hold.state in (HoldState.RELEASED, HoldState.EXPIRED)
            or (hold.state is HoldState.HELD and hold.expires_at_ms <= now_ms)
        ]
        if gone:
            raise _NothingHappened(
                Conflict(
                    "some items are no longer held for you; remove them and try again",
                    code="hold_expired",
                    holds=gone,
                )
            )
        held = [hold for hold in found if hold is not None]
        others = [hold for hold in held if hold.txn != order_id]
        bought = [h.hold_id for h in others if h.state is HoldState.COMMITTED]
        if bought:
            raise _NothingHappened(
                Conflict(
                    "some items were already bought in another order; "
                    "remove them from the cart and try again",
                    code="hold_committed",
                    holds=bought,
                )
            )
        busy = [h.hold_id for h in others if h.state is HoldState.PREPARING]
        if busy:
            raise _NothingHappened(
                Conflict(
                    "some items are being checked out by another checkout; "
                    "retry once it has finished",
                    code="hold_in_checkout",
                    holds=busy,
                )
            )
        return held

    async def _store_order(
        self,
        buyer: Identity,
        order_id: str,
        entries: list[CartEntry],
        committed: list[Hold],
        total: Money,
    ) -> Order:
        by_id = {hold.hold_id: hold for hold in committed}
        lines = []
        for entry in entries:
            hold = by_id[entry.hold_id]
            lines.append(
                OrderLine(
                    sku=entry.sku,
                    title=entry.title,
                    quantity=hold.qty,
                    unit_price=hold.price,
                    line_total=Money(
                        amount_minor=hold.price.amount_minor * hold.qty,
                        currency=hold.price.currency,
                    ),
                    stream_id=entry.stream_id,
                    hold_id=entry.hold_id,
                    deal_id=hold.deal_id,
                )
            )
        stream_ids = list(dict.fromkeys(line.stream_id for line in lines))
        sellers = []
        for stream_id in stream_ids:
            stream = await self._streams.find(stream_id)
            if stream is not None:
                sellers.append(stream.seller_id)
        seconds, micros = await self._redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        existing = await self._orders.find(order_id)
        order = existing or Order(
            id=order_id,
            status=OrderStatus.PAID,
            buyer_id=buyer.sub,
            buyer_name=buyer.name,
            stream_id=stream_ids[0],
            stream_ids=stream_ids,
            seller_ids=list(dict.fromkeys(sellers)),
            lines=lines,
            units=sum(line.quantity for line in lines),
            total=total,
            payment_provider=self._payments.name,
            payment_id=order_id,
            created_at=iso_time(now_ms) or "",
        )
        await self._orders.save(order, now_ms)
        return order


class _NothingHappened(Exception):
    """A refusal before any lasting effect: the idempotency record is dropped."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error
