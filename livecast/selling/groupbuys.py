"""Group buys: a price that drops as buyers join before a deadline. Each member's payment
is authorized when they join and captured at the final price, or voided if the group
fails.

A group buy moves ``running -> capturing -> succeeded`` or ``running -> voiding ->
failed`` (:class:`GroupBuyState`); each member ``pending -> authorized -> captured`` or
``... -> voided`` (:class:`MemberState`). One Lua script per move, each on the keys of
the product's SKU (one hash slot):

* ``groupbuy_start.lua`` opens it: a price tier table (thresholds rising, prices
  falling), the members it needs to succeed, a cap and an end time. No unit moves yet;
* ``groupbuy_join.lua`` takes one unit out of free stock (counted in ``deal_reserved``
  beside flash deals' carves: never more than exist, never sold twice) and makes the
  buyer a pending member with a payment id (the id their order will have). The payment
  provider then authorizes the top price (the first tier's: the price only falls, so
  the final price is never above what was authorized) and ``groupbuy_confirm.lua``
  counts the member. A decline gives the unit back. Idempotent by the buyer's key: a
  retried join resumes a pending one and answers the same member;
* ``groupbuy_leave.lua``: a member leaves before the end (authorized -> leaving); the
  payment is voided and the unit returns (``groupbuy_settle.lua``);
* ``groupbuy_close.lua``: at the end time (any node's sweep, exactly once) or when the
  host ends it: with ``min_buyers`` authorized members it succeeds at the lowest price
  reached (``capturing``), else it fails (``voiding``);
* ``groupbuy_settle.lua`` settles one member after the provider did: captured (the
  unit is sold; an order is stored first, counted in the stream's sales, sent to the
  webhooks, listed in the buyer's orders) or voided (the unit returns to free stock);
* ``groupbuy_finish.lua`` ends the settlement once no member is left to settle.

Never a paid order lost. The group buy's hash is the journal: once closed, it and its
members say what is left to do, and every step is idempotent by the member's payment id
(the provider's capture and void, the order record, the stats marker, the webhook event
ids, the settle script). The group buy stays in ``groupbuys:due`` until its settlement
has finished, so whichever node sweeps next (one at a time per group buy, under a short
lease) finishes a settlement that stopped midway: a member ends captured with an order,
or voided with the unit back.

Keys besides the SKU's own (:mod:`livecast.inventory.reserve`)::

    <prefix>{sku:S}:groupbuy:<id>            hash: the group buy (state, tiers, counts)
    <prefix>{sku:S}:groupbuy:<id>:members    hash: user -> {s: state, p: payment id,
                                             n: name, at: joined ms}
    <prefix>{sku:S}:groupbuy:<id>:keys       hash: "<user> <key>" -> the join's payment id
    <prefix>{sku:S}:groupbuy:<id>:settling   string, for a moment: a node settles it
    <prefix>{sku:S}:groupbuy:<id>:shown      string: the price last on the timeline (7 days)
    <prefix>groupbuys:sku                    hash: group buy id -> SKU
    <prefix>groupbuys:due                    sorted set: ids to close (by end time) or
                                             to settle (closed, not yet finished)
    <prefix>stream:<id>:groupbuy             string: the stream's latest group buy id
    <prefix>stream:<id>:groupbuys            sorted set: the stream's group buys by start

Events on the stream's channel, each carrying the server's clock: :class:`GroupBuyStarted`,
:class:`GroupBuyUpdated` (members, price, next tier, how many more it needs),
:class:`GroupBuyEnded`. The running group buy is the stream's ``groupbuy`` state slot
(the hello's ``state.groupbuy``).

A group buy's start, updates and close carry ``media_time_ms``; its start, close and
each change of price go on the stream's timeline (:mod:`livecast.timeline`). Ending the
stream closes and settles its running group buy (:mod:`livecast.selling.stream_end`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec
import redis.asyncio as aioredis

from livecast.cart.orders import Order, OrderLine, OrderStatus, OrderStore
from livecast.cart.payments import (
    PaymentDeclined,
    PaymentProvider,
    PaymentState,
    PaymentStateError,
)
from livecast.cart.stats import SalesStats
from livecast.cart.webhooks import WebhookDispatcher
from livecast.error_codes import ErrorCode
from livecast.errors import ApiError, NotFound
from livecast.events import EventPublisher
from livecast.ids import is_sku, new_id
from livecast.inventory._private import due_ids, read_row, server_now_ms, text
from livecast.inventory.catalog import Catalog
from livecast.inventory.errors import raise_for_status
from livecast.inventory.money import Money
from livecast.inventory.reserve import Reservations
from livecast.redisdb import KeySpace, load_lua
from livecast.selling.groupbuy_tiers import check_tiers, decode_tiers, encode_tiers, price_now
from livecast.selling.groupbuy_types import (
    GroupBuy,
    GroupBuyEnded,
    GroupBuyProgress,
    GroupBuyStarted,
    GroupBuyState,
    GroupBuyStats,
    GroupBuyUpdated,
    JoinResult,
    MemberState,
    PriceTier,
)
from livecast.selling.starting import StartKeys, one_start_at_a_time, refuse_running, start_indexed
from livecast.streams.registry import iso_time
from livecast.timeline import Moment, MomentKind, ShownPrice, Timeline

__all__ = ["GroupBuyCounters", "GroupBuys", "drop_stale_slot"]

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent
_ID_MAX = 64
_SETTLE_LEASE_MS = 30_000
# the price last put on the timeline, kept past any group buy's or knock-down's end
_SHOWN_KEPT_S = 7 * 86_400


class GroupBuyCounters(Protocol):
    """What a node counts for Prometheus (:mod:`livecast.selling.groupbuy_service`)."""

    def joined(self, outcome: str) -> None: ...

    def closed(self, state: GroupBuyState) -> None: ...

    def captured(self, price: Money) -> None: ...


async def drop_stale_slot(
    redis: aioredis.Redis, events: EventPublisher, stream_id: str, slot: str, owner_id: str
) -> None:
    """Delete the stream's ``slot`` document if it is still ``owner_id``'s: an update
    written after the format ended (on another node) must not show it running to the next
    viewer's hello."""
    key = events.state_key(stream_id)
    raw: Any = await redis.hget(key, slot)
    if raw is not None and msgspec.msgpack.decode(raw).get("id") == owner_id:
        await redis.hdel(key, slot)


