"""Price knock-downs: the price of a product drops one step every K taps of the audience
(or every T seconds) from a start price down to a floor; the first buyers at each price
get it, within a quantity.

A knock-down moves ``running -> sold_out | ended`` (:class:`KnockdownState`), one Lua
script per move, each on the keys of the product's SKU (one hash slot):

* ``knockdown_start.lua`` carves its quantity out of free stock (counted in
  ``deal_reserved``, as a flash deal's is: never oversold, never sold twice);
* ``knockdown_tap.lua`` counts taps (pages coalesce them, like likes) atomically; in
  taps mode each ``taps_per_step`` taps at one price drop it a step, exactly once;
* ``knockdown_step.lua``: in time mode, any node's sweep drops the price one step when
  its step time comes, and moves that time on by exactly one interval;
* ``knockdown_buy.lua``: a buy is a cart hold at the current price (as a flash deal's
  add-to-cart is), expiring back to free stock if not checked out; within the quantity,
  the price's own quantity (``per_price``) and the buyer's limit. Idempotent by the
  buyer's key. The last unit (or the floor's quantity) sells it out, and what is left
  of the carve returns to free stock in the same step;
* ``knockdown_end.lua``: the host, or its deadline (any node's sweep), ends it; what is
  left returns to free stock.

Keys besides the SKU's own (:mod:`livecast.inventory.reserve`)::

    <prefix>{sku:S}:knockdown:<id>          hash: the knock-down (state, price, counts)
    <prefix>{sku:S}:knockdown:<id>:buyers   hash: user -> units bought
    <prefix>{sku:S}:knockdown:<id>:keys     hash: "<user> <key>" -> the buy's answer
    <prefix>{sku:S}:knockdown:<id>:shown    string: the price last on the timeline (7 days)
    <prefix>knockdowns:sku                  hash: knock-down id -> SKU
    <prefix>knockdowns:due                  sorted set: running ids by their next step
                                            or deadline, whichever comes first
    <prefix>stream:<id>:knockdown           string: the stream's latest knock-down id
    <prefix>stream:<id>:knockdowns          sorted set: the stream's knock-downs by start

Events on the stream's channel, each carrying the server's clock:
:class:`KnockdownStarted`, :class:`KnockdownUpdated` (price drops and buys at once, taps
coalesced per node), :class:`KnockdownEnded`. The running knock-down is the stream's
``knockdown`` state slot (the hello's ``state.knockdown``).

A knock-down's start, updates and end carry ``media_time_ms``; its start, end and each
price drop go on the stream's timeline (:mod:`livecast.timeline`). Ending the stream ends
its running knock-down (:mod:`livecast.selling.stream_end`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Protocol

import redis.asyncio as aioredis

from livecast.cart.cart import CartEntry, CartStore
from livecast.error_codes import ErrorCode
from livecast.errors import NotFound, Unprocessable
from livecast.events import EventPublisher
from livecast.ids import is_sku, new_id
from livecast.inventory._private import due_ids, read_row, server_now_ms, text
from livecast.inventory.catalog import Catalog
from livecast.inventory.errors import raise_for_status
from livecast.inventory.money import Money
from livecast.inventory.reserve import Reservations
from livecast.redisdb import KeySpace, load_lua
from livecast.selling.groupbuys import drop_stale_slot, price_changed
from livecast.selling.knockdown_types import (
    Knockdown,
    KnockdownBuy,
    KnockdownEnded,
    KnockdownMode,
    KnockdownProgress,
    KnockdownStarted,
    KnockdownState,
    KnockdownStats,
    KnockdownUpdated,
    TapResult,
)
from livecast.selling.starting import StartKeys, one_start_at_a_time, refuse_running, start_indexed
from livecast.timeline import Moment, MomentKind, ShownPrice, Timeline

__all__ = ["KnockdownCounters", "Knockdowns"]

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent
_ID_MAX = 64


def _first_due(reply: list[Any]) -> int:
    """When a started knock-down's sweep is due: its end, or its first timed step."""
    ends, next_step = int(reply[2]), int(reply[3])
    return min(ends, next_step or ends)


