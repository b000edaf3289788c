"""The selling formats of one app, built at start-up, and the loop that ends auctions,
polls and giveaways at their time.

Every node runs the loop; they need no coordination because ``auction_end.lua`` ends an
auction once (``poll_close.lua`` a poll, ``giveaway_draw.lua`` a giveaway): only the call
that ends it announces it. Every node also flushes, a few times a second, the poll totals
and giveaway entry counts it saw change (coalesced like likes).
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
from livecast.appkeys import EVENTS, KEYS, REDIS, SETTINGS, STREAMS
from livecast.cart.service import CART
from livecast.chat import CHAT
from livecast.inventory.service import INVENTORY
from livecast.metrics import METRICS, Metrics
from livecast.selling.auction_types import Auction, AuctionState
from livecast.selling.auctions import Auctions
from livecast.selling.follows import Follows
from livecast.selling.giveaway_types import Giveaway, GiveawayState
from livecast.selling.giveaways import Giveaways
from livecast.selling.poll_types import Poll
from livecast.selling.polls import Polls
from livecast.selling.prizes import PrizeOrders
from livecast.selling.stream_end import EndedStreams
from livecast.streams.registry import Stream, StreamState
from livecast.timeline import TIMELINE

__all__ = ["SELLING", "Selling", "selling_ctx"]

log = logging.getLogger(__name__)


@dataclass
class Selling:
    auctions: Auctions
    polls: Polls
    giveaways: Giveaways
    follows: Follows

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

    async def on_stream_state(self, stream: Stream, previous: StreamState) -> None:
        """A stream that ends takes its running formats with it (see
        :mod:`livecast.selling.stream_end`)."""
        if stream.state is StreamState.ENDED:
            await self.end_for_stream(stream.id)

    async def end_for_stream(self, stream_id: str) -> None:
        """End the stream's running auction (the leader wins at the price reached; with
        no bid, the unit returns to stock), close its running poll (the tally stands)
        and draw its running giveaway (with no entry, the unit returns to stock)."""
        try:
            await self.auctions.end_for_stream(stream_id)
        except Exception:
            log.exception("could not end the auction of ended stream %s", stream_id)
        try:
            await self.polls.close_for_stream(stream_id)
        except Exception:
            log.exception("could not close the poll of ended stream %s", stream_id)
        try:
            await self.giveaways.draw_for_stream(stream_id)
        except Exception:
            log.exception("could not draw the giveaway of ended stream %s", stream_id)

    async def end_due_polls(self) -> int:
        """Close every poll whose time is up; how many this call closed."""
        polls = self.polls
        closed = 0
        for poll_id in await polls.due(await self.auctions.now_ms()):
            try:
                closed += await polls.close_due(poll_id) is not None
            except Exception:
                log.exception("could not close due poll %s; retrying next sweep", poll_id)
        return closed

    async def draw_due_giveaways(self) -> int:
        """Draw every giveaway whose time is up (and finish draws stopped midway); how
        many this call drew."""
        giveaways = self.giveaways
        drawn = 0
        for giveaway_id in await giveaways.due(await self.auctions.now_ms()):
            try:
                drawn += await giveaways.draw_due(giveaway_id) is not None
            except Exception:
                log.exception("could not draw due giveaway %s; retrying next sweep", giveaway_id)
        return drawn


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


class _PollCounters:
    """This node's poll numbers for Prometheus."""

    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self._started = Counter("livecast_polls_started", "Polls started", registry=registry)
        self._votes = Counter(
            "livecast_poll_votes",
            "Poll votes, by outcome (voted: a first vote; changed; unchanged)",
            ["outcome"],
            registry=registry,
        )
        self._ended = Counter(
            "livecast_polls_ended", "Polls ended, by state", ["state"], registry=registry
        )

    def started(self) -> None:
        self._started.inc()

    def vote(self, outcome: str) -> None:
        self._votes.labels(outcome).inc()

    def ended(self, poll: Poll) -> None:
        self._ended.labels(poll.state.value).inc()


class _GiveawayCounters:
    """This node's giveaway numbers for Prometheus."""

    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self._started = Counter(
            "livecast_giveaways_started", "Giveaways started", registry=registry
        )
        self._entries = Counter(
            "livecast_giveaway_entries", "Giveaway entries taken", registry=registry
        )
        self._ended = Counter(
            "livecast_giveaways_ended", "Giveaways ended, by state", ["state"], registry=registry
        )
        self._prizes = Counter(
            "livecast_giveaway_prize_units", "Units given away to winners", registry=registry
        )

    def started(self) -> None:
        self._started.inc()

    def entered(self) -> None:
        self._entries.inc()

    def ended(self, giveaway: Giveaway) -> None:
        self._ended.labels(giveaway.state.value).inc()
        if giveaway.state is GiveawayState.DRAWN:
            self._prizes.inc()


async def _sweep(
    selling: Selling, ended: EndedStreams, interval_s: float, stopping: asyncio.Event
) -> None:
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)
        try:
            for stream_id in await ended.since_last():
                await selling.end_for_stream(stream_id)
        except Exception:
            log.exception("ended streams sweep failed; retrying next interval")
        try:
            await selling.end_due_auctions()
        except Exception:
            log.exception("auction sweep failed; retrying next interval")
        try:
            await selling.end_due_polls()
            await selling.draw_due_giveaways()
        except Exception:
            log.exception("poll/giveaway sweep failed; retrying next interval")


async def _flush(selling: Selling, interval_s: float, stopping: asyncio.Event) -> None:
    """Publish the changed poll totals and giveaway entry counts, coalesced."""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)
        try:
            await selling.polls.flush_totals()
            await selling.giveaways.flush_entries()
        except Exception:
            log.exception("poll/giveaway totals flush failed; retrying next interval")


async def selling_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the formats (needs INVENTORY, CHAT and CART), sweep, stop at shutdown."""
    inventory = app[INVENTORY]
    cart = app[CART]
    follows = Follows(app[REDIS], app[KEYS])
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
        ),
        polls=Polls(
            app[REDIS],
            app[KEYS],
            app[EVENTS],
            _PollCounters(app[METRICS]),
            timeline=app[TIMELINE],
        ),
        giveaways=Giveaways(
            app[REDIS],
            app[KEYS],
            reservations=inventory.reservations,
            catalog=inventory.catalog,
            prizes=PrizeOrders(
                app[REDIS],
                reservations=inventory.reservations,
                orders=cart.orders,
                sales=cart.sales,
                webhooks=cart.webhooks,
            ),
            streams=app[STREAMS],
            chat=app[CHAT].history,
            follows=follows,
            events=app[EVENTS],
            counters=_GiveawayCounters(app[METRICS]),
            timeline=app[TIMELINE],
        ),
        follows=follows,
    )
    app[SELLING] = selling
    app[STREAMS].on_state_change(selling.on_stream_state)
    stopping = asyncio.Event()
    interval = app[SETTINGS].inventory.sweep_interval_s
    ended = EndedStreams(app[REDIS], app[STREAMS])
    task = asyncio.create_task(_sweep(selling, ended, interval, stopping), name="auction-sweeper")
    flush_interval = app[SETTINGS].chat.like_flush_interval_s
    flusher = asyncio.create_task(_flush(selling, flush_interval, stopping), name="poll-totals")
    try:
        yield
    finally:
        stopping.set()
        await cancel_and_wait(task)
        await cancel_and_wait(flusher)