async def price_changed(redis: aioredis.Redis, key: str, price: Money) -> bool:
    """Whether ``price`` differs from the one last shown on the timeline under ``key``
    (which it becomes): a format's price changes go on its stream's timeline once each,
    whatever node announces them."""
    shown: Any = await redis.set(key, price.amount_minor, get=True, ex=_SHOWN_KEPT_S)
    return shown is None or int(shown) != price.amount_minor


def _moved(status: str, source: GroupBuyState) -> GroupBuyState | None:
    """The state a script's answer moved a group buy to (None: it did not move it); a
    move the transition table does not allow is a defect in the script."""
    try:
        state = GroupBuyState(status)
    except ValueError:
        return None
    if not source.can_become(state):
        raise RuntimeError(f"a group buy script moved {source} to {state}")
    return state


def _member_moved(source: MemberState, target: MemberState) -> None:
    if not source.can_become(target):
        raise RuntimeError(f"a group buy script moved a member {source} to {target}")


_FIELDS = [
    "state",
    "stream",
    "seller",
    "currency",
    "tiers",
    "min_buyers",
    "cap",
    "starts",
    "ends",
    "ended",
    "members",
    "joins",
    "leaves",
    "captured",
    "voided",
    "final_minor",
    "title",
]


class _Member(msgspec.Struct):
    s: MemberState
    p: str
    n: str = ""
    at: int = 0


_decode_member = msgspec.json.Decoder(_Member).decode


