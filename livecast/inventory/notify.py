"""Coalesced stock and deal updates to viewers, and the sweep schedule marks.

Reservations only note what changed (a dict item per call); every ``event_interval_s``
this node reads the current numbers once per changed SKU and deal and publishes:

* :class:`StockChanged` (``stock``, ``{sku, left, sold_out}``) to every stream pinning
  the SKU or dealing it;
* :class:`~livecast.inventory.deals.DealUpdated` (``deal.updated``, ``{id, sku, left,
  sold, sold_out}``) to the deal's stream.

Nothing is sent when the number did not change since this node last sent it, so a
burst of a thousand reservations in a quarter second is one event per stream.

Both carry ``media_time_ms`` and go on the stream's timeline (:mod:`livecast.timeline`)
in the same MULTI. Both also refresh the stream's current state (see
:mod:`livecast.events`) in the same MULTI as the event: the pinned card's stock, a
running deal's numbers. A viewer who connects later sees them in its hello.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import redis.asyncio as aioredis

from livecast.events import Event, EventPublisher
from livecast.inventory.deals import Deals, DealState, DealUpdated, DealUpdatedData
from livecast.inventory.pins import Pins
from livecast.inventory.reserve import Reservations
from livecast.timeline import MediaTimeMs, Moment, MomentKind

__all__ = ["StockChanged", "StockData", "StockNotifier"]

log = logging.getLogger(__name__)

_REMEMBERED = 10_000


class StockData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Units of ``sku`` left to sell (outside deals); ``sold_out`` when none."""

    sku: str
    left: int
    sold_out: bool


class StockChanged(Event, tag="stock", frozen=True, kw_only=True):
    """The stock of a SKU the stream pins or deals changed (coalesced)."""

    data: StockData
    media_time_ms: MediaTimeMs = None


class StockNotifier:
    def __init__(
        self,
        redis: aioredis.Redis,
        reservations: Reservations,
        deals: Deals,
        pins: Pins,
        events: EventPublisher,
        *,
        due_key: str,
        interval_s: float,
    ) -> None:
        self._redis = redis
        self._reservations = reservations
        self._deals = deals
        self._pins = pins
        self._events = events
        self._due_key = due_key
        self._interval_s = interval_s
        self._sent_stock: dict[tuple[str, str], int] = {}
        self._sent_deal: dict[str, tuple[int, int]] = {}
        self._running = True

    def stop(self) -> None:
        """Make :meth:`run` return after its current flush (the owner also cancels it)."""
        self._running = False

    async def run(self) -> None:
        while self._running:
            await asyncio.sleep(self._interval_s)
            try:
                await self.flush()
            except Exception:
                log.exception("inventory update flush failed; retrying next interval")

    async def flush(self) -> None:
        res = self._reservations
        skus, res.dirty_skus = res.dirty_skus, {}
        deals, res.dirty_deals = res.dirty_deals, {}
        try:
            if skus:
                await self._flush_skus(skus)
            if deals:
                await self._flush_deals(deals)
        except BaseException:
            # Redis failed (restarting, say): keep the changes for the next flush rather
            # than lose their events and sweep marks. What was sent is not sent twice.
            for sku, expires in skus.items():
                seen = res.dirty_skus.get(sku)
                if seen is None or (expires and (not seen or expires < seen)):
                    res.dirty_skus[sku] = expires
            res.dirty_deals = {**deals, **res.dirty_deals}
            raise

    async def _flush_skus(self, skus: dict[str, int]) -> None:
        marks = {sku: expires for sku, expires in skus.items() if expires > 0}
        names = list(skus)
        async with self._redis.pipeline(transaction=False) as pipe:
            if marks:
                pipe.zadd(self._due_key, marks, lt=True)
            for sku in names:
                pipe.hget(self._reservations.base(sku) + ":product", "available")
                pipe.smembers(self._deals.watchers_key(sku))
            replies: list[Any] = await pipe.execute()
        if marks:
            replies = replies[1:]
        if len(self._sent_stock) > _REMEMBERED:
            self._sent_stock.clear()
        timeline = self._deals.timeline
        media: dict[str, int | None] = {}  # per stream, read once per flush
        for i, sku in enumerate(names):
            available, streams = replies[2 * i], replies[2 * i + 1]
            if available is None:
                continue
            left = int(available)
            for raw in streams:
                stream_id = raw.decode()
                if self._sent_stock.get((stream_id, sku)) == left:
                    continue
                if stream_id not in media:
                    media[stream_id] = await timeline.media_now(stream_id)
                now = media[stream_id]
                event = StockChanged(
                    stream=stream_id,
                    data=StockData(sku=sku, left=left, sold_out=left == 0),
                    media_time_ms=now,
                )
                moment = Moment(
                    kind=MomentKind.STOCK, media_time_ms=now, sku=sku, left=left, sold_out=left == 0
                )
                also = timeline.appending(stream_id, moment)
                card = await self._pins.current_pin(stream_id)
                if card is not None and card.sku == sku:
                    await self._events.set_state("pin", card, event, also=also)
                else:
                    await self._events.publish(event, also=also)
                self._sent_stock[(stream_id, sku)] = left

    async def _flush_deals(self, deals: dict[str, str]) -> None:
        items = list(deals.items())
        async with self._redis.pipeline(transaction=False) as pipe:
            for deal_id, sku in items:
                pipe.hmget(
                    self._reservations.base(sku) + ":deal:" + deal_id,
                    ["remaining", "sold", "stream", "state"],
                )
            rows: list[Any] = await pipe.execute()
        if len(self._sent_deal) > _REMEMBERED:
            self._sent_deal.clear()
        for (deal_id, sku), row in zip(items, rows, strict=True):
            if row[0] is None:
                continue
            left, sold = int(row[0]), int(row[1])
            if self._sent_deal.get(deal_id) == (left, sold):
                continue
            stream_id = row[2].decode()
            numbers = DealUpdatedData(id=deal_id, sku=sku, left=left, sold=sold, sold_out=left == 0)
            now = await self._deals.timeline.media_now(stream_id)
            event = DealUpdated(stream=stream_id, data=numbers, media_time_ms=now)
            moment = Moment(
                kind=MomentKind.DEAL_UPDATED,
                media_time_ms=now,
                sku=sku,
                deal_id=deal_id,
                left=left,
                sold_out=left == 0,
            )
            also = self._deals.timeline.appending(stream_id, moment)
            deal = await self._deals.get(deal_id)
            if deal.state is DealState.ENDED:
                await self._events.publish(event, also=also)
            else:
                await self._events.set_state(f"deal:{deal_id}", deal, event, also=also)
                # The deal may have ended (and its slot been cleared) since it was read:
                # then this refresh must not bring the slot back.
                if (await self._deals.get(deal_id)).state is DealState.ENDED:
                    await self._events.drop_state(stream_id, f"deal:{deal_id}")
            self._sent_deal[deal_id] = (left, sold)