def _refused_start(status: str, reply: list[Any], sku: str) -> NoReturn:
    raise_for_status(status, sku, sku=sku, available=int(reply[4]))


class KnockdownCounters(Protocol):
    """What a node counts for Prometheus (:mod:`livecast.selling.knockdown_service`)."""

    def tapped(self, n: int) -> None: ...

    def stepped(self, n: int) -> None: ...

    def bought(self, price: Money) -> None: ...

    def ended(self, state: KnockdownState) -> None: ...


def _moved(status: str) -> KnockdownState | None:
    """The state a script's answer moved a running knock-down to (None: it did not move
    it); a move the transition table does not allow is a defect in the script."""
    state = {"ended": KnockdownState.ENDED, "sold_out": KnockdownState.SOLD_OUT}.get(status)
    if state is not None and not KnockdownState.RUNNING.can_become(state):
        raise RuntimeError(f"a knock-down script moved running to {state}")
    return state


_FIELDS = [
    "state",
    "stream",
    "seller",
    "currency",
    "start",
    "step",
    "floor",
    "mode",
    "every",
    "quantity",
    "remaining",
    "per_price",
    "per_buyer",
    "pay_ms",
    "price",
    "level",
    "level_sold",
    "taps",
    "level_taps",
    "steps",
    "sold",
    "gmv",
    "starts",
    "ends",
    "ended",
    "next_step",
    "title",
]