class GroupBuys:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        *,
        reservations: Reservations,
        catalog: Catalog,
        orders: OrderStore,
        payments: PaymentProvider,
        sales: SalesStats,
        webhooks: WebhookDispatcher,
        events: EventPublisher,
        counters: GroupBuyCounters | None = None,
        timeline: Timeline,
    ) -> None:
        self._timeline = timeline
        self._redis = redis
        self._keys = keys
        self._reservations = reservations
        self._catalog = catalog
        self._orders = orders
        self._payments = payments
        self._sales = sales
        self._webhooks = webhooks
        self._events = events
        self._counters = counters
        self._start = load_lua(redis, _HERE / "groupbuy_start.lua")
        self._join = load_lua(redis, _HERE / "groupbuy_join.lua")
        self._confirm = load_lua(redis, _HERE / "groupbuy_confirm.lua")
        self._leave = load_lua(redis, _HERE / "groupbuy_leave.lua")
        self._close = load_lua(redis, _HERE / "groupbuy_close.lua")
        self._settle = load_lua(redis, _HERE / "groupbuy_settle.lua")
        self._finish = load_lua(redis, _HERE / "groupbuy_finish.lua")
        self.sku_index = keys.key("groupbuys", "sku")
        self.due_key = keys.key("groupbuys", "due")
        # Per node: what never changes once a group buy starts.
        self._fixed: dict[str, GroupBuy] = {}
        # Per node: the newest revision whose document went to the state slot (answers
        # to concurrent joins come back in any order).
        self._announced: dict[str, int] = {}
        self._announcing = asyncio.Lock()

    def stream_key(self, stream_id: str) -> str:
        return self._keys.key("stream", stream_id, "groupbuy")

    def stream_list_key(self, stream_id: str) -> str:
        return self._keys.key("stream", stream_id, "groupbuys")

    def _key(self, sku: str, groupbuy_id: str) -> str:
        return self._reservations.base(sku) + ":groupbuy:" + groupbuy_id

    # -- start ------------------------------------------------------------------------

    async def start(
        self,
        *,
        stream_id: str,
        seller_id: str,
        sku: str,
        tiers: Sequence[PriceTier],
        min_buyers: int | None,
        cap: int,
        duration_s: float,
    ) -> GroupBuy:
        """Open a group buy on the stream (the caller checked the stream is live and may
        be managed, and may sell the product). One running group buy per stream: 409
        ``groupbuy_running``; also 404 ``unknown_sku``, 409 ``sold_out``, 422
        ``currency_mismatch``/``invalid_tiers``."""
        if not is_sku(sku):
            raise_for_status("unknown_sku", sku)
        minimum = tiers[0].min_buyers if min_buyers is None else min_buyers
        check_tiers(tiers, minimum, cap)
        starting = self._keys.key("stream", stream_id, "groupbuy-starting")
        async with one_start_at_a_time(
            self._redis, starting, what="group buy", code=ErrorCode.GROUPBUY_RUNNING
        ):
            current = await self.current(stream_id)
            refuse_running(
                current.id if current and current.state is GroupBuyState.RUNNING else None,
                what="group buy",
                code=ErrorCode.GROUPBUY_RUNNING,
                id_field="groupbuy_id",
            )
            groupbuy_id = new_id()
            duration_ms = round(duration_s * 1000)
            await start_indexed(
                self._redis,
                StartKeys.of(self, stream_id),
                record_id=groupbuy_id,
                sku=sku,
                due_guess_ms=await server_now_ms(self._redis) + duration_ms,
                script=lambda: self._start(
                    keys=[self._reservations.base(sku)],
                    args=[
                        groupbuy_id,
                        stream_id,
                        seller_id,
                        tiers[0].price.currency,
                        encode_tiers(tiers),
                        minimum,
                        cap,
                        duration_ms,
                    ],
                ),
            )
        self._reservations.dirty_skus.setdefault(sku, 0)
        groupbuy = await self.get(groupbuy_id)
        await price_changed(self._redis, self._shown_key(groupbuy), groupbuy.price)
        media = await self._timeline.media_now(stream_id)
        await self._events.set_state(
            "groupbuy",
            groupbuy,
            GroupBuyStarted(stream=stream_id, data=groupbuy, media_time_ms=media),
            also=self._on_timeline(MomentKind.GROUPBUY_STARTED, groupbuy, media),
        )
        return groupbuy

    # -- members ----------------------------------------------------------------------

    async def join(
        self, groupbuy_id: str, *, user: str, name: str, key: str, card_number: str | None
    ) -> JoinResult:
        """Join for ``user`` (see the module doc). 404 ``unknown_groupbuy``; 409
        ``groupbuy_ended``, ``already_joined``, ``groupbuy_full``, ``sold_out``; 403
        ``own_groupbuy``; 402 ``payment_declined``."""
        fixed = await self.fixed_part(groupbuy_id)
        base = self._reservations.base(fixed.sku)
        top = fixed.tiers[0].price
        reply = await self._join(
            keys=[base], args=[groupbuy_id, user, name, key, f"ord_{new_id(12)}"]
        )
        status, member_state, payment_id = text(reply[0]), text(reply[1]), text(reply[2])
        replayed = status == "replay"
        if status not in ("pending", "replay"):
            raise_for_status(status, groupbuy_id, groupbuy_id=groupbuy_id)
        if member_state == MemberState.PENDING:
            members = await self._authorize(fixed, user, payment_id, card_number)
            member_state = MemberState.AUTHORIZED
        else:
            members = (await self.get(groupbuy_id)).members
        if self._counters is not None and not replayed:
            self._counters.joined("authorized")
        price, _, _ = price_now(fixed.tiers, members)
        return JoinResult(
            groupbuy_id=groupbuy_id,
            state=MemberState(member_state),
            authorized=top,
            order_id=payment_id,
            members=members,
            price=price,
            replayed=replayed,
        )

    async def _authorize(
        self, fixed: GroupBuy, user: str, payment_id: str, card_number: str | None
    ) -> int:
        """Authorize a pending member's payment at the top price and count them; the
        members now. A decline (or any failure) gives the unit back."""
        base = self._reservations.base(fixed.sku)
        try:
            await self._payments.authorize(
                payment_id, fixed.tiers[0].price, buyer=user, card_number=card_number
            )
        except PaymentDeclined as exc:
            if exc.payment.state is PaymentState.VOIDED:
                # The group closed meanwhile and its settlement voided this payment.
                raise_for_status("groupbuy_ended", fixed.id, groupbuy_id=fixed.id)
            await self._settle_member(fixed.sku, fixed.id, user, payment_id, MemberState.VOIDED)
            if self._counters is not None:
                self._counters.joined("declined")
            raise ApiError.of(ErrorCode.PAYMENT_DECLINED, f"payment declined: {exc}") from None
        except BaseException:
            # The provider's answer is unknown: let the authorization go, and the unit.
            with contextlib.suppress(Exception):
                await self._payments.void(payment_id)
                await self._settle_member(fixed.sku, fixed.id, user, payment_id, MemberState.VOIDED)
            raise
        reply = await self._confirm(keys=[base], args=[fixed.id, user, payment_id])
        status = text(reply[0])
        if status == "already":
            return (await self.get(fixed.id)).members
        if status != "authorized":
            # Closed meanwhile: the settlement voids it.
            raise_for_status(status, fixed.id, groupbuy_id=fixed.id)
        _member_moved(MemberState.PENDING, MemberState.AUTHORIZED)
        members, rev, now = int(reply[1]), int(reply[2]), int(reply[3])
        await self._announce(fixed, members, rev, now)
        return members

    async def leave(self, groupbuy_id: str, *, user: str) -> GroupBuy:
        """Leave before the end: the payment is voided and the unit returns. 409
        ``not_joined``, ``groupbuy_ended``."""
        fixed = await self.fixed_part(groupbuy_id)
        base = self._reservations.base(fixed.sku)
        reply = await self._leave(keys=[base], args=[groupbuy_id, user])
        status = text(reply[0])
        if status != "leaving":
            raise_for_status(status, groupbuy_id, groupbuy_id=groupbuy_id)
        _member_moved(MemberState.AUTHORIZED, MemberState.LEAVING)
        payment_id, members, rev, now = text(reply[1]), int(reply[2]), int(reply[3]), int(reply[4])
        await self._payments.void(payment_id)
        await self._settle_member(fixed.sku, groupbuy_id, user, payment_id, MemberState.VOIDED)
        await self._announce(fixed, members, rev, now)
        return await self.get(groupbuy_id)

    async def _settle_member(
        self, sku: str, groupbuy_id: str, user: str, payment_id: str, target: MemberState
    ) -> bool:
        """Record a member settled (the provider did its part); whether this call did."""
        reply = await self._settle(
            keys=[self._reservations.base(sku)], args=[groupbuy_id, user, payment_id, target.value]
        )
        status = text(reply[0])
        if status == "illegal":
            raise RuntimeError(f"group buy {groupbuy_id}: member {user} cannot become {target}")
        if status == "settled":
            self._reservations.dirty_skus.setdefault(sku, 0)
        return status == "settled"

    async def _announce(self, fixed: GroupBuy, members: int, rev: int, now: int) -> None:
        """The progress event, and the slot a joiner's hello reads, in one MULTI."""
        price, nxt, needed = price_now(fixed.tiers, members)
        data = GroupBuyProgress(
            id=fixed.id,
            members=members,
            price=price,
            next_tier=nxt,
            needed=needed,
            ends_at_ms=fixed.ends_at_ms,
            server_ms=now,
        )
        document = msgspec.structs.replace(
            fixed, members=members, price=price, next_tier=nxt, needed=needed, server_ms=now
        )
        stream = fixed.stream_id
        encode = msgspec.msgpack.encode
        media = await self._timeline.media_now(stream)
        on_timeline = (
            self._on_timeline(MomentKind.GROUPBUY_UPDATED, document, media)
            if await price_changed(self._redis, self._shown_key(fixed), price)
            else None
        )
        event = GroupBuyUpdated(stream=stream, data=data, media_time_ms=media)
        async with self._announcing, self._redis.pipeline(transaction=True) as pipe:
            if rev > self._announced.get(fixed.id, 0):
                if len(self._announced) > 10_000:
                    self._announced.clear()
                self._announced[fixed.id] = rev
                pipe.hset(self._events.state_key(stream), "groupbuy", encode(document))
            pipe.publish(self._events.channel(stream), encode(event))
            if on_timeline is not None:
                on_timeline(pipe)
            await pipe.execute()
        # Closed meanwhile (another node): its close cleared the slot before this write.
        state = await self._redis.hget(self._key(fixed.sku, fixed.id), "state")
        if state is not None and text(state) != GroupBuyState.RUNNING:
            await drop_stale_slot(self._redis, self._events, stream, "groupbuy", fixed.id)

    # -- the end ----------------------------------------------------------------------

    async def end(self, groupbuy_id: str) -> GroupBuy:
        """The host ends it now; it succeeds or fails as at its end time (409
        ``groupbuy_ended`` once closed). Its members are settled before the answer."""
        fixed = await self.fixed_part(groupbuy_id)
        state = await self._close_one(fixed, only_if_due=False)
        if state is None:
            raise_for_status("groupbuy_ended", groupbuy_id, groupbuy_id=groupbuy_id)
        await self.settle(groupbuy_id)
        return await self.get(groupbuy_id)

    async def end_for_stream(self, stream_id: str) -> GroupBuyState | None:
        """Close the stream's running group buy now (its stream ended) and settle it, as
        its end time would: captured at the price reached if it met its minimum, else
        voided. The state it closed to if this call closed it, else None."""
        found = await self._redis.get(self.stream_key(stream_id))
        if found is None:
            return None
        groupbuy = await self.find(text(found))
        if groupbuy is None or groupbuy.state is not GroupBuyState.RUNNING:
            return None
        state = await self._close_one(groupbuy, only_if_due=False)
        if state is not None:
            await self.settle(groupbuy.id)
        return state

    async def _close_one(self, fixed: GroupBuy, *, only_if_due: bool) -> GroupBuyState | None:
        base = self._reservations.base(fixed.sku)
        reply = await self._close(keys=[base], args=[fixed.id, "1" if only_if_due else "0"])
        status = text(reply[0])
        if status == "not_due":
            await self._redis.zadd(self.due_key, {fixed.id: int(reply[1])})
            return None
        state = _moved(status, GroupBuyState.RUNNING)
        if state is None:
            return None
        # Settle at once (the entry stays until the settlement has finished).
        await self._redis.zadd(self.due_key, {fixed.id: 0})
        groupbuy = await self.get(fixed.id)
        # at its end time (the sweep comes a moment later), or when it was ended
        media = await self._timeline.media_now(groupbuy.stream_id, at_ms=groupbuy.ended_at_ms)
        await self._events.clear_state(
            "groupbuy",
            GroupBuyEnded(stream=groupbuy.stream_id, data=groupbuy, media_time_ms=media),
            also=self._on_timeline(MomentKind.GROUPBUY_ENDED, groupbuy, media),
        )
        if self._counters is not None:
            self._counters.closed(state)
        return state

    def _shown_key(self, fixed: GroupBuy) -> str:
        return self._key(fixed.sku, fixed.id) + ":shown"

    def _on_timeline(
        self, kind: MomentKind, groupbuy: GroupBuy, media_time_ms: int | None
    ) -> Callable[[Any], object]:
        """The group buy's entry on its stream's timeline, for the event's MULTI."""
        price = groupbuy.price
        moment = Moment(
            kind=kind,
            media_time_ms=media_time_ms,
            sku=groupbuy.sku,
            groupbuy_id=groupbuy.id,
            title=groupbuy.title,
            price=ShownPrice(amount_minor=price.amount_minor, currency=price.currency),
            state=None if groupbuy.state is GroupBuyState.RUNNING else groupbuy.state.value,
        )
        return self._timeline.appending(groupbuy.stream_id, moment)

    async def sweep_one(self, groupbuy_id: str) -> GroupBuyState | None:
        """What any node's sweep does with a due group buy: close it if its time is up,
        settle it if it is closed; the state this call moved it to, if any."""
        sku = await self._redis.hget(self.sku_index, groupbuy_id)
        if sku is None:
            await self._redis.zrem(self.due_key, groupbuy_id)
            return None
        found = await self.find(groupbuy_id)
        if found is None:
            # The start script never ran (a crash between the indexes and it).
            await self._redis.zrem(self.due_key, groupbuy_id)
            return None
        moved = None
        if found.state is GroupBuyState.RUNNING:
            moved = await self._close_one(found, only_if_due=True)
            if moved is None:
                return None
        settled = await self.settle(groupbuy_id)
        return settled or moved

    async def settle(self, groupbuy_id: str) -> GroupBuyState | None:
        """Settle every member of a closed group buy and finish it, under a short lease
        (one node at a time); every step is idempotent, so this resumes a settlement that
        stopped midway. The final state if this call finished it."""
        fixed = await self.fixed_part(groupbuy_id)
        base = self._reservations.base(fixed.sku)
        key = self._key(fixed.sku, groupbuy_id)
        lease, token = key + ":settling", new_id()
        if not await self._redis.set(lease, token, nx=True, px=_SETTLE_LEASE_MS):
            return None
        try:
            groupbuy = await self.get(groupbuy_id)
            if groupbuy.state not in (GroupBuyState.CAPTURING, GroupBuyState.VOIDING):
                if groupbuy.state.is_final:
                    await self._redis.zrem(self.due_key, groupbuy_id)
                return None
            raw: dict[Any, Any] = await self._redis.hgetall(key + ":members")
            for user, value in raw.items():
                await self._settle_one(groupbuy, base, text(user), _decode_member(value))
            reply = await self._finish(keys=[base], args=[groupbuy_id])
            state = _moved(text(reply[0]), groupbuy.state)
            if state is None:
                return None
            await self._redis.zrem(self.due_key, groupbuy_id)
            self._fixed.pop(groupbuy_id, None)
            self._announced.pop(groupbuy_id, None)
            log.info("group buy %s %s", groupbuy_id, state)
            return state
        finally:
            if await self._redis.get(lease) == token.encode():
                await self._redis.delete(lease)

    async def _settle_one(self, groupbuy: GroupBuy, base: str, user: str, member: _Member) -> None:
        if member.s in (MemberState.CAPTURED, MemberState.VOIDED):
            return
        if groupbuy.state is GroupBuyState.CAPTURING and member.s is MemberState.AUTHORIZED:
            _member_moved(member.s, MemberState.CAPTURED)
            price = groupbuy.price
            await self._payments.capture(member.p, price)
            await self._record_order(groupbuy, user, member)
            if (
                await self._settle_member(
                    groupbuy.sku, groupbuy.id, user, member.p, MemberState.CAPTURED
                )
                and self._counters is not None
            ):
                self._counters.captured(price)
            return
        _member_moved(member.s, MemberState.VOIDED)
        try:
            await self._payments.void(member.p)
        except PaymentStateError as exc:
            if exc.payment.state is not PaymentState.DECLINED:
                raise
            # Declined when they joined, and that node stopped before it gave the unit
            # back: there is no authorization to let go.
        await self._settle_member(groupbuy.sku, groupbuy.id, user, member.p, MemberState.VOIDED)

    async def _record_order(self, groupbuy: GroupBuy, user: str, member: _Member) -> None:
        """The member's order (id: their payment id), stored, counted and sent to the
        webhooks; each step idempotent, so a resumed settlement repeats it."""
        created_ms = groupbuy.ended_at_ms or groupbuy.ends_at_ms
        price = groupbuy.price
        order = Order(
            id=member.p,
            status=OrderStatus.PAID,
            buyer_id=user,
            buyer_name=member.n,
            stream_id=groupbuy.stream_id,
            stream_ids=[groupbuy.stream_id],
            seller_ids=[groupbuy.seller_id],
            lines=[
                OrderLine(
                    sku=groupbuy.sku,
                    title=groupbuy.title,
                    quantity=1,
                    unit_price=price,
                    line_total=price,
                    stream_id=groupbuy.stream_id,
                    hold_id=f"groupbuy-{groupbuy.id}",
                )
            ],
            units=1,
            total=price,
            payment_provider=self._payments.name,
            payment_id=member.p,
            created_at=iso_time(created_ms) or "",
        )
        await self._orders.save(order, created_ms)
        steps = [
            self._sales.count_order(
                groupbuy.stream_id, order.id, units=1, amount=price, buyer_id=user
            )
        ]
        await asyncio.gather(*steps)
        if self._webhooks.enabled:
            payload = msgspec.to_builtins(order)
            for event, suffix in (("order.created", "created"), ("order.paid", "paid")):
                await self._webhooks.enqueue(event, payload, event_id=f"evt_{order.id}_{suffix}")

    async def due(self, now_ms: int, *, limit: int = 100) -> list[str]:
        return await due_ids(self._redis, self.due_key, now_ms, limit=limit)

    async def now_ms(self) -> int:
        return await server_now_ms(self._redis)

    # -- reads ------------------------------------------------------------------------

    async def current(self, stream_id: str) -> GroupBuy | None:
        """The stream's latest group buy (running or not), or None."""
        found = await self._redis.get(self.stream_key(stream_id))
        return None if found is None else await self.find(text(found))

    async def get(self, groupbuy_id: str) -> GroupBuy:
        groupbuy = await self.find(groupbuy_id)
        if groupbuy is None:
            raise NotFound(f"no group buy {groupbuy_id!r}", code=ErrorCode.UNKNOWN_GROUPBUY)
        return groupbuy

    async def find(self, groupbuy_id: str) -> GroupBuy | None:
        if len(groupbuy_id) > _ID_MAX:
            return None
        sku = await self._redis.hget(self.sku_index, groupbuy_id)
        if sku is None:
            return None
        found = await read_row(self._redis, self._key(text(sku), groupbuy_id), _FIELDS)
        if found is None:
            return None
        row, server_ms = found
        product = await self._catalog.find(text(sku))
        currency = row["currency"] or ""
        tiers = decode_tiers(row["tiers"] or "", currency)
        members = int(row["members"] or 0)
        state = GroupBuyState(row["state"] or "running")
        price, nxt, needed = price_now(tiers, members)
        if row["final_minor"]:
            price = Money(amount_minor=int(row["final_minor"]), currency=currency)
            nxt, needed = None, 0
        groupbuy = GroupBuy(
            id=groupbuy_id,
            stream_id=row["stream"] or "",
            seller_id=row["seller"] or "",
            sku=text(sku),
            title=row["title"] or (product.title if product else text(sku)),
            image_url=product.image_url if product else None,
            state=state,
            tiers=tiers,
            min_buyers=int(row["min_buyers"] or 1),
            cap=int(row["cap"] or 0),
            members=members,
            price=price,
            next_tier=nxt,
            needed=needed,
            joins=int(row["joins"] or 0),
            leaves=int(row["leaves"] or 0),
            captured=int(row["captured"] or 0),
            voided=int(row["voided"] or 0),
            starts_at_ms=int(row["starts"] or 0),
            ends_at_ms=int(row["ends"] or 0),
            ended_at_ms=int(row["ended"]) if row["ended"] else None,
            server_ms=server_ms,
        )
        if state is GroupBuyState.RUNNING:
            self._fixed.setdefault(groupbuy_id, groupbuy)
        return groupbuy

    async def fixed_part(self, groupbuy_id: str) -> GroupBuy:
        """The group buy as this node first read it: right for what never changes (its
        stream, seller, SKU, tiers, end time), stale for the rest."""
        fixed = self._fixed.get(groupbuy_id)
        if fixed is None:
            fixed = await self.get(groupbuy_id)
            if len(self._fixed) > 10_000:
                self._fixed.clear()
            self._fixed[groupbuy_id] = fixed
        return fixed

    async def member_state(self, groupbuy_id: str, user: str) -> MemberState | None:
        fixed = await self.fixed_part(groupbuy_id)
        raw = await self._redis.hget(self._key(fixed.sku, groupbuy_id) + ":members", user)
        return None if raw is None else _decode_member(raw).s

    async def stats(self, stream_id: str) -> GroupBuyStats:
        """The stream's group buys in numbers (read from each: a stream runs a few)."""
        found: list[Any] = await self._redis.zrange(self.stream_list_key(stream_id), 0, -1)
        groups = [g for g in [await self.find(text(i)) for i in found] if g is not None]
        states = [g.state for g in groups]
        gmv: dict[str, int] = {}
        for group in groups:
            if group.captured:
                currency = group.price.currency
                gmv[currency] = gmv.get(currency, 0) + group.price.amount_minor * group.captured
        return GroupBuyStats(
            stream_id=stream_id,
            runs=len(groups),
            running=states.count(GroupBuyState.RUNNING),
            succeeded=sum(s in (GroupBuyState.CAPTURING, GroupBuyState.SUCCEEDED) for s in states),
            failed=sum(s in (GroupBuyState.VOIDING, GroupBuyState.FAILED) for s in states),
            joins=sum(g.joins for g in groups),
            units=sum(g.captured for g in groups),
            gmv=[Money(amount_minor=v, currency=c) for c, v in sorted(gmv.items())],
        )
