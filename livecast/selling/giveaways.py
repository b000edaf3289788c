"""Giveaways: the host gives one unit of a product away; eligible viewers enter, one
entry each; a draw that anyone can check picks the winner, whose prize is a
zero-priced order.

A giveaway moves ``running -> drawn | no_entries | cancelled`` (:class:`GiveawayState`),
one Lua script per move, each on the keys of the prize's SKU (one hash slot):

* ``giveaway_start.lua``: takes one unit out of free stock (counted with deals' and
  auctions' units in ``deal_reserved``, so it cannot be sold twice) and opens it;
* ``giveaway_enter.lua``: one entry per person, appended to the entry list in the
  order they came; entering again changes nothing;
* ``giveaway_draw.lua``: the host presses Draw, or any node's sweep draws once its end
  time has passed, exactly once. The winner is ``winner_index(seed, entrants)``; the
  unit becomes the winner's hold at a zero price. With no entry it goes back to stock;
* ``giveaway_cancel.lua``: the host cancels before the draw; the unit goes back.

Who may enter (:class:`Eligibility`): ``everyone`` signed in; ``followers`` of the
stream's seller (:mod:`livecast.selling.follows`); ``buyers``, who have an order with a
line from this stream (the stream's exact buyer set, :mod:`livecast.cart.stats`). The
stream's seller and hosts may not enter (403 ``own_giveaway``); anonymous viewers may
not either (401): one entry per person needs a person.

The auditable draw. At the start the server draws a 32-byte random seed (hex, 64
characters) and publishes only its commitment, ``seed_sha256`` = hex SHA-256 of the
seed's text, in ``giveaway.started``. At the draw it reveals the seed; with the entry
list (``GET /api/giveaways/{id}/audit``) anyone checks that SHA-256(seed) is the
commitment and that the winner is :func:`winner_index` of them. The seed is fixed
before any entry exists, so no one can pick it to suit an entrant.

The prize. Right after the draw, the winner's hold becomes a zero-priced order (id
``ord_giveaway-<id>``) through :mod:`livecast.selling.prizes`, idempotent by that id; a
node that dies midway leaves the giveaway in the due set, and a later sweep on any node
finishes it (and announces it, if it had not been).

The winner is announced with ``giveaway.drawn`` and a chat line posted as the stream's
seller.

Keys besides the SKU's own (:mod:`livecast.inventory.reserve`)::

    <prefix>{sku:S}:giveaway:<id>           hash: the giveaway (state, seed, winner, clock)
    <prefix>{sku:S}:giveaway:<id>:entries   list: entrants' ids in entry order
    <prefix>{sku:S}:giveaway:<id>:entrants  hash: entrant id -> display name
    <prefix>giveaways:sku                   hash: giveaway id -> SKU
    <prefix>giveaways:due                   sorted set: giveaways to draw or finish, by time
    <prefix>stream:<id>:giveaway            string: the stream's latest giveaway id
    <prefix>stream:<id>:giveaways           sorted set: the stream's giveaway ids by start
    <prefix>stream:<id>:giveaway-starting   string, for a moment: a start is under way

A giveaway's start, draw and cancel carry ``media_time_ms`` and go on the stream's
timeline (:mod:`livecast.timeline`); entry counts are live counters. Ending the stream
draws its running giveaway (:mod:`livecast.selling.stream_end`).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis

from livecast.auth import Identity, Role
from livecast.chat.history import ChatHistory
from livecast.error_codes import ErrorCode
from livecast.errors import ApiError, Conflict, NotFound
from livecast.events import EventPublisher
from livecast.ids import is_sku, new_id
from livecast.inventory._private import due_ids, read_row, server_now_ms, text
from livecast.inventory.catalog import Catalog
from livecast.inventory.errors import raise_for_status
from livecast.inventory.reserve import Reservations
from livecast.redisdb import KeySpace, load_lua
from livecast.selling.follows import Follows
from livecast.selling.giveaway_types import (
    Eligibility,
    EntryResult,
    Giveaway,
    GiveawayAudit,
    GiveawayCancelled,
    GiveawayDrawn,
    GiveawayEntries,
    GiveawayEntriesData,
    GiveawayStarted,
    GiveawayState,
    GiveawayStats,
)
from livecast.selling.prizes import Prize, PrizeOrders
from livecast.selling.starting import StartKeys, one_start_at_a_time, refuse_running, start_indexed
from livecast.streams.registry import StreamRegistry
from livecast.timeline import Moment, MomentKind, Timeline

__all__ = ["GiveawayCounters", "Giveaways", "seed_commitment", "winner_index"]

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent
_ID_MAX = 64
# The winner's hold lasts this long; it is committed into the prize order at once.
_PRIZE_HOLD_MS = 7 * 86_400 * 1000
# A drawn giveaway is looked at again by the sweep this long after its draw, in case the
# call that drew it stopped before the prize order or the announcement.
_RECHECK_MS = 30_000

_FIELDS = [
    "state",
    "stream",
    "seller",
    "eligibility",
    "seed",
    "seed_sha256",
    "starts",
    "ends",
    "entries",
    "drawn",
    "winner",
    "winner_name",
    "winner_index",
    "order",
    "title",
    "announced",
]


def seed_commitment(seed: str) -> str:
    """What a giveaway publishes at its start: hex SHA-256 of the seed's text."""
    return hashlib.sha256(seed.encode()).hexdigest()