class Knockdowns:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        *,
        reservations: Reservations,
        catalog: Catalog,
        carts: CartStore,
        events: EventPublisher,
        counters: KnockdownCounters | None = None,
        timeline: Timeline,
    ) -> None:
        self._timeline = timeline
        self._redis = redis
        self._keys = keys
        self._reservations = reservations
        self._catalog = catalog
        self._carts = carts
        self._events = events
        self._counters = counters
        self._start = load_lua(redis, _HERE / "knockdown_start.lua")
        self._tap = load_lua(redis, _HERE / "knockdown_tap.lua")
        self._step = load_lua(redis, _HERE / "knockdown_step.lua")
        self._buy = load_lua(redis, _HERE / "knockdown_buy.lua")
        self._end = load_lua(redis, _HERE / "knockdown_end.lua")
        self.sku_index = keys.key("knockdowns", "sku")
        self.due_key = keys.key("knockdowns", "due")
        # Per node: what never changes once a knock-down starts.
        self._fixed: dict[str, Knockdown] = {}
        # Per node: knock-downs tapped since the last coalesced update.
        self._tapped: set[str] = set()
        # Updates are read and written one at a time per node, so the state slot never
        # goes back to an older document.
        self._announcing = asyncio.Lock()

    def stream_key(self, stream_id: str) -> str:
        return self._keys.key("stream", stream_id, "knockdown")

    def stream_list_key(self, stream_id: str) -> str:
        return self._keys.key("stream", stream_id, "knockdowns")

    def _key(self, sku: str, knockdown_id: str) -> str:
        return self._reservations.base(sku) + ":knockdown:" + knockdown_id

    async def start(
        self,
        *,
        stream_id: str,
        seller_id: str,
        sku: str,
        start_price: Money,
        step: Money,
        floor: Money,
        mode: KnockdownMode,
        taps_per_step: int,
        step_every_s: float,
        quantity: int,
        per_price: int,
        per_buyer_limit: int,
        duration_s: float,
        pay_within_s: float,
    ) -> Knockdown:
        """Open a knock-down on the stream (the caller checked the stream is live and may
        be managed, and may sell the product). One running per stream: 409
        ``knockdown_running``; also 404 ``unknown_sku``, 409 ``insufficient_stock``, 422
        ``currency_mismatch``/``invalid_knockdown``."""
        if not is_sku(sku):
            raise_for_status("unknown_sku", sku)
        problem = ""
        if len({start_price.currency, step.currency, floor.currency}) > 1:
            problem = "the start price, step and floor must be in one currency"
        elif floor.amount_minor >= start_price.amount_minor:
            problem = "the floor must be below the start price"
        elif step.amount_minor < 1:
            problem = "the step must be above zero"
        elif mode is KnockdownMode.TAPS and taps_per_step < 1:
            problem = "taps mode needs taps_per_step"
        elif mode is KnockdownMode.TIME and step_every_s <= 0:
            problem = "time mode needs step_every_s"
        if problem:
            raise Unprocessable(problem, code=ErrorCode.INVALID_KNOCKDOWN)
        every = taps_per_step if mode is KnockdownMode.TAPS else round(step_every_s * 1000)
        starting = self._keys.key("stream", stream_id, "knockdown-starting")
        async with one_start_at_a_time(
            self._redis, starting, what="knock-down", code=ErrorCode.KNOCKDOWN_RUNNING
        ):
            current = await self.current(stream_id)
            refuse_running(
                current.id if current and current.state is KnockdownState.RUNNING else None,
                what="knock-down",
                code=ErrorCode.KNOCKDOWN_RUNNING,
                id_field="knockdown_id",
            )
            knockdown_id = new_id()
            duration_ms = round(duration_s * 1000)
            await start_indexed(
                self._redis,
                StartKeys.of(self, stream_id),
                record_id=knockdown_id,
                sku=sku,
                due_guess_ms=await server_now_ms(self._redis) + duration_ms,
                script=lambda: self._start(
                    keys=[self._reservations.base(sku)],
                    args=[
                        knockdown_id,
                        stream_id,
                        seller_id,
                        start_price.currency,
                        start_price.amount_minor,
                        step.amount_minor,
                        floor.amount_minor,
                        mode.value,
                        every,
                        quantity,
                        per_price,
                        per_buyer_limit,
                        duration_ms,
                        round(pay_within_s * 1000),
                    ],
                ),
                due_at=_first_due,
                refused=_refused_start,
            )
        self._reservations.dirty_skus.setdefault(sku, 0)
        knockdown = await self.get(knockdown_id)
        await price_changed(self._redis, self._shown_key(knockdown), knockdown.price)
        media = await self._timeline.media_now(stream_id)
        await self._events.set_state(
            "knockdown",
            knockdown,
            KnockdownStarted(stream=stream_id, data=knockdown, media_time_ms=media),
            also=self._on_timeline(MomentKind.KNOCKDOWN_STARTED, knockdown, media),
        )
        return knockdown

    async def tap(self, knockdown_id: str, n: int) -> TapResult:
        """Count ``n`` taps (404 ``unknown_knockdown``, 409 ``knockdown_ended``)."""
        fixed = await self.fixed_part(knockdown_id)
        reply = await self._reservations.batcher.call(
            self._tap, (self._reservations.base(fixed.sku), knockdown_id, n)
        )
        status = text(reply[0])
        if status != "ok":
            raise_for_status(status, knockdown_id, knockdown_id=knockdown_id)
        price, taps, level_taps, stepped = (
            int(reply[1]),
            int(reply[3]),
            int(reply[4]),
            int(reply[5]),
        )
        if self._counters is not None:
            self._counters.tapped(n)
            if stepped:
                self._counters.stepped(stepped)
        if stepped:
            await self.announce(knockdown_id)
        else:
            self._tapped.add(knockdown_id)
        at_floor = price <= fixed.floor.amount_minor
        to_next = 0 if at_floor or not fixed.taps_per_step else fixed.taps_per_step - level_taps
        return TapResult(
            price=Money(amount_minor=price, currency=fixed.start_price.currency),
            taps=taps,
            taps_to_next=to_next,
        )

    async def buy(self, knockdown_id: str, *, user: str, key: str) -> KnockdownBuy:
        """One unit at the current price, as the buyer's cart hold (see the module doc).
        404 ``unknown_knockdown``; 409 ``knockdown_ended``, ``sold_out``,
        ``price_sold_out``, ``over_limit``; 403 ``own_knockdown``."""
        fixed = await self.fixed_part(knockdown_id)
        hold_id = f"knockdown-{knockdown_id}-{new_id()}"
        reply = await self._buy(
            keys=[self._reservations.base(fixed.sku)], args=[knockdown_id, user, key, hold_id]
        )
        status = text(reply[0])
        if status != "held":
            raise_for_status(status, knockdown_id, knockdown_id=knockdown_id)
        hold_id, price, expires = text(reply[1]), int(reply[2]), int(reply[3])
        left, sold_out, replayed = int(reply[4]), bool(int(reply[6])), bool(int(reply[9]))
        seen = self._reservations.dirty_skus.get(fixed.sku)
        if not seen or expires < seen:
            # The earliest new hold expiry, for the inventory's notifier and sweeper.
            self._reservations.dirty_skus[fixed.sku] = expires
        currency = fixed.start_price.currency
        await self._carts.add(
            user,
            CartEntry(hold_id=hold_id, sku=fixed.sku, stream_id=fixed.stream_id, title=fixed.title),
        )
        if not replayed:
            if self._counters is not None:
                self._counters.bought(Money(amount_minor=price, currency=currency))
            if sold_out:
                await self._ended(knockdown_id, KnockdownState.SOLD_OUT)
            else:
                await self.announce(knockdown_id)
        return KnockdownBuy(
            knockdown_id=knockdown_id,
            hold_id=hold_id,
            price=Money(amount_minor=price, currency=currency),
            expires_at_ms=expires,
            left=left,
            replayed=replayed,
        )

    async def end(self, knockdown_id: str) -> Knockdown:
        """The host ends it now (409 ``knockdown_ended`` once over)."""
        fixed = await self.fixed_part(knockdown_id)
        reply = await self._end(keys=[self._reservations.base(fixed.sku)], args=[knockdown_id, "0"])
        if _moved(text(reply[0])) is None:
            raise_for_status("knockdown_ended", knockdown_id, knockdown_id=knockdown_id)
        return await self._ended(knockdown_id, KnockdownState.ENDED)

    async def end_for_stream(self, stream_id: str) -> Knockdown | None:
        """End the stream's running knock-down now (its stream ended; the units left
        return to stock); the knock-down if this call ended it, else None."""
        found = await self._redis.get(self.stream_key(stream_id))
        if found is None:
            return None
        knockdown = await self.find(text(found))
        if knockdown is None or knockdown.state is not KnockdownState.RUNNING:
            return None
        base = self._reservations.base(knockdown.sku)
        reply = await self._end(keys=[base], args=[knockdown.id, "0"])
        if _moved(text(reply[0])) is None:
            return None
        return await self._ended(knockdown.id, KnockdownState.ENDED)

    async def _ended(self, knockdown_id: str, state: KnockdownState) -> Knockdown:
        knockdown = await self.get(knockdown_id)
        await self._redis.zrem(self.due_key, knockdown_id)
        self._reservations.dirty_skus.setdefault(knockdown.sku, 0)
        # at its deadline (the sweep comes a moment later), or when it was ended
        at = knockdown.ended_at_ms
        media = await self._timeline.media_now(knockdown.stream_id, at_ms=at)
        await self._events.clear_state(
            "knockdown",
            KnockdownEnded(stream=knockdown.stream_id, data=knockdown, media_time_ms=media),
            also=self._on_timeline(MomentKind.KNOCKDOWN_ENDED, knockdown, media),
        )
        if self._counters is not None:
            self._counters.ended(state)
        self._fixed.pop(knockdown_id, None)
        self._tapped.discard(knockdown_id)
        return knockdown

    async def sweep_one(self, knockdown_id: str) -> bool:
        """What any node's sweep does with a due knock-down: end it past its deadline, or
        drop its price a step (time mode); whether this call moved it."""
        knockdown = await self.find(knockdown_id)
        if knockdown is None or knockdown.state is not KnockdownState.RUNNING:
            await self._redis.zrem(self.due_key, knockdown_id)
            return False
        base = self._reservations.base(knockdown.sku)
        if knockdown.server_ms >= knockdown.ends_at_ms:
            reply = await self._end(keys=[base], args=[knockdown_id, "1"])
            if _moved(text(reply[0])) is None:
                return False
            await self._ended(knockdown_id, KnockdownState.ENDED)
            return True
        moved = False
        if knockdown.mode is KnockdownMode.TIME:
            reply = await self._step(keys=[base], args=[knockdown_id])
            if text(reply[0]) == "stepped":
                moved = True
                if self._counters is not None:
                    self._counters.stepped(1)
                await self.announce(knockdown_id)
            next_step = int(reply[3])
        else:
            next_step = 0
        due = min(knockdown.ends_at_ms, next_step or knockdown.ends_at_ms)
        await self._redis.zadd(self.due_key, {knockdown_id: due})
        return moved

    async def flush_taps(self) -> None:
        """Send one coalesced update per knock-down tapped since the last call."""
        tapped, self._tapped = self._tapped, set()
        for knockdown_id in tapped:
            await self.announce(knockdown_id)

    async def announce(self, knockdown_id: str) -> None:
        """The update event, and the slot a joiner's hello reads (read fresh under this
        node's lock, so the slot never goes back to an older document), in one MULTI."""
        async with self._announcing:
            knockdown = await self.find(knockdown_id)
            if knockdown is None or knockdown.state is not KnockdownState.RUNNING:
                return
            data = KnockdownProgress(
                id=knockdown.id,
                price=knockdown.price,
                next_price=knockdown.next_price,
                level=knockdown.level,
                taps=knockdown.taps,
                taps_to_next=knockdown.taps_to_next,
                next_step_at_ms=knockdown.next_step_at_ms,
                left=knockdown.left,
                price_left=knockdown.price_left,
                sold=knockdown.sold,
                server_ms=knockdown.server_ms,
            )
            media = await self._timeline.media_now(knockdown.stream_id)
            on_timeline = (
                self._on_timeline(MomentKind.KNOCKDOWN_UPDATED, knockdown, media)
                if await price_changed(self._redis, self._shown_key(knockdown), knockdown.price)
                else None
            )
            await self._events.set_state(
                "knockdown",
                knockdown,
                KnockdownUpdated(stream=knockdown.stream_id, data=data, media_time_ms=media),
                also=on_timeline,
            )
            # Ended meanwhile (another node): its end cleared the slot before this write.
            state = await self._redis.hget(self._key(knockdown.sku, knockdown_id), "state")
            if state is not None and text(state) != KnockdownState.RUNNING:
                await drop_stale_slot(
                    self._redis, self._events, knockdown.stream_id, "knockdown", knockdown_id
                )

    def _shown_key(self, knockdown: Knockdown) -> str:
        return self._key(knockdown.sku, knockdown.id) + ":shown"

    def _on_timeline(
        self, kind: MomentKind, knockdown: Knockdown, media_time_ms: int | None
    ) -> Callable[[Any], object]:
        """The knock-down's entry on its stream's timeline, for the event's MULTI."""
        price = knockdown.price
        moment = Moment(
            kind=kind,
            media_time_ms=media_time_ms,
            sku=knockdown.sku,
            knockdown_id=knockdown.id,
            title=knockdown.title,
            price=ShownPrice(amount_minor=price.amount_minor, currency=price.currency),
            left=knockdown.left,
            state=None if knockdown.state is KnockdownState.RUNNING else knockdown.state.value,
        )
        return self._timeline.appending(knockdown.stream_id, moment)

    async def due(self, now_ms: int, *, limit: int = 100) -> list[str]:
        return await due_ids(self._redis, self.due_key, now_ms, limit=limit)

    async def now_ms(self) -> int:
        return await server_now_ms(self._redis)

    async def current(self, stream_id: str) -> Knockdown | None:
        """The stream's latest knock-down (running or not), or None."""
        found = await self._redis.get(self.stream_key(stream_id))
        return None if found is None else await self.find(text(found))

    async def get(self, knockdown_id: str) -> Knockdown:
        knockdown = await self.find(knockdown_id)
        if knockdown is None:
            raise NotFound(f"no knock-down {knockdown_id!r}", code=ErrorCode.UNKNOWN_KNOCKDOWN)
        return knockdown

    async def find(self, knockdown_id: str) -> Knockdown | None:
        if len(knockdown_id) > _ID_MAX:
            return None
        sku = await self._redis.hget(self.sku_index, knockdown_id)
        if sku is None:
            return None
        found = await read_row(self._redis, self._key(text(sku), knockdown_id), _FIELDS)
        if found is None:
            return None
        row, server_ms = found
        product = await self._catalog.find(text(sku))
        currency = row["currency"] or ""

        def money(field: str) -> Money:
            return Money(amount_minor=int(row[field] or 0), currency=currency)

        mode = KnockdownMode(row["mode"] or "taps")
        price, floor, step = money("price"), money("floor"), money("step")
        every = int(row["every"] or 0)
        at_floor = price.amount_minor <= floor.amount_minor
        per_price = int(row["per_price"] or 0)
        state = KnockdownState(row["state"] or "running")
        taps_to_next = 0
        if mode is KnockdownMode.TAPS and not at_floor:
            taps_to_next = every - int(row["level_taps"] or 0)
        next_step = int(row["next_step"] or 0)
        knockdown = Knockdown(
            id=knockdown_id,
            stream_id=row["stream"] or "",
            seller_id=row["seller"] or "",
            sku=text(sku),
            title=row["title"] or (product.title if product else text(sku)),
            image_url=product.image_url if product else None,
            state=state,
            mode=mode,
            start_price=money("start"),
            step=step,
            floor=floor,
            price=price,
            next_price=None
            if at_floor
            else Money(
                amount_minor=max(floor.amount_minor, price.amount_minor - step.amount_minor),
                currency=currency,
            ),
            level=int(row["level"] or 0),
            taps_per_step=every if mode is KnockdownMode.TAPS else 0,
            step_every_s=every / 1000 if mode is KnockdownMode.TIME else 0.0,
            taps=int(row["taps"] or 0),
            taps_to_next=taps_to_next,
            next_step_at_ms=next_step if mode is KnockdownMode.TIME and not at_floor else None,
            quantity=int(row["quantity"] or 0),
            left=int(row["remaining"] or 0),
            per_price=per_price,
            price_left=max(0, per_price - int(row["level_sold"] or 0)) if per_price else None,
            per_buyer_limit=int(row["per_buyer"] or 0),
            sold=int(row["sold"] or 0),
            steps=int(row["steps"] or 0),
            starts_at_ms=int(row["starts"] or 0),
            ends_at_ms=int(row["ends"] or 0),
            ended_at_ms=int(row["ended"]) if row["ended"] else None,
            pay_within_s=int(row["pay_ms"] or 0) // 1000,
            server_ms=server_ms,
        )
        if state is KnockdownState.RUNNING:
            self._fixed.setdefault(knockdown_id, knockdown)
        return knockdown

    async def fixed_part(self, knockdown_id: str) -> Knockdown:
        """The knock-down as this node first read it: right for what never changes (its
        stream, seller, SKU, prices and mode), stale for the rest."""
        fixed = self._fixed.get(knockdown_id)
        if fixed is None:
            fixed = await self.get(knockdown_id)
            if len(self._fixed) > 10_000:
                self._fixed.clear()
            self._fixed[knockdown_id] = fixed
        return fixed

    async def stats(self, stream_id: str) -> KnockdownStats:
        """The stream's knock-downs in numbers (read from each: a stream runs a few)."""
        found: list[Any] = await self._redis.zrange(self.stream_list_key(stream_id), 0, -1)
        runs = [k for k in [await self.find(text(i)) for i in found] if k is not None]
        states = [k.state for k in runs]
        gmv: dict[str, int] = {}
        for knockdown in runs:
            raw = await self._redis.hget(self._key(knockdown.sku, knockdown.id), "gmv")
            currency = knockdown.price.currency
            gmv[currency] = gmv.get(currency, 0) + int(raw or 0)
        return KnockdownStats(
            stream_id=stream_id,
            runs=len(runs),
            running=states.count(KnockdownState.RUNNING),
            sold_out=states.count(KnockdownState.SOLD_OUT),
            ended=states.count(KnockdownState.ENDED),
            taps=sum(k.taps for k in runs),
            steps=sum(k.steps for k in runs),
            units=sum(k.sold for k in runs),
            gmv=[Money(amount_minor=v, currency=c) for c, v in sorted(gmv.items()) if v],
        )
