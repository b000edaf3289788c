"""The selling formats of one app (auctions so far), built at start-up, and the loop
that ends auctions at their time.

Every node runs the loop; they need no coordination because ``auction_end.lua`` ends an
auction once: only the call that ends it announces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import Counter

from livecast.aio import cancel_and_wait
from livecast.appkeys import EVENTS, KEYS, REDIS, SETTINGS
from livecast.cart.service import CART
from livecast.inventory.service import INVENTORY
from livecast.metrics import METRICS, Metrics
from livecast.selling.auction_types import Auction, AuctionState
from livecast.selling.auctions import Auctions
from livecast.timeline import TIMELINE

__all__ = ["SELLING", "Selling", "selling_ctx"]

log = logging.getLogger(__name__)


@dataclass
class Selling:
    auctions: Auctions

    async def end_due_auctions(self) -> int:
        """End every auction whose time is up; how many this call ended."""
        auctions = self.auctions
        ended = 0
        for auction_id in await auctions.due(await auctions.now_ms()):
            try:
                ended += await auctions.end_due(auction_id) is not None
            except Exception:
                log.exception("could not end due auction %s; retrying next sweep", auction_id)
        return ended


SELLING = web.AppKey("selling", Selling)


class _Counters:
    """This node's auction numbers for Prometheus (each node counts what it did)."""

    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self._bids = Counter(
            "livecast_auction_bids", "Auction bids placed, by outcome", ["outcome"],
            registry=registry,
        )  # fmt: skip
        self._ended = Counter(
            "livecast_auctions_ended", "Auctions ended, by state", ["state"], registry=registry
        )
        self._won = Counter(
            "livecast_auction_won_value_minor",
            "Winning prices of sold auctions in minor units",
            ["currency"],
            registry=registry,
        )

    def bid(self, outcome: str) -> None:
        self._bids.labels(outcome).inc()

    def ended(self, auction: Auction) -> None:
        self._ended.labels(auction.state.value).inc()
        if auction.state is AuctionState.SOLD and auction.price is not None:
            self._won.labels(auction.price.currency).inc(auction.price.amount_minor)


async def _sweep(selling: Selling, interval_s: float, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)
        try:
            await selling.end_due_auctions()
        except Exception:
            log.exception("auction sweep failed; retrying next interval")


async def selling_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the formats (needs INVENTORY and CART), sweep, stop at shutdown."""
    inventory = app[INVENTORY]
    selling = Selling(
        auctions=Auctions(
            app[REDIS],
            app[KEYS],
            inventory.reservations,
            inventory.catalog,
            app[CART].carts,
            app[EVENTS],
            _Counters(app[METRICS]),
            timeline=app[TIMELINE],
        )
    )
    app[SELLING] = selling
    stopping = asyncio.Event()
    interval = app[SETTINGS].inventory.sweep_interval_s
    task = asyncio.create_task(_sweep(selling, interval, stopping), name="auction-sweeper")
    try:
        yield
    finally:
        stopping.set()
        await cancel_and_wait(task)
