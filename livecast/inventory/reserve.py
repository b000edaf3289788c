"""Atomic stock reservation: holds that expire, commits, releases, and multi-SKU commits.

Keys
----
Everything about one SKU lives under one hash tag, ``{sku:<SKU>}``, so each script below
touches one Redis Cluster slot and runs atomically::

    <prefix>{sku:S}:product            hash: catalog fields and the counters
                                           available      free to sell at the regular price
                                           held           in live holds (deal or not)
                                           sold           committed
                                           deal_reserved  carved into live deals, not yet held
    <prefix>{sku:S}:hold:<hold_id>     hash: state, qty, user, deal, expires, price, txn
    <prefix>{sku:S}:live               sorted set: live hold ids by expiry (ms)
    <prefix>{sku:S}:users              hash: user -> units held + bought (per-user limits)
    <prefix>{sku:S}:deal:<deal_id>     hash: a flash deal's quantity, window and counters
    <prefix>{sku:S}:deal:<id>:users    hash: user -> units held + bought in that deal
    <prefix>{sku:S}:deals              sorted set: the SKU's live deal ids by end time (ms);
                                       written with the carve, the sweeper's source of truth

The total stock of a SKU is ``available + held + sold + deal_reserved``; no script ever
lets a counter go negative, so the units promised never exceed the units that exist.
Time is always the Redis server's ``TIME``, never a node's clock.

One script per operation (the ``.lua`` files beside this module):

* ``reserve.lua``: check stock (or deal quantity and window), per-user limits and, for a
  stream's sale, that the stream may sell the product; create the hold (with the
  product's title and price as they are). Idempotent by hold id: a replay (a client
  retrying on timeout) returns the hold already made and reserves nothing more.
* ``release.lua``, ``expire.lua``: give units back (to the deal while it is live, else to
  free stock). Expiry is idempotent, so any number of nodes may sweep at once.
* ``commit.lua``: ``held -> committed``; checkout calls it.
* ``prepare.lua``, ``abort.lua``: the two-phase commit below.
* ``hold_void.lua``: takes a hold id that has no hold for good (a cart dropping a line
  whose reservation may still be on its way), so that reservation holds nothing.

A hold moves ``held -> committed | released | expired`` (:class:`HoldState`); during a
multi-SKU commit it is briefly ``preparing``, a sub-state of held that neither expires
nor can be released.

All-or-nothing commit of holds on several SKUs
----------------------------------------------
Different SKUs live in different slots, so no single script can see them all. A cart's
holds are committed in two phases with a decision record, :meth:`Reservations.commit_holds`:

1. *Prepare* every hold (``prepare.lua``): a held, unexpired hold becomes ``preparing``
   under the commit's ``txn`` id. Any failure (expired, released, unknown) aborts the
   prepared ones (``abort.lua``: back to ``held``) and the commit fails; nothing was sold.
2. *Decide*: ``SET <prefix>txn:<txn> commit NX``. This key is the single point of truth
   for the txn's outcome; whoever writes it first decides.
3. *Commit* every hold with that txn (``commit.lua``); each call is idempotent.

If a node dies between the phases, its prepared holds stay out of reach of buyers only
for ``prepare_window_s``: the sweeper then finds them (``expire.lua`` reports them),
writes ``abort`` with ``SET NX`` (losing to a ``commit`` already written) and applies
whatever the record says, rolling the txn forward or back everywhere. A checkout retried
with the same txn id replays safely: prepared and committed holds answer ``ok``.

Throughput
----------
Calls go through :class:`~livecast.inventory.batch.ScriptBatcher`, which sends every call
made during one loop tick as one pipeline of EVALSHAs, and folds the reservations of one
SKU made in that tick into one ``reserve.lua`` run (it takes many reservations, each
checked and applied in turn). Python work per call is flat: one argument tuple, one
future, one reply item.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from livecast.error_codes import ErrorCode
from livecast.errors import ApiError, Conflict, Unprocessable
from livecast.ids import is_sku
from livecast.inventory._private import text as _text
from livecast.inventory.batch import ScriptBatcher, Steps
from livecast.inventory.errors import raise_for_status
from livecast.inventory.money import Money
from livecast.redisdb import KeySpace, load_lua

__all__ = [
    "Expiry",
    "Hold",
    "HoldRef",
    "HoldState",
    "Reservations",
    "StockLevels",
    "is_hold_id",
]

_HERE = Path(__file__).parent
_HOLD_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_USER = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
_HOLD_FIELDS = (
    "state",
    "qty",
    "user",
    "expires",
    "price_minor",
    "currency",
    "deal",
    "txn",
    "title",
)


def is_hold_id(value: str) -> bool:
    return bool(_HOLD_ID.match(value))


class _HoldIds:
    """New hold ids, as :func:`livecast.ids.new_id` makes them (12 url-safe characters, 72
    random bits, never a leading "-"), drawn from the OS's random source in bulk: one
    read per 512 ids, not one system call per add-to-cart."""

    __slots__ = ("_at", "_drawn")
    _BATCH = 512

    def __init__(self) -> None:
        self._drawn = ""
        self._at = 0

    def __call__(self) -> str:
        while True:
            if self._at >= len(self._drawn):
                self._drawn = base64.urlsafe_b64encode(os.urandom(9 * self._BATCH)).decode()
                self._at = 0
            value = self._drawn[self._at : self._at + 12]
            self._at += 12
            if value[0] != "-":
                return value


# A reserve refusal's status word -> its code, looked up once per word.
_REFUSALS: dict[bytes, ErrorCode] = {}


class HoldState(StrEnum):
    HELD = "held"
    PREPARING = "preparing"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"

    def can_become(self, target: HoldState) -> bool:
        return target in _NEXT[self]

    @property
    def is_final(self) -> bool:
        return not _NEXT[self]


# The moves the scripts make; nothing else moves a hold.
_NEXT: dict[HoldState, frozenset[HoldState]] = {
    HoldState.HELD: frozenset(
        {HoldState.PREPARING, HoldState.COMMITTED, HoldState.RELEASED, HoldState.EXPIRED}
    ),
    HoldState.PREPARING: frozenset({HoldState.HELD, HoldState.COMMITTED}),
    HoldState.COMMITTED: frozenset(),
    HoldState.RELEASED: frozenset(),
    HoldState.EXPIRED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class HoldRef:
    """A hold is named by its SKU and its id (ids are unique per SKU)."""

    sku: str
    hold_id: str


@dataclass(frozen=True, slots=True)
class Hold:
    sku: str
    hold_id: str
    state: HoldState
    qty: int
    price: Money
    deal_id: str | None
    expires_at_ms: int
    # Units left to others right after this reservation (-1 on a replay: not known).
    left: int = -1
    replayed: bool = False
    # The commit that prepared or committed it ('' for none, or a single-hold commit);
    # known only when read with :meth:`Reservations.get_hold`.
    txn: str = ""
    # The product's title when the hold was made ('' for holds made before it was kept).
    title: str = ""
    # The server time of a reserve's answer (0 when read with get_hold).
    answered_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class Expiry:
    expired: int
    next_due_ms: int | None
    deals: list[str]
    stuck: list[tuple[str, str]]
    # Deals of the SKU whose end time has passed and that are not ended yet.
    deals_due: list[str]


@dataclass(frozen=True, slots=True)
class StockLevels:
    available: int
    held: int
    sold: int
    deal_reserved: int

    @property
    def total(self) -> int:
        return self.available + self.held + self.sold + self.deal_reserved


class Reservations:
    """Reserve, release and commit stock. Built once per app from its Redis."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        *,
        hold_ttl_s: float = 600,
        retention_s: float = 86_400,
        prepare_window_s: float = 30,
        max_qty: int = 100,
        batcher: ScriptBatcher | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_ms = int(hold_ttl_s * 1000)
        self._retention_ms = int(retention_s * 1000)
        self._prepare_ms = int(prepare_window_s * 1000)
        self._retention_arg = str(self._retention_ms)
        self.max_qty = max_qty
        self.batcher = batcher or ScriptBatcher(redis)
        self.new_hold_id = _HoldIds()
        self._reserve = load_lua(redis, _HERE / "reserve.lua")
        give_back = _HERE / "give_back.lua"
        self._release = load_lua(redis, _HERE / "release.lua", prelude=give_back)
        self._commit = load_lua(redis, _HERE / "commit.lua")
        self._prepare = load_lua(redis, _HERE / "prepare.lua")
        self._abort = load_lua(redis, _HERE / "abort.lua")
        self._void = load_lua(redis, _HERE / "hold_void.lua")
        self._expire = load_lua(redis, _HERE / "expire.lua", prelude=give_back)
        # What changed since the notifier and sweeper last looked: SKU -> earliest new
        # hold expiry (0 if none), deal id -> SKU. Plain dicts: a set item per call.
        self.dirty_skus: dict[str, int] = {}
        self.dirty_deals: dict[str, str] = {}

    def base(self, sku: str) -> str:
        """The SKU's key base, carrying its hash tag; every script takes it as KEYS[1]."""
        return self._keys.key("{sku:" + sku + "}")

    def txn_key(self, txn: str) -> str:
        return self._keys.key("txn", txn)

    async def reserve(
        self,
        sku: str,
        qty: int,
        user: str,
        hold_id: str,
        *,
        ttl_s: float | None = None,
        per_user_limit: int = 0,
        deal_id: str | None = None,
        stream_id: str | None = None,
        seller_id: str = "",
    ) -> Hold:
        """Hold ``qty`` units of ``sku`` for ``user`` until checkout or expiry.

        ``per_user_limit`` (0: none) caps the user's units held plus bought of this SKU;
        a deal's own per-buyer limit applies to its units as well. With ``stream_id`` (of
        seller ``seller_id``) the deal must run on that stream, and a product another
        seller owns must be granted to that stream or seller. Raises 404 ``unknown_sku``/
        ``unknown_deal``, 409 ``sold_out``, ``insufficient_stock``, ``over_limit``,
        ``deal_not_started``, ``deal_ended``, ``hold_conflict``, ``product_not_granted``,
        422 ``invalid_quantity``/``invalid_field``/``deal_not_in_stream``.
        """
        if type(qty) is not int or not 1 <= qty <= self.max_qty:
            raise Unprocessable(
                f"quantity must be a whole number from 1 to {self.max_qty}",
                code=ErrorCode.INVALID_QUANTITY,
            )
        if not is_sku(sku):
            raise_for_status("unknown_sku", sku)
        if not _HOLD_ID.match(hold_id):
            raise Unprocessable(
                "hold id must be 1-64 of A-Z a-z 0-9 _ -", code=ErrorCode.INVALID_FIELD
            )
        if not _USER.match(user):
            raise Unprocessable("user must be a subject id", code=ErrorCode.INVALID_FIELD)
        if deal_id is not None and not _HOLD_ID.match(deal_id):
            raise_for_status("unknown_deal", deal_id)
        if type(per_user_limit) is not int or per_user_limit < 0:
            raise Unprocessable("per-user limit must be 0 or more", code=ErrorCode.INVALID_FIELD)
        ttl_ms = self._ttl_ms if ttl_s is None else int(ttl_s * 1000)
        if ttl_ms <= 0:
            raise Unprocessable("hold ttl must be positive", code=ErrorCode.INVALID_FIELD)
        reply = await self.batcher.call_grouped(
            self._reserve,
            self.base(sku),
            (
                hold_id,
                qty,
                user,
                ttl_ms,
                per_user_limit,
                deal_id or "",
                stream_id or "",
                seller_id,
            ),
        )
        status = reply[0]
        if status == b"ok":
            expires = reply[3]
            seen = self.dirty_skus.get(sku)
            if not seen or expires < seen:
                self.dirty_skus[sku] = expires
            if deal_id:
                self.dirty_deals[deal_id] = sku
            return Hold(
                sku=sku,
                hold_id=hold_id,
                state=HoldState.HELD,
                qty=qty,
                price=Money(amount_minor=reply[4], currency=reply[5].decode()),
                deal_id=deal_id,
                expires_at_ms=expires,
                left=reply[7],
                title=_text(reply[8]),
                answered_at_ms=reply[9],
            )
        if status == b"exists":
            return self._hold_from_reply(sku, hold_id, reply, replayed=True)
        if status == b"error":
            raise RuntimeError(f"reserve.lua failed for {sku}/{hold_id}: {_text(reply[1])}")
        raise self.refusal(status, sku, reply, stream_id=stream_id, deal_id=deal_id)

    @staticmethod
    def refusal(
        status: bytes,
        sku: str,
        reply: Sequence[Any] = (),
        *,
        stream_id: str | None = None,
        deal_id: str | None = None,
    ) -> ApiError:
        """The error of a reservation refused with ``status`` (``reserve.lua``'s reply)."""
        code = _REFUSALS.get(status)
        if code is None:
            code = _REFUSALS[status] = ErrorCode.of(status.decode())
        details: dict[str, Any] = {"sku": sku}
        if status in (b"over_limit", b"insufficient_stock") and len(reply) > 2:
            details["have" if status == b"over_limit" else "left"] = reply[2]
        if status in (b"product_not_granted", b"deal_not_in_stream"):
            details["stream_id"] = stream_id
        if status == b"deal_not_in_stream":
            details["deal_id"] = deal_id
        return ApiError.of(code, f"{sku}: {code.meaning}", **details)

    def add_stock_read(self, steps: Steps, sku: str) -> Steps:
        """Add reading the SKU's free units and owner to a request's steps; with its
        reply, :meth:`refuse_if_sold_out` answers before any reservation is sent."""
        return steps.command("HMGET", self.base(sku) + ":product", "available", "owner")

    def refuse_if_sold_out(self, sku: str, stock: Sequence[Any], qty: int, seller_id: str) -> None:
        """Raise the ``sold_out`` refusal that :meth:`reserve` would give, when the stock
        read (:meth:`add_stock_read`) shows it, for ``qty`` units outside any deal, under a
        hold id never used, by a stream of ``seller_id``; else return (reserve decides).
        The read and the refusal are one moment: no free unit was left then, so nothing is
        held, and the script need not run."""
        available, owner = stock
        if available != b"0" or not 1 <= qty <= self.max_qty:
            return
        if owner and owner.decode() != seller_id:
            return  # another seller's product: reserve.lua checks the grant first
        raise self.refusal(b"sold_out", sku)

    def _hold_from_reply(self, sku: str, hold_id: str, reply: Any, *, replayed: bool) -> Hold:
        deal = _text(reply[6])
        return Hold(
            sku=sku,
            hold_id=hold_id,
            state=HoldState(_text(reply[1])),
            qty=int(reply[2]),
            price=Money(amount_minor=int(reply[4]), currency=_text(reply[5])),
            deal_id=deal or None,
            expires_at_ms=int(reply[3]),
            replayed=replayed,
            title=_text(reply[8]),
            answered_at_ms=int(reply[9]),
        )

    async def release(self, sku: str, hold_id: str) -> HoldState:
        """Give the hold's units back. Idempotent; 409 ``not_held`` once committed or expired."""
        self._check_ref(sku, hold_id)
        status, state = await self.batcher.call(
            self._release, (self.base(sku), hold_id, self._retention_arg)
        )
        if status != b"ok":
            raise_for_status(status.decode(), f"{sku}/{hold_id}", state=_text(state))
        self._touched(sku, await self.get_hold(sku, hold_id))
        return HoldState(_text(state))

    async def commit(self, sku: str, hold_id: str) -> Hold:
        """``held -> committed``: the units are sold. Idempotent.

        409 ``hold_expired`` past its expiry (the sweeper returns it to stock),
        ``not_held`` once released, expired, or committed by a multi-SKU commit.
        """
        self._check_ref(sku, hold_id)
        return await self._commit_one(sku, hold_id, "")

    async def _commit_one(self, sku: str, hold_id: str, txn: str) -> Hold:
        reply = await self.batcher.call(
            self._commit, (self.base(sku), hold_id, txn, self._retention_arg)
        )
        return self._committed(sku, hold_id, txn, reply)

    def _committed(self, sku: str, hold_id: str, txn: str, reply: Any) -> Hold:
        """The hold ``commit.lua`` answered for; raises its refusal."""
        status = reply[0]
        if status != b"ok":
            raise_for_status(status.decode(), f"{sku}/{hold_id}", state=_text(reply[1]))
        deal = _text(reply[5])
        hold = Hold(
            sku=sku,
            hold_id=hold_id,
            state=HoldState.COMMITTED,
            qty=int(reply[2]),
            price=Money(amount_minor=int(reply[3]), currency=_text(reply[4])),
            deal_id=deal or None,
            expires_at_ms=int(reply[6]),
            txn=txn,
            title=_text(reply[7]),
        )
        self._touched(sku, hold)
        return hold

    async def commit_holds(self, refs: Sequence[HoldRef], txn: str) -> list[Hold]:
        """Commit holds on any number of SKUs, all or nothing (see the module docstring).

        ``txn`` names this commit (a checkout id); retrying with the same id is safe.
        Raises 409 ``commit_failed`` with ``failed`` (``[{sku, hold_id, code}]``) and
        commits nothing if any hold cannot be committed.
        """
        if not refs:
            raise Unprocessable("nothing to commit", code=ErrorCode.INVALID_QUANTITY)
        if not _HOLD_ID.match(txn):
            raise Unprocessable(
                "txn id must be 1-64 of A-Z a-z 0-9 _ -", code=ErrorCode.INVALID_FIELD
            )
        if len(set(refs)) != len(refs):
            raise Unprocessable("a hold is listed twice", code=ErrorCode.INVALID_FIELD)
        for ref in refs:
            self._check_ref(ref.sku, ref.hold_id)
        # Each phase is one entry of the batch: one future for all of a cart's holds.
        window = str(self._prepare_ms)
        prepares = Steps()
        for ref in refs:
            prepares.call(self._prepare, (self.base(ref.sku), ref.hold_id, txn, window))
        replies = await self.batcher.send(prepares)
        failed = [
            {
                "sku": ref.sku,
                "hold_id": ref.hold_id,
                "code": ErrorCode.of(_text(status)),
                "state": _text(st),
            }
            for ref, (status, st) in zip(refs, replies, strict=True)
            if status != b"ok"
        ]
        if not failed:
            decided = await self._decide(txn, "commit")
            if decided != "commit":
                failed = [{"sku": "", "hold_id": "", "code": ErrorCode.ABORTED, "state": ""}]
        if failed:
            await self._abort_all(refs, txn)
            raise Conflict(
                "the holds could not all be committed; none was",
                code=ErrorCode.COMMIT_FAILED,
                failed=failed,
            )
        commits = Steps()
        for ref in refs:
            commits.call(self._commit, (self.base(ref.sku), ref.hold_id, txn, self._retention_arg))
        replies = await self.batcher.send(commits)
        return [
            self._committed(ref.sku, ref.hold_id, txn, reply)
            for ref, reply in zip(refs, replies, strict=True)
        ]

    async def decision(self, txn: str) -> str | None:
        """The recorded outcome of ``txn`` (``commit`` or ``abort``), or None if undecided."""
        recorded = await self.batcher.command("GET", self.txn_key(txn))
        return _text(recorded) if recorded is not None else None

    async def decide(self, txn: str, outcome: str) -> str:
        """Record ``outcome`` for ``txn`` unless one is recorded; return the one that holds.
        A checkout's recovery decides ``abort`` so a commit still in flight cannot land."""
        return await self._decide(txn, outcome)

    async def abort_holds(self, refs: Sequence[HoldRef], txn: str) -> None:
        """Undo ``txn``'s prepare of these holds (held again); idempotent, and a no-op for a
        hold the txn never prepared or already committed."""
        await self._abort_all(refs, txn)
        for ref in refs:
            self._touched(ref.sku, None)

    async def _decide(self, txn: str, outcome: str) -> str:
        """Record ``outcome`` for ``txn`` unless one is recorded; return the one that holds."""
        key = self.txn_key(txn)
        # One round trip: the GET, sent right behind the SET, reads the winner when ours lost.
        written, recorded = await self.batcher.send(
            Steps().command("SET", key, outcome, "NX", "PX", self._retention_ms).command("GET", key)
        )
        if written:
            return outcome
        return _text(recorded) if recorded is not None else outcome

    async def _abort_all(self, refs: Sequence[HoldRef], txn: str) -> None:
        aborts = Steps()
        for ref in refs:
            aborts.call(self._abort, (self.base(ref.sku), ref.hold_id, txn))
        await self.batcher.send(aborts)

    async def settle_stuck(self, sku: str, hold_id: str, txn: str) -> str:
        """Finish a commit whose coordinator went away: apply (or record) its decision."""
        decision = await self._decide(txn, "abort")
        if decision == "commit":
            await self.batcher.call(
                self._commit, (self.base(sku), hold_id, txn, self._retention_arg)
            )
        else:
            await self.batcher.call(self._abort, (self.base(sku), hold_id, txn))
        self.dirty_skus.setdefault(sku, 0)
        return decision

    async def expire_due(self, sku: str, *, batch: int = 500) -> Expiry:
        """Return the SKU's expired holds to stock (any node, any time: idempotent)."""
        reply = await self.batcher.call(self._expire, (self.base(sku), batch, self._retention_arg))
        expired, next_due, deals, stuck, txns, deals_due = reply
        deal_ids = [_text(d) for d in deals]
        if expired:
            self.dirty_skus.setdefault(sku, 0)
            for deal_id in deal_ids:
                self.dirty_deals[deal_id] = sku
        return Expiry(
            expired=int(expired),
            next_due_ms=None if next_due < 0 else int(next_due),
            deals=deal_ids,
            stuck=[(_text(h), _text(t)) for h, t in zip(stuck, txns, strict=True)],
            deals_due=[_text(d) for d in deals_due],
        )

    async def hold_or_void(self, sku: str, user: str, hold_id: str) -> Hold | None:
        """The hold, or, if there is none, None for good: the id is taken (``hold_void.lua``)
        so a reservation still on its way for it finds it used and holds nothing."""
        if not is_sku(sku) or not _HOLD_ID.match(hold_id) or not _USER.match(user):
            return None
        voided = await self.batcher.call(
            self._void, (self.base(sku), hold_id, user, self._retention_arg)
        )
        return None if voided else await self.get_hold(sku, hold_id)

    async def get_hold(self, sku: str, hold_id: str) -> Hold | None:
        if not is_sku(sku) or not _HOLD_ID.match(hold_id):
            return None
        raw: list[Any] = await self.batcher.command(
            "HMGET", self.base(sku) + ":hold:" + hold_id, *_HOLD_FIELDS
        )
        return _hold_from_fields(sku, hold_id, raw)

    async def get_holds(self, refs: Sequence[HoldRef]) -> list[Hold | None]:
        """Several holds (None for each that does not exist), read in one entry of the batch."""
        reads = Steps()
        for ref in refs:
            if is_sku(ref.sku) and _HOLD_ID.match(ref.hold_id):
                reads.command("HMGET", self.base(ref.sku) + ":hold:" + ref.hold_id, *_HOLD_FIELDS)
        raws = iter(await self.batcher.send(reads) if reads else ())
        return [
            _hold_from_fields(ref.sku, ref.hold_id, next(raws))
            if is_sku(ref.sku) and _HOLD_ID.match(ref.hold_id)
            else None
            for ref in refs
        ]

    async def stock(self, sku: str) -> StockLevels | None:
        raw: list[Any] = await self._redis.hmget(
            self.base(sku) + ":product", ["available", "held", "sold", "deal_reserved"]
        )
        if raw[0] is None:
            return None
        return StockLevels(*(int(v) for v in raw))

    def _check_ref(self, sku: str, hold_id: str) -> None:
        if not is_sku(sku):
            raise_for_status("unknown_sku", sku)
        if not _HOLD_ID.match(hold_id):
            raise_for_status("unknown_hold", hold_id)

    def _touched(self, sku: str, hold: Hold | None) -> None:
        self.dirty_skus.setdefault(sku, 0)
        if hold is not None and hold.deal_id:
            self.dirty_deals[hold.deal_id] = sku


def _hold_from_fields(sku: str, hold_id: str, raw: list[Any]) -> Hold | None:
    """A hold from the values of ``_HOLD_FIELDS`` (HMGET), or None if it does not exist."""
    if raw[0] is None:
        return None
    return Hold(
        sku=sku,
        hold_id=hold_id,
        state=HoldState(_text(raw[0])),
        qty=int(raw[1]),
        price=Money(amount_minor=int(raw[4]), currency=_text(raw[5])),
        deal_id=_text(raw[6]) or None,
        expires_at_ms=int(raw[3]),
        txn=_text(raw[7]) if raw[7] is not None else "",
        title=_text(raw[8]) if raw[8] is not None else "",
    )
