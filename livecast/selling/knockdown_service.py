"""The app's price knock-downs, built at start-up, and the loop that steps their prices
(time mode), ends them at their deadline and sends the coalesced tap updates.

Every node runs the loop; they need no coordination: ``knockdown_step.lua`` makes each
step once and ``knockdown_end.lua`` ends a knock-down once (only the call that ends it
announces it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import Counter

from livecast.aio import cancel_and_wait
from livecast.appkeys import EVENTS, KEYS, REDIS, SETTINGS, STREAMS
from livecast.cart.service import CART
from livecast.inventory.money import Money
from livecast.inventory.service import INVENTORY
from livecast.metrics import METRICS, Metrics
from livecast.selling.knockdown_types import KnockdownState
from livecast.selling.knockdowns import Knockdowns
from livecast.selling.stream_end import EndedStreams
from livecast.streams.registry import Stream, StreamState
from livecast.timeline import TIMELINE

__all__ = ["KNOCKDOWNS", "knockdowns_ctx", "sweep_knockdowns"]

log = logging.getLogger(__name__)

KNOCKDOWNS = web.AppKey("knockdowns", Knockdowns)


class _Counters:
    """This node's knock-down numbers for Prometheus (each node counts what it did)."""

    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self._taps = Counter("livecast_knockdown_taps", "Knock-down taps", registry=registry)
        self._steps = Counter(
            "livecast_knockdown_steps", "Knock-down price drops", registry=registry
        )
        self._units = Counter(
            "livecast_knockdown_units", "Knock-down units bought (holds made)", registry=registry
        )
        self._value = Counter(
            "livecast_knockdown_value_minor",
            "Prices of the knock-down units bought, in minor units",
            ["currency"],
            registry=registry,
        )
        self._ended = Counter(
            "livecast_knockdowns_ended", "Knock-downs ended, by state", ["state"],
            registry=registry,
        )  # fmt: skip

    def tapped(self, n: int) -> None:
        self._taps.inc(n)

    def stepped(self, n: int) -> None:
        self._steps.inc(n)

    def bought(self, price: Money) -> None:
        self._units.inc()
        self._value.labels(price.currency).inc(price.amount_minor)

    def ended(self, state: KnockdownState) -> None:
        self._ended.labels(state.value).inc()


async def sweep_knockdowns(knockdowns: Knockdowns) -> int:
    """Step or end every due knock-down, and send the coalesced tap updates; how many
    this call moved."""
    moved = 0
    for knockdown_id in await knockdowns.due(await knockdowns.now_ms()):
        try:
            moved += await knockdowns.sweep_one(knockdown_id)
        except Exception:
            log.exception("could not step or end knock-down %s; retrying", knockdown_id)
    await knockdowns.flush_taps()
    return moved


async def end_for_stream(knockdowns: Knockdowns, stream_id: str) -> None:
    """End the running one of a stream that ended (see :mod:`livecast.selling.stream_end`)."""
    try:
        await knockdowns.end_for_stream(stream_id)
    except Exception:
        log.exception("could not end the knock-down of ended stream %s", stream_id)


async def _sweep(
    knockdowns: Knockdowns, ended: EndedStreams, interval_s: float, stopping: asyncio.Event
) -> None:
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)
        try:
            for stream_id in await ended.since_last():
                await end_for_stream(knockdowns, stream_id)
        except Exception:
            log.exception("ended streams sweep failed; retrying next interval")
        try:
            await sweep_knockdowns(knockdowns)
        except Exception:
            log.exception("knock-down sweep failed; retrying next interval")


async def knockdowns_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the knock-downs (needs INVENTORY and CART), sweep, stop at shutdown."""
    inventory = app[INVENTORY]
    knockdowns = Knockdowns(
        app[REDIS],
        app[KEYS],
        reservations=inventory.reservations,
        catalog=inventory.catalog,
        carts=app[CART].carts,
        events=app[EVENTS],
        counters=_Counters(app[METRICS]),
        timeline=app[TIMELINE],
    )
    app[KNOCKDOWNS] = knockdowns
    stopping = asyncio.Event()
    # Steps come on time to a fraction of a second; taps are sent a few times a second.
    interval = min(0.25, app[SETTINGS].inventory.sweep_interval_s)

    async def on_stream_state(stream: Stream, previous: StreamState) -> None:
        if stream.state is StreamState.ENDED:
            await end_for_stream(knockdowns, stream.id)

    app[STREAMS].on_state_change(on_stream_state)
    ended = EndedStreams(app[REDIS], app[STREAMS])
    task = asyncio.create_task(
        _sweep(knockdowns, ended, interval, stopping), name="knockdown-sweeper"
    )
    try:
        yield
    finally:
        stopping.set()
        await cancel_and_wait(task)
