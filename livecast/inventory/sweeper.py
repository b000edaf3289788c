"""The expiry sweeper: returns expired holds to stock, ends deals at their end time, and
settles multi-SKU commits whose coordinator went away.

Every node runs one; they need no coordination because every step is an idempotent
script (a hold expires once, a deal ends once, a txn has one recorded decision).

Deals whose time is up come from each swept SKU's own deal schedule (written atomically
with the deal's carve) and from ``<prefix>deals:due`` (written just after it); only the
call that ends a deal counts it in :class:`SweepReport`.

What to look at comes from a schedule, ``<prefix>holds:due`` (SKU -> earliest hold
expiry or deal end, ms), marked by the node that made a hold (batched by the notifier) and
rescheduled after each sweep by ``due_reschedule.lua``. Every ``full_sweep_interval_s``
the sweeper also walks every SKU of the catalog, so a mark lost to a crash between a
reservation and its mark, or a deal left out of every index by a crash right after its
carve, delays the return of its units by at most that long. The full sweep also ends the
deals of streams that have ended (``stream_ended``): the stream's own end ends them, but
a node that dies, or a Redis that fails, right then must not leave them running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from livecast.inventory._private import server_now_ms, text
from livecast.inventory.deals import Deals
from livecast.inventory.reserve import Expiry, Reservations
from livecast.redisdb import KeySpace, load_lua

__all__ = ["SweepReport", "Sweeper"]

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class SweepReport:
    skus: int
    expired: int
    settled: int
    deals_ended: int


class Sweeper:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        reservations: Reservations,
        deals: Deals,
        *,
        catalog_index_key: str,
        interval_s: float,
        full_interval_s: float,
        stream_ended: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._redis = redis
        self._reservations = reservations
        self._deals = deals
        self._catalog_index_key = catalog_index_key
        self._interval_s = interval_s
        self._full_interval_s = full_interval_s
        self._stream_ended = stream_ended
        self._reschedule = load_lua(redis, _HERE / "due_reschedule.lua")
        self.due_key = keys.key("holds", "due")
        self._running = True

    def stop(self) -> None:
        """Make :meth:`run` return after its current sweep (the owner also cancels it)."""
        self._running = False

    async def run(self) -> None:
        """Sweep until stopped; the app stops and cancels this at shutdown."""
        last_full = time.monotonic()
        while self._running:
            await asyncio.sleep(self._interval_s)
            full = time.monotonic() - last_full >= self._full_interval_s
            try:
                await self.sweep_once(full=full)
            except Exception:
                log.exception("inventory sweep failed; retrying next interval")
                continue
            if full:
                last_full = time.monotonic()

    async def sweep_once(self, *, full: bool = False) -> SweepReport:
        cutoff = await server_now_ms(self._redis)
        found: Any
        if full:
            found = await self._redis.smembers(self._catalog_index_key)
        else:
            found = await self._redis.zrangebyscore(self.due_key, "-inf", cutoff, start=0, num=500)
        skus = [text(s) for s in found]
        expiries: list[Expiry] = []
        for start in range(0, len(skus), 200):
            chunk = skus[start : start + 200]
            expiries += await asyncio.gather(*(self._reservations.expire_due(s) for s in chunk))
        settled = 0
        for sku, expiry in zip(skus, expiries, strict=True):
            for hold_id, txn in expiry.stuck:
                await self._reservations.settle_stuck(sku, hold_id, txn)
                settled += 1
        await asyncio.gather(
            *(
                self._reservations.batcher.call(
                    self._reschedule,
                    (self.due_key, sku, cutoff, -1 if e.next_due_ms is None else e.next_due_ms),
                )
                for sku, e in zip(skus, expiries, strict=True)
            )
        )
        # The SKUs' own deal schedules are the truth (written with the carve); deals:due
        # is the fast path that finds a due deal without its SKU being swept.
        due_deals: dict[str, str | None] = {}
        for sku, expiry in zip(skus, expiries, strict=True):
            for deal_id in expiry.deals_due:
                due_deals[deal_id] = sku
        for deal_id in await self._deals.due(cutoff):
            due_deals.setdefault(deal_id, None)
        ended = 0
        for deal_id, deal_sku in due_deals.items():
            try:
                if await self._deals.end_due(deal_id, deal_sku):
                    ended += 1
            except Exception:
                log.exception("could not end due deal %s; retrying next sweep", deal_id)
        if full and self._stream_ended is not None:
            ended += await self._end_deals_of_ended_streams()
        return SweepReport(
            skus=len(skus),
            expired=sum(e.expired for e in expiries),
            settled=settled,
            deals_ended=ended,
        )

    async def _end_deals_of_ended_streams(self) -> int:
        assert self._stream_ended is not None
        ended = 0
        for stream_id in await self._deals.running_streams():
            try:
                if await self._stream_ended(stream_id):
                    log.warning("stream %s ended with deals running; ending them", stream_id)
                    ended += await self._deals.end_for_stream(stream_id)
            except Exception:
                log.exception("could not end the deals of ended stream %s", stream_id)
        return ended