def winner_index(seed: str, entrants: list[str]) -> int:
    """The draw (``giveaway_draw.lua`` computes the same): the first 48 bits of
    SHA-1 over the seed and the entrants' ids in entry order, one per line, modulo the
    number of entrants."""
    digest = hashlib.sha1("\n".join([seed, *entrants]).encode()).hexdigest()
    return int(digest[:12], 16) % len(entrants)


class GiveawayCounters(Protocol):
    """What a node counts for Prometheus (:mod:`livecast.selling.service` makes them)."""

    def started(self) -> None: ...

    def entered(self) -> None: ...

    def ended(self, giveaway: Giveaway) -> None: ...


class Giveaways:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        *,
        reservations: Reservations,
        catalog: Catalog,
        prizes: PrizeOrders,
        streams: StreamRegistry,
        chat: ChatHistory,
        follows: Follows,
        events: EventPublisher,
        counters: GiveawayCounters | None = None,
        timeline: Timeline,
    ) -> None:
        self._timeline = timeline
        self._redis = redis
        self._keys = keys
        self._reservations = reservations
        self._catalog = catalog
        self._prizes = prizes
        self._streams = streams
        self._chat = chat
        self._follows = follows
        self._events = events
        self._counters = counters
        self._start = load_lua(redis, _HERE / "giveaway_start.lua")
        self._enter = load_lua(redis, _HERE / "giveaway_enter.lua")
        self._draw = load_lua(redis, _HERE / "giveaway_draw.lua")
        self._cancel = load_lua(redis, _HERE / "giveaway_cancel.lua")
        self.sku_index = keys.key("giveaways", "sku")
        self.due_key = keys.key("giveaways", "due")
        # Per node: a giveaway's SKU never changes.
        self._skus: dict[str, str] = {}
        # Per node: the giveaways this node took entries for since its last flush.
        self._changed: set[str] = set()

    def stream_key(self, stream_id: str) -> str:
        return self._keys.key("stream", stream_id, "giveaway")

    def stream_list_key(self, stream_id: str) -> str:
        return self._keys.key("stream", stream_id, "giveaways")

    def _buyers_key(self, stream_id: str) -> str:
        """The stream's exact buyer set, kept by :mod:`livecast.cart.stats`."""
        return self._keys.key("{st:" + stream_id + "}", "buyer-ids")

    def _key(self, sku: str, giveaway_id: str) -> str:
        return self._reservations.base(sku) + ":giveaway:" + giveaway_id

    async def start(
        self,
        *,
        stream_id: str,
        seller_id: str,
        sku: str,
        eligibility: Eligibility,
        duration_s: int,
    ) -> Giveaway:
        """Give one unit of ``sku`` away on the stream (the caller checked the stream is
        live and may be managed, and may run deals on the product). One running giveaway
        per stream: 409 ``giveaway_running``; also 404 ``unknown_sku``, 409 ``sold_out``."""
        if not is_sku(sku):
            raise_for_status("unknown_sku", sku)
        starting = self._keys.key("stream", stream_id, "giveaway-starting")
        async with one_start_at_a_time(
            self._redis, starting, what="giveaway", code=ErrorCode.GIVEAWAY_RUNNING
        ):
            current = await self.current(stream_id)
            refuse_running(
                current.id if current and current.state is GiveawayState.RUNNING else None,
                what="giveaway",
                code=ErrorCode.GIVEAWAY_RUNNING,
                id_field="giveaway_id",
            )
            giveaway_id = new_id()
            seed = secrets.token_hex(32)
            now = await server_now_ms(self._redis)
            await start_indexed(
                self._redis,
                StartKeys.of(self, stream_id),
                record_id=giveaway_id,
                sku=sku,
                due_guess_ms=now + duration_s * 1000 if duration_s else None,
                script=lambda: self._start(
                    keys=[self._reservations.base(sku)],
                    args=[
                        giveaway_id,
                        stream_id,
                        seller_id,
                        eligibility.value,
                        seed,
                        seed_commitment(seed),
                        duration_s * 1000,
                    ],
                ),
            )
        self._reservations.dirty_skus.setdefault(sku, 0)
        giveaway = await self.get(giveaway_id)
        media = await self._timeline.media_now(stream_id)
        await self._events.set_state(
            "giveaway",
            giveaway,
            GiveawayStarted(stream=stream_id, data=giveaway, media_time_ms=media),
            also=self._on_timeline(MomentKind.GIVEAWAY_STARTED, giveaway, media),
        )
        if self._counters is not None:
            self._counters.started()
        return giveaway

    async def enter(self, giveaway_id: str, caller: Identity) -> EntryResult:
        """Enter ``caller`` (signed in) in the draw. 404 ``unknown_giveaway``; 409
        ``giveaway_ended``; 403 ``own_giveaway``, ``not_eligible``."""
        caller.require_identity()
        sku = await self.sku_of(giveaway_id)
        fields = ["stream", "seller", "eligibility"]
        raw = await self._redis.hmget(self._key(sku, giveaway_id), fields)
        if raw[0] is None:  # listed by a start that never ran its script
            raise NotFound(f"no giveaway {giveaway_id!r}", code=ErrorCode.UNKNOWN_GIVEAWAY)
        stream_id, seller_id, eligibility = (text(v) for v in raw)
        if caller.can_manage(stream_id, seller_id):
            raise ApiError.of(
                ErrorCode.OWN_GIVEAWAY, f"{giveaway_id}: {ErrorCode.OWN_GIVEAWAY.meaning}"
            )
        try:
            await self._require_eligible(Eligibility(eligibility), caller.sub, stream_id, seller_id)
        except ApiError:
            # Whoever entered stays in the draw (an unfollow later changes nothing): a
            # retry is answered as the first time.
            if not await self.has_entered(giveaway_id, caller.sub):
                raise
        reply = await self._enter(
            keys=[self._reservations.base(sku)],
            args=[giveaway_id, caller.sub, caller.name or caller.sub],
        )
        status = text(reply[0])
        if status not in ("entered", "replayed"):
            raise_for_status(status, giveaway_id, giveaway_id=giveaway_id)
        if status == "entered":
            self._changed.add(giveaway_id)
            if self._counters is not None:
                self._counters.entered()
        return EntryResult(
            giveaway_id=giveaway_id,
            entered=True,
            replayed=status == "replayed",
            entries=int(reply[1]),
        )

    async def _require_eligible(
        self, eligibility: Eligibility, user: str, stream_id: str, seller_id: str
    ) -> None:
        if eligibility is Eligibility.FOLLOWERS and not await self._follows.follows(
            user, seller_id
        ):
            raise ApiError.of(ErrorCode.NOT_ELIGIBLE, "this giveaway is for the seller's followers")
        if eligibility is Eligibility.BUYERS and not await self._redis.sismember(
            self._buyers_key(stream_id), user
        ):
            raise ApiError.of(ErrorCode.NOT_ELIGIBLE, "this giveaway is for buyers of this stream")

    async def flush_entries(self) -> int:
        """Publish the entry count of every giveaway this node took entries for since the
        last flush (coalesced, one event each); how many were published."""
        changed, self._changed = self._changed, set()
        for giveaway_id in changed:
            giveaway = await self.find(giveaway_id)
            if giveaway is None or giveaway.state is not GiveawayState.RUNNING:
                continue
            # Only the event: the state slot keeps the giveaway as it started (see
            # :meth:`Polls.flush_totals <livecast.selling.polls.Polls.flush_totals>`).
            await self._events.publish(
                GiveawayEntries(
                    stream=giveaway.stream_id,
                    data=GiveawayEntriesData(id=giveaway.id, entries=giveaway.entries),
                )
            )
        return len(changed)

    async def draw(self, giveaway_id: str) -> Giveaway:
        """The host draws now (409 ``giveaway_ended`` once drawn or cancelled)."""
        sku = await self.sku_of(giveaway_id)
        # Listed first, so that a draw stopped midway is finished by a sweep.
        recheck = await server_now_ms(self._redis) + _RECHECK_MS
        await self._redis.zadd(self.due_key, {giveaway_id: recheck})
        reply = await self._draw(
            keys=[self._reservations.base(sku)],
            args=[giveaway_id, _hold_id(giveaway_id), 0, _PRIZE_HOLD_MS],
        )
        status = text(reply[0])
        if status == "already_drawn":
            raise Conflict(
                f"{giveaway_id}: {ErrorCode.GIVEAWAY_ENDED.meaning}",
                code=ErrorCode.GIVEAWAY_ENDED,
            )
        if status not in ("drawn", "no_entries"):
            raise_for_status(status, giveaway_id, giveaway_id=giveaway_id)
        return await self._settle(sku, giveaway_id, counted=True)

    async def draw_due(self, giveaway_id: str) -> GiveawayState | None:
        """Draw the giveaway if its time is up, or finish a draw that stopped midway, as
        the sweep does; the state this call drew it to (exactly one call does), else
        None."""
        sku = await self._redis.hget(self.sku_index, giveaway_id)
        if sku is None:
            await self._redis.zrem(self.due_key, giveaway_id)
            return None
        reply = await self._draw(
            keys=[self._reservations.base(text(sku))],
            args=[giveaway_id, _hold_id(giveaway_id), 1, _PRIZE_HOLD_MS],
        )
        status = text(reply[0])
        if status == "not_due":
            ends = int(reply[1]) or int(reply[2]) + _RECHECK_MS
            await self._redis.zadd(self.due_key, {giveaway_id: ends})
            return None
        if status in ("drawn", "no_entries"):
            giveaway = await self._settle(text(sku), giveaway_id, counted=True)
            return giveaway.state
        if status == "already_drawn":
            # Drawn by another call, which settles it; if it stopped midway, finish.
            giveaway = await self.get(giveaway_id)
            recheck = (giveaway.drawn_at_ms or 0) + _RECHECK_MS
            if recheck > giveaway.server_ms:
                await self._redis.zadd(self.due_key, {giveaway_id: recheck})
            else:
                await self._settle(text(sku), giveaway_id, counted=False)
        else:
            await self._redis.zrem(self.due_key, giveaway_id)
        return None

    async def draw_for_stream(self, stream_id: str) -> Giveaway | None:
        """Draw the stream's running giveaway now (its stream ended; with no entry, the
        unit returns to stock); the giveaway if this call drew it, else None."""
        found = await self._redis.get(self.stream_key(stream_id))
        if found is None:
            return None
        giveaway = await self.find(text(found))
        if giveaway is None or giveaway.state is not GiveawayState.RUNNING:
            return None
        try:
            return await self.draw(giveaway.id)
        except Conflict:
            return None  # drawn or cancelled meanwhile, by another call

    async def _settle(self, sku: str, giveaway_id: str, *, counted: bool) -> Giveaway:
        """After the draw: the prize order (idempotent by its id), then the announcement
        (at most once: it is marked first), then off the due set."""
        giveaway = await self.get(giveaway_id)
        key = self._key(sku, giveaway_id)
        if giveaway.state is GiveawayState.DRAWN and giveaway.order_id is None:
            order_id = await self._prize_order(giveaway)
            await self._redis.hset(key, "order", order_id)
            giveaway = await self.get(giveaway_id)
        # Announced at most once: whoever marks it announces it.
        if giveaway.state is not GiveawayState.CANCELLED and await self._redis.hsetnx(
            key, "announced", 1
        ):
            await self._announce(giveaway)
        await self._redis.zrem(self.due_key, giveaway_id)
        if counted and self._counters is not None:
            self._counters.ended(giveaway)
        return giveaway

    async def _prize_order(self, giveaway: Giveaway) -> str:
        assert giveaway.winner_id is not None
        order = await self._prizes.make(
            Prize(
                order_id="ord_giveaway-" + giveaway.id,
                sku=giveaway.sku,
                hold_id=_hold_id(giveaway.id),
                title=giveaway.title,
                winner_id=giveaway.winner_id,
                winner_name=giveaway.winner_name or giveaway.winner_id,
                stream_id=giveaway.stream_id,
                seller_id=giveaway.seller_id,
                won_at_ms=giveaway.drawn_at_ms or 0,
            )
        )
        return order.id

    async def _announce(self, giveaway: Giveaway) -> None:
        # at its end time (the sweep comes a moment later), or when the host drew it
        media = await self._timeline.media_now(giveaway.stream_id, at_ms=giveaway.drawn_at_ms)
        await self._events.clear_state(
            "giveaway",
            GiveawayDrawn(stream=giveaway.stream_id, data=giveaway, media_time_ms=media),
            also=self._on_timeline(MomentKind.GIVEAWAY_DRAWN, giveaway, media),
        )
        if giveaway.state is not GiveawayState.DRAWN:
            return
        try:
            stream = await self._streams.get(giveaway.stream_id)
            seller = Identity(sub=stream.seller_id, name=stream.seller_name, role=Role.SELLER)
            await self._chat.post(
                stream.id,
                seller,
                f"🎉 {giveaway.winner_name} won the giveaway: {giveaway.title}!",
                f"giveaway-{giveaway.id}",
                is_host=True,
            )
        except ApiError as exc:
            log.warning("giveaway %s: winner's chat line not posted: %s", giveaway.id, exc)

    async def cancel(self, giveaway_id: str) -> Giveaway:
        """Cancel before the draw (409 ``giveaway_ended``); the unit returns to stock."""
        sku = await self.sku_of(giveaway_id)
        reply = await self._cancel(keys=[self._reservations.base(sku)], args=[giveaway_id])
        status = text(reply[0])
        if status != GiveawayState.CANCELLED.value:
            raise_for_status(status, giveaway_id, giveaway_id=giveaway_id)
        if not GiveawayState.RUNNING.can_become(GiveawayState.CANCELLED):
            raise RuntimeError("a giveaway script moved running to cancelled")
        await self._redis.zrem(self.due_key, giveaway_id)
        self._reservations.dirty_skus.setdefault(sku, 0)
        giveaway = await self.get(giveaway_id)
        media = await self._timeline.media_now(giveaway.stream_id)
        await self._events.clear_state(
            "giveaway",
            GiveawayCancelled(stream=giveaway.stream_id, data=giveaway, media_time_ms=media),
            also=self._on_timeline(MomentKind.GIVEAWAY_CANCELLED, giveaway, media),
        )
        if self._counters is not None:
            self._counters.ended(giveaway)
        return giveaway

    def _on_timeline(
        self, kind: MomentKind, giveaway: Giveaway, media_time_ms: int | None
    ) -> Callable[[Any], object]:
        """The giveaway's entry on its stream's timeline, for the event's MULTI."""
        moment = Moment(
            kind=kind,
            media_time_ms=media_time_ms,
            sku=giveaway.sku,
            giveaway_id=giveaway.id,
            title=giveaway.title,
            state=None if giveaway.state is GiveawayState.RUNNING else giveaway.state.value,
        )
        return self._timeline.appending(giveaway.stream_id, moment)

    async def due(self, now_ms: int, *, limit: int = 100) -> list[str]:
        return await due_ids(self._redis, self.due_key, now_ms, limit=limit)

    async def sku_of(self, giveaway_id: str) -> str:
        sku = self._skus.get(giveaway_id)
        if sku is None:
            found = (
                None
                if len(giveaway_id) > _ID_MAX
                else await self._redis.hget(self.sku_index, giveaway_id)
            )
            if found is None:
                raise NotFound(f"no giveaway {giveaway_id!r}", code=ErrorCode.UNKNOWN_GIVEAWAY)
            if len(self._skus) > 10_000:
                self._skus.clear()
            sku = self._skus[giveaway_id] = text(found)
        return sku

    async def current(self, stream_id: str) -> Giveaway | None:
        """The stream's latest giveaway (running or not), or None."""
        found = await self._redis.get(self.stream_key(stream_id))
        return None if found is None else await self.find(text(found))

    async def get(self, giveaway_id: str) -> Giveaway:
        giveaway = await self.find(giveaway_id)
        if giveaway is None:
            raise NotFound(f"no giveaway {giveaway_id!r}", code=ErrorCode.UNKNOWN_GIVEAWAY)
        return giveaway

    async def find(self, giveaway_id: str) -> Giveaway | None:
        try:
            sku = await self.sku_of(giveaway_id)
        except NotFound:
            return None
        found = await read_row(self._redis, self._key(sku, giveaway_id), _FIELDS)
        if found is None:
            return None
        row, server_ms = found
        product = await self._catalog.find(sku)
        state = GiveawayState(row["state"] or "running")
        ends = int(row["ends"] or 0)
        return Giveaway(
            id=giveaway_id,
            stream_id=row["stream"] or "",
            seller_id=row["seller"] or "",
            sku=sku,
            title=row["title"] or (product.title if product else sku),
            image_url=product.image_url if product else None,
            state=state,
            eligibility=Eligibility(row["eligibility"] or "everyone"),
            entries=int(row["entries"] or 0),
            seed_sha256=row["seed_sha256"] or "",
            seed=None if state is GiveawayState.RUNNING else row["seed"],
            winner_id=row["winner"] or None,
            winner_name=row["winner_name"] or None,
            winner_index=int(row["winner_index"]) if row["winner_index"] else None,
            order_id=row["order"] or None,
            starts_at_ms=int(row["starts"] or 0),
            ends_at_ms=ends or None,
            drawn_at_ms=int(row["drawn"]) if row["drawn"] else None,
            server_ms=server_ms,
        )

    async def has_entered(self, giveaway_id: str, user: str) -> bool:
        sku = await self.sku_of(giveaway_id)
        return bool(await self._redis.hexists(self._key(sku, giveaway_id) + ":entrants", user))

    async def audit(self, giveaway_id: str) -> GiveawayAudit:
        """The commitment; after the draw also the seed and the entry list."""
        giveaway = await self.get(giveaway_id)
        entrants = None
        if giveaway.seed is not None:
            key = self._key(giveaway.sku, giveaway_id) + ":entries"
            found: list[Any] = await self._redis.lrange(key, 0, -1)
            entrants = [text(e) for e in found]
        return GiveawayAudit(
            giveaway_id=giveaway_id,
            state=giveaway.state,
            seed_sha256=giveaway.seed_sha256,
            seed=giveaway.seed,
            entrants=entrants,
            winner_index=giveaway.winner_index,
            winner_id=giveaway.winner_id,
        )

    async def stats(self, stream_id: str) -> GiveawayStats:
        """The stream's giveaways in numbers (read from each: a stream runs a few)."""
        found: list[Any] = await self._redis.zrange(self.stream_list_key(stream_id), 0, -1)
        giveaways = [g for g in [await self.find(text(i)) for i in found] if g is not None]
        states = [g.state for g in giveaways]
        entrants: set[bytes | str] = set()
        for giveaway in giveaways:
            key = self._key(giveaway.sku, giveaway.id) + ":entrants"
            entrants.update(await self._redis.hkeys(key))
        drawn = states.count(GiveawayState.DRAWN)
        return GiveawayStats(
            stream_id=stream_id,
            giveaways=len(giveaways),
            running=states.count(GiveawayState.RUNNING),
            drawn=drawn,
            no_entries=states.count(GiveawayState.NO_ENTRIES),
            cancelled=states.count(GiveawayState.CANCELLED),
            entries=sum(g.entries for g in giveaways),
            entrants=len(entrants),
            winners=drawn,
            prize_units=drawn,
        )


def _hold_id(giveaway_id: str) -> str:
    """The winner's hold: one per giveaway, so drawing twice cannot make two."""
    return "giveaway-" + giveaway_id
