"""Checkout: a buyer's holds become one paid order, exactly once, whatever stops midway.

Idempotency. Every checkout carries an ``Idempotency-Key``. The first request with a key
stores a record (``SET NX``) and takes a short lease under its own token, which only it
gives back (also when the lease's reply was lost, so a lease nobody runs under never
holds retries off); the same key again:

* with a different body (fingerprint) is 422 ``idempotency_key_reused``;
* after success returns the same order, and charges and sells nothing more;
* after a decline returns the same decline;
* while the first is still running waits for its outcome (or 409 after a while);
* after the first stopped midway (its lease ran out, or it failed and gave it back)
  finishes it from the journal, with the same order id.

The journal. Before the payment provider is called, the record becomes ``paying`` and
holds everything needed to finish or undo the checkout from Redis alone: the order id,
the buyer, the cart lines (each hold's SKU and id) and the total. It is listed in
``<prefix>{checkouts}:open`` (a sorted set of ``<record key>#<order id>`` scored by when
its lease runs out) until the checkout is done, declined or voided. Every step after that
is idempotent by the order id: the provider's authorization, capture and void, the
all-or-nothing commit of the holds (the order id is its txn, and ``<prefix>txn:<order id>``
its one decision), the order record, the stats marker, the webhook event ids.

Recovery. Every node runs :meth:`Checkout.recover`: each interval it takes the lease of
every open checkout whose lease ran out and settles it, by the txn's decision:

* ``commit`` recorded (the holds are the buyer's): commit the rest, capture, store the
  order, count it, enqueue its webhooks, clear the cart, record the key done;
* nothing recorded: record ``abort`` first (``SET NX``, so a commit still in flight
  cannot land after it), then give prepared holds back to the cart (held again),
  void the payment, and drop the record;
* ``abort`` recorded: the same undo.

A buyer's retry with the same key does the same, except that with nothing decided it
carries on paying (the buyer is there to pay); after an undo it starts over with a new
order id, so the retry still returns an order while the holds last.

Order of steps, chosen so that a failure leaves stock exact and money untouched:

1. read the cart's holds; refuse if any is no longer held: expired or released
   (``hold_expired``), bought by another order (``hold_committed``) or being committed by
   another checkout (``hold_in_checkout``), so no payment is even authorized; a refusal
   keeps no record, so the buyer may fix the cart and retry with the same key;
2. journal the checkout (record ``paying``, listed as open);
3. authorize the total (a decline leaves every hold as it was);
4. commit all holds at once (a hold that expired in between fails the whole commit; the
   authorization is voided, the remaining holds stay held, and no record is kept);
5. capture; store the order, count it, enqueue ``order.created`` and ``order.paid``
   and clear its lines from the cart (one ordered batch: the order lands first); then
   record the key done and take it off the open set (one ordered batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from livecast.auth import Identity
from livecast.cart.cart import CartEntry, CartStore
from livecast.cart.orders import Order, OrderLine, OrderStatus, OrderStore, line_source
from livecast.cart.payments import PaymentDeclined, PaymentProvider, PaymentState
from livecast.cart.stats import SalesStats, source_totals
from livecast.cart.webhooks import WebhookDispatcher
from livecast.error_codes import ErrorCode
from livecast.errors import ApiError, Conflict, Unprocessable
from livecast.ids import new_id
from livecast.inventory.batch import Steps
from livecast.inventory.money import Money
from livecast.inventory.reserve import Hold, HoldRef, HoldState, Reservations
from livecast.redisdb import KeySpace, load_lua
from livecast.streams.registry import StreamRegistry, iso_time

__all__ = ["Checkout", "CheckoutRequest", "CheckoutResult", "RecoveryReport"]

log = logging.getLogger(__name__)

_HERE = Path(__file__).parent
_RECORD_TTL_MS = 7 * 86_400 * 1000


class CheckoutRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    card_number: str | None = None


class _Status(StrEnum):
    PENDING = "pending"  # recorded; nothing has happened yet
    PAYING = "paying"  # journaled: the payment may be authorized, holds committed
    DONE = "done"
    DECLINED = "declined"


_RUNNABLE = frozenset({_Status.PENDING, _Status.PAYING})


class _Record(msgspec.Struct, kw_only=True):
    fingerprint: str
    order_id: str
    status: _Status
    decline_reason: str = ""
    # The journal, written before the payment provider is called.
    buyer_id: str = ""
    buyer_name: str = ""
    lines: list[CartEntry] = []
    total: Money | None = None
    # Server time of the journal: the order's creation time.
    journaled_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    order: Order
    replayed: bool


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    finished: int
    voided: int


# A buyer's cart lines and the server's time (ms) when they were read.
_Cart = tuple[list[CartEntry], int]


class _Undone(Exception):
    """The journaled checkout was undone (payment voided, holds held again)."""


class _NothingHappened(Exception):
    """A refusal before any lasting effect: the idempotency record is dropped."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


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
        lease_s: float = 10.0,
        wait_s: float = 15.0,
        recovery_interval_s: float = 1.0,
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
        self._recovery_interval_s = recovery_interval_s
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(_Record)
        # Most commands ride in the batched pipelines of the reservations.
        self._batcher = reservations.batcher
        self._release_lease = load_lua(redis, _HERE / "lease_release.lua")
        # A stream's seller never changes.
        self._sellers: dict[str, str] = {}
        self._forget_record = load_lua(redis, _HERE / "record_forget.lua")
        self.open_key = keys.key("{checkouts}", "open")
        self._running = True

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
            record, leased, cart = await self._open(
                buyer.sub, record_key, lease_key, token, fingerprint
            )
            if record.fingerprint == fingerprint and record.status in _RUNNABLE and leased:
                break
            if leased:
                await self._give_back(lease_key, token)
            if record.fingerprint != fingerprint:
                raise Unprocessable(
                    "this Idempotency-Key was used with a different request",
                    code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
                )
            if record.status is _Status.DONE:
                return CheckoutResult(await self._orders.get(record.order_id), replayed=True)
            if record.status is _Status.DECLINED:
                raise _declined(record.decline_reason)
            if asyncio.get_running_loop().time() > deadline:
                raise Conflict(
                    "a checkout with this Idempotency-Key is still running; retry shortly",
                    code=ErrorCode.CHECKOUT_IN_PROGRESS,
                )
            await asyncio.sleep(0.05)
        given_back = False
        try:
            while True:
                try:
                    order = await self._run(buyer, record, request, record_key, cart)
                    break
                except _Undone:
                    # An earlier run under this key was undone; this one starts over.
                    record, _ = await self._record(record_key, fingerprint)
                    cart = None
            await self._close(record_key, record, lease=(lease_key, token))
            given_back = True
        except _NothingHappened as exc:
            await self._forget(record_key, record.order_id)
            raise exc.error from None
        except BaseException:
            # Stopped midway (Redis, the provider, a cancelled request): the recovery
            # pass may settle it as soon as the lease is given back.
            with contextlib.suppress(RedisError, OSError):
                await self._redis.zadd(
                    self.open_key, {_member(record_key, record.order_id): 0}, xx=True
                )
            raise
        finally:
            if not given_back:
                await self._give_back(lease_key, token)
        return CheckoutResult(order, replayed=False)

    async def _open(
        self, buyer_id: str, record_key: str, lease_key: str, token: str, fingerprint: str
    ) -> tuple[_Record, bool, _Cart | None]:
        """Create (or read) the key's record and try to take its lease, in one round trip:
        the record, whether this run holds the lease, and, if this call created the record,
        the buyer's cart and the server's time, read in the same round trip after the lease
        (what a new checkout reads first; for a record found, None: they are read again)."""
        candidate = _Record(
            fingerprint=fingerprint, order_id=f"ord_{new_id(12)}", status=_Status.PENDING
        )
        steps = (
            Steps()
            .command("SET", record_key, self._encoder.encode(candidate), "NX", "PX", _RECORD_TTL_MS)
            .command("GET", record_key)
            .command("SET", lease_key, token, "NX", "PX", self._lease_ms)
        )
        self._carts.add_read(steps, buyer_id).command("TIME")
        try:
            created, raw, leased, cart, (seconds, micros) = await self._batcher.send(steps)
        except BaseException:
            # The lease may be set with its reply lost: see _lease.
            with contextlib.suppress(RedisError, OSError):
                await self._give_back(lease_key, token)
            raise
        if created:
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            return candidate, bool(leased), (self._carts.decode_entries(cart), now_ms)
        if raw is None:
            record, _ = await self._record(record_key, fingerprint)
            return record, bool(leased), None
        return self._decoder.decode(raw), bool(leased), None

    def _give_back(self, lease_key: str, token: str) -> asyncio.Future[Any]:
        return self._batcher.call(self._release_lease, (lease_key, token))

    async def _lease(self, lease_key: str, token: str) -> bool:
        """Take the key's lease for this run, if no other run holds it."""
        try:
            return bool(await self._redis.set(lease_key, token, nx=True, px=self._lease_ms))
        except BaseException:
            # The SET may have applied with its reply lost (the request was cancelled,
            # the connection dropped): a lease nobody runs under would hold this key's
            # retries off until it expires.
            with contextlib.suppress(RedisError, OSError):
                await self._give_back(lease_key, token)
            raise

    async def _record(self, record_key: str, fingerprint: str) -> tuple[_Record, bool]:
        """The key's record, created if there is none; and whether this call created it."""
        candidate = _Record(
            fingerprint=fingerprint, order_id=f"ord_{new_id(12)}", status=_Status.PENDING
        )
        created = await self._batcher.command(
            "SET", record_key, self._encoder.encode(candidate), "NX", "PX", _RECORD_TTL_MS
        )
        if created:
            return candidate, True
        raw = await self._batcher.command("GET", record_key)
        if raw is None:  # expired or deleted between the two calls: try again
            return await self._record(record_key, fingerprint)
        return self._decoder.decode(raw), False

    def _save(self, record_key: str, record: _Record) -> asyncio.Future[Any]:
        return self._batcher.send(self._add_save(Steps(), record_key, record))

    def _add_save(self, steps: Steps, record_key: str, record: _Record) -> Steps:
        return steps.command("SET", record_key, self._encoder.encode(record), "PX", _RECORD_TTL_MS)

    def _close(
        self, record_key: str, record: _Record, *, lease: tuple[str, str] | None = None
    ) -> Awaitable[list[Any]]:
        """Once the order is finished: record the key done, then take the checkout off
        the open set (and give the ``lease`` back), in one ordered batch. Were the record
        refused while the rest applied, the order is stored and finished all the same,
        and a retry with the key finds it and records the key done."""
        done = msgspec.structs.replace(record, status=_Status.DONE)
        steps = self._add_save(Steps(), record_key, done).command(
            "ZREM", self.open_key, _member(record_key, record.order_id)
        )
        if lease is not None:
            steps.call(self._release_lease, lease)
        return self._batcher.send(steps)

    async def _forget(self, record_key: str, order_id: str) -> None:
        """Drop the record (the key may be used afresh) and its open-checkout entry."""
        await self._batcher.call(self._forget_record, (record_key, order_id))
        await self._batcher.command("ZREM", self.open_key, _member(record_key, order_id))

    async def _run(
        self,
        buyer: Identity,
        record: _Record,
        request: CheckoutRequest,
        record_key: str,
        cart: _Cart | None,
    ) -> Order:
        """Run the key's checkout; ``cart`` is the cart and the time :meth:`_open` read
        when it created the record (None when it did not: they are read here)."""
        if record.status is _Status.PAYING:
            return await self._pay(record, record_key, request.card_number, fresh=False)
        order_id = record.order_id
        if cart is None:
            stored = await self._orders.find(order_id)
            if stored is not None:
                # A record written before the journal existed, whose run stored the order.
                return await self._finish(stored)
            raw_cart, (seconds, micros) = await asyncio.gather(
                self._carts.read_entries(buyer.sub), self._batcher.command("TIME")
            )
            cart = self._carts.decode_entries(raw_cart), int(seconds) * 1000 + int(micros) // 1000
        entries, now_ms = cart
        if not entries:
            raise _NothingHappened(Unprocessable("the cart is empty", code=ErrorCode.EMPTY_CART))
        holds = await self._live_holds(entries, order_id, now_ms)
        currencies = {hold.price.currency for hold in holds}
        if len(currencies) > 1:
            raise _NothingHappened(
                Unprocessable(
                    f"the cart mixes currencies ({', '.join(sorted(currencies))}); "
                    "check out one currency at a time",
                    code=ErrorCode.MIXED_CURRENCIES,
                )
            )
        total = Money(
            amount_minor=sum(h.price.amount_minor * h.qty for h in holds),
            currency=currencies.pop(),
        )
        journaled = msgspec.structs.replace(
            record,
            status=_Status.PAYING,
            buyer_id=buyer.sub,
            buyer_name=buyer.name,
            lines=entries,
            total=total,
            journaled_at_ms=now_ms,
        )
        # Both are written before the provider is called, so money never moves unseen.
        await self._batcher.send(
            self._add_save(
                Steps().command(
                    "ZADD", self.open_key, now_ms + self._lease_ms, _member(record_key, order_id)
                ),
                record_key,
                journaled,
            )
        )
        return await self._pay(journaled, record_key, request.card_number, fresh=True)

    async def _pay(
        self, record: _Record, record_key: str, card_number: str | None, *, fresh: bool
    ) -> Order:
        """Run (or resume) a journaled checkout for the buyer: authorize, commit, finish.
        A ``fresh`` journal, just written by this run, has nothing to resume."""
        order_id = record.order_id
        decision = None
        if not fresh:
            stored = await self._orders.find(order_id)
            if stored is not None:
                return await self._finish(stored)
            decision = await self._reservations.decision(order_id)
        if decision == "abort":
            await self._undo(record, record_key)
            raise _Undone
        refs = _refs(record)
        if decision is None:
            assert record.total is not None
            try:
                await self._payments.authorize(
                    order_id, record.total, buyer=record.buyer_id, card_number=card_number
                )
            except PaymentDeclined as exc:
                if exc.payment.state is PaymentState.VOIDED:
                    # This run outlived its lease and the recovery pass voided it.
                    await self._undo(record, record_key)
                    raise _Undone from None
                declined = msgspec.structs.replace(
                    record, status=_Status.DECLINED, decline_reason=str(exc)
                )
                await self._save(record_key, declined)
                await self._redis.zrem(self.open_key, _member(record_key, order_id))
                raise _declined(str(exc)) from None
            try:
                committed = await self._reservations.commit_holds(refs, txn=order_id)
            except ApiError as exc:
                await self._payments.void(order_id)
                raise _NothingHappened(exc) from None
        else:
            committed = await self._reservations.commit_holds(refs, txn=order_id)
        return await self._complete(record, committed, fresh=fresh)

    async def _complete(self, record: _Record, committed: list[Hold], *, fresh: bool) -> Order:
        """The holds are committed: take the money, store the order, finish.

        The order is stored once the money is taken. A fresh checkout indexes it while
        the capture is under way and stores it with the rest of :meth:`_finish` (two
        round trips fewer): an index entry with no order behind it is skipped by
        readers, and a resumed checkout captures and saves it."""
        if fresh:
            order, created_ms = await self._new_order(record, committed)
            # Queued now, sent with the capture's first call to Redis (the test provider's
            # only one): no task to run the two side by side.
            indexed = asyncio.ensure_future(self._orders.index(order, created_ms))
            try:
                await self._payments.capture(record.order_id)
            except BaseException:
                indexed.cancel()
                raise
            await indexed
            return await self._finish(order, store=True)
        await self._payments.capture(record.order_id)
        stored = await self._orders.find(record.order_id)
        if stored is None:
            stored, created_ms = await self._new_order(record, committed)
            await self._orders.save(stored, created_ms)
        return await self._finish(stored)

    async def _undo(self, record: _Record, record_key: str) -> None:
        """The txn's decision is ``abort``: holds held again, payment voided, record gone."""
        await self._reservations.abort_holds(_refs(record), record.order_id)
        await self._payments.void(record.order_id)
        await self._forget(record_key, record.order_id)

    async def _finish(self, order: Order, *, store: bool = False) -> Order:
        """Once the money is taken: store the order (``store``: it is indexed, not yet
        stored), count it, enqueue its events and clear its lines from the cart, in one
        round trip, the order first. Idempotent, so a resumed checkout repeats it. The
        caller then records the key done (:meth:`_close`)."""
        steps = self._orders.add_put(Steps(), order) if store else Steps()
        for stream_id in order.stream_ids:
            mine = [line for line in order.lines if line.stream_id == stream_id]
            if mine:
                self._stats.add_count_order(
                    steps,
                    stream_id,
                    order.id,
                    units=sum(line.quantity for line in mine),
                    amount=Money(
                        amount_minor=sum(line.line_total.amount_minor for line in mine),
                        currency=order.total.currency,
                    ),
                    buyer_id=order.buyer_id,
                    by_source=source_totals(mine),
                )
        self._carts.add_remove(steps, order.buyer_id, *(line.hold_id for line in order.lines))
        finished = self._batcher.send(steps)
        if self._webhooks.enabled:
            payload = msgspec.to_builtins(order)
            await asyncio.gather(
                finished,
                *(
                    self._webhooks.enqueue(event, payload, event_id=f"evt_{order.id}_{suffix}")
                    for event, suffix in (("order.created", "created"), ("order.paid", "paid"))
                ),
            )
        else:
            await finished
        return order

    async def _live_holds(self, entries: list[CartEntry], order_id: str, now_ms: int) -> list[Hold]:
        """The cart's holds, if all are still this order's to commit. A hold this order
        (its id is the commit's txn) prepared or committed in an earlier, interrupted run
        passes: committing it again is a no-op."""
        found = await self._reservations.get_holds(
            [HoldRef(sku=e.sku, hold_id=e.hold_id) for e in entries]
        )
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
                    code=ErrorCode.HOLD_EXPIRED,
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
                    code=ErrorCode.HOLD_COMMITTED,
                    holds=bought,
                )
            )
        busy = [h.hold_id for h in others if h.state is HoldState.PREPARING]
        if busy:
            raise _NothingHappened(
                Conflict(
                    "some items are being checked out by another checkout; "
                    "retry once it has finished",
                    code=ErrorCode.HOLD_IN_CHECKOUT,
                    holds=busy,
                )
            )
        return held

    async def _new_order(self, record: _Record, committed: list[Hold]) -> tuple[Order, int]:
        """The journaled checkout's order, and its creation time (ms), not yet stored."""
        assert record.total is not None
        by_id = {hold.hold_id: hold for hold in committed}
        lines = []
        for entry in record.lines:
            hold = by_id[entry.hold_id]
            lines.append(
                OrderLine(
                    sku=entry.sku,
                    title=hold.title or entry.title,
                    quantity=hold.qty,
                    unit_price=hold.price,
                    line_total=Money(
                        amount_minor=hold.price.amount_minor * hold.qty,
                        currency=hold.price.currency,
                    ),
                    stream_id=entry.stream_id,
                    hold_id=entry.hold_id,
                    deal_id=hold.deal_id,
                    source=line_source(entry.source),
                )
            )
        stream_ids = list(dict.fromkeys(line.stream_id for line in lines))
        sellers = []
        for stream_id in stream_ids:
            seller = self._sellers.get(stream_id)
            if seller is None:
                # In the batched pipeline: a sale's first checkouts all arrive before the
                # first answer fills the cache.
                raw = await self._batcher.command(
                    "HGET", self._streams.hash_key(stream_id), "seller_id"
                )
                if raw is None:
                    continue
                seller = self._sellers[stream_id] = raw.decode()
            sellers.append(seller)
        now_ms = record.journaled_at_ms
        if not now_ms:
            seconds, micros = await self._batcher.command("TIME")
            now_ms = int(seconds) * 1000 + int(micros) // 1000
        order = Order(
            id=record.order_id,
            status=OrderStatus.PAID,
            buyer_id=record.buyer_id,
            buyer_name=record.buyer_name,
            stream_id=stream_ids[0],
            stream_ids=stream_ids,
            seller_ids=list(dict.fromkeys(sellers)),
            lines=lines,
            units=sum(line.quantity for line in lines),
            total=record.total,
            payment_provider=self._payments.name,
            payment_id=record.order_id,
            created_at=iso_time(now_ms) or "",
        )
        return order, now_ms

    # -- recovery -------------------------------------------------------------------

    def stop(self) -> None:
        """Make :meth:`recover` return after its current pass (the owner also cancels it)."""
        self._running = False

    async def recover(self) -> None:
        """Settle checkouts left midway, every interval, until stopped (one per node)."""
        while self._running:
            await asyncio.sleep(self._recovery_interval_s)
            try:
                await self.recover_once()
            except Exception:
                log.exception("checkout recovery pass failed; retrying next interval")

    async def recover_once(self) -> RecoveryReport:
        """Finish or undo every open checkout whose lease ran out (see the module doc)."""
        seconds, micros = await self._redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        due: Any = await self._redis.zrangebyscore(self.open_key, "-inf", now_ms, start=0, num=100)
        finished = voided = 0
        for raw_member in due:
            record_key, _, order_id = raw_member.decode().rpartition("#")
            token = new_id(16)
            lease_key = record_key + ":lease"
            if not await self._lease(lease_key, token):
                continue
            try:
                outcome = await self._settle(record_key, order_id)
            except Exception:
                log.exception("could not settle checkout %s; retrying next pass", record_key)
                continue
            finally:
                await self._release_lease(keys=[lease_key], args=[token])
            if outcome == "finished":
                finished += 1
                log.info("recovered checkout %s: order finished", record_key)
            elif outcome == "voided":
                voided += 1
                log.info("recovered checkout %s: payment voided, holds held again", record_key)
        return RecoveryReport(finished=finished, voided=voided)

    async def _settle(self, record_key: str, order_id: str) -> str:
        raw = await self._redis.get(record_key)
        record = self._decoder.decode(raw) if raw is not None else None
        if record is None or record.order_id != order_id or record.status is not _Status.PAYING:
            # Settled already (done, declined, undone and maybe started over).
            await self._redis.zrem(self.open_key, _member(record_key, order_id))
            return "closed"
        stored = await self._orders.find(record.order_id)
        if stored is not None:
            await self._finish(stored)
        elif await self._reservations.decide(record.order_id, "abort") == "commit":
            committed = await self._reservations.commit_holds(_refs(record), txn=record.order_id)
            await self._complete(record, committed, fresh=False)
        else:
            await self._undo(record, record_key)
            return "voided"
        await self._close(record_key, record)
        return "finished"


def _declined(reason: str) -> ApiError:
    return ApiError.of(ErrorCode.PAYMENT_DECLINED, f"payment declined: {reason}")


def _member(record_key: str, order_id: str) -> str:
    """A checkout's entry in the open set: its record key and its order id, so settling
    an older attempt never touches a newer one under the same key."""
    return f"{record_key}#{order_id}"


def _refs(record: _Record) -> list[HoldRef]:
    return [HoldRef(sku=line.sku, hold_id=line.hold_id) for line in record.lines]
