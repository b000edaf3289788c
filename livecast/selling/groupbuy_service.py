"""The app's group buys, built at start-up, and the loop that closes them at their time
and settles them.

Every node runs the loop; they need no coordination: ``groupbuy_close.lua`` closes a
group buy once (only the call that closes it announces it), and a settlement runs under a
short lease, each of its steps idempotent, so a node that stops midway leaves it for the
next sweep of any node to finish.
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
from livecast.selling.groupbuy_types import GroupBuyState
from livecast.selling.groupbuys import GroupBuys
from livecast.selling.stream_end import EndedStreams
from livecast.streams.registry import Stream, StreamState
from livecast.timeline import TIMELINE

__all__ = ["GROUPBUYS", "groupbuys_ctx", "sweep_groupbuys"]

log = logging.getLogger(__name__)

GROUPBUYS = web.AppKey("groupbuys", GroupBuys)


class _Counters:
    """This node's group buy numbers for Prometheus (each node counts what it did)."""

    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self._joins = Counter(
            "livecast_groupbuy_joins", "Group buy joins, by outcome", ["outcome"],
            registry=registry,
        )  # fmt: skip
        self._closed = Counter(
            "livecast_groupbuys_closed", "Group buys closed, by outcome", ["outcome"],
            registry=registry,
        )  # fmt: skip
        self._units = Counter(
            "livecast_groupbuy_units", "Group buy units sold (members charged)", registry=registry
        )
        self._captured = Counter(
            "livecast_groupbuy_captured_value_minor",
            "What group buys charged, in minor units",
            ["currency"],
            registry=registry,
        )

    def joined(self, outcome: str) -> None:
        self._joins.labels(outcome).inc()

    def closed(self, state: GroupBuyState) -> None:
        outcome = "succeeded" if state is GroupBuyState.CAPTURING else "failed"
        self._closed.labels(outcome).inc()

    def captured(self, price: Money) -> None:
        self._units.inc()
        self._captured.labels(price.currency).inc(price.amount_minor)


async def sweep_groupbuys(groupbuys: GroupBuys) -> int:
    """Close every group buy whose time is up and settle every closed one; how many this
    call moved."""
    moved = 0
    for groupbuy_id in await groupbuys.due(await groupbuys.now_ms()):
        try:
            moved += await groupbuys.sweep_one(groupbuy_id) is not None
        except Exception:
            log.exception("could not close or settle group buy %s; retrying", groupbuy_id)
    return moved


async def end_for_stream(groupbuys: GroupBuys, stream_id: str) -> None:
    """End the running one of a stream that ended (see :mod:`livecast.selling.stream_end`)."""
    try:
        await groupbuys.end_for_stream(stream_id)
    except Exception:
        log.exception("could not end the group buy of ended stream %s", stream_id)


async def _sweep(
    groupbuys: GroupBuys, ended: EndedStreams, interval_s: float, stopping: asyncio.Event
) -> None:
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)
        try:
            for stream_id in await ended.since_last():
                await end_for_stream(groupbuys, stream_id)
        except Exception:
            log.exception("ended streams sweep failed; retrying next interval")
        try:
            await sweep_groupbuys(groupbuys)
        except Exception:
            log.exception("group buy sweep failed; retrying next interval")


async def groupbuys_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the group buys (needs INVENTORY and CART), sweep, stop at shutdown."""
    inventory, cart = app[INVENTORY], app[CART]
    groupbuys = GroupBuys(
        app[REDIS],
        app[KEYS],
        reservations=inventory.reservations,
        catalog=inventory.catalog,
        orders=cart.orders,
        payments=cart.payments,
        sales=cart.sales,
        webhooks=cart.webhooks,
        events=app[EVENTS],
        counters=_Counters(app[METRICS]),
        timeline=app[TIMELINE],
    )
    app[GROUPBUYS] = groupbuys
    stopping = asyncio.Event()
    interval = app[SETTINGS].inventory.sweep_interval_s

    async def on_stream_state(stream: Stream, previous: StreamState) -> None:
        if stream.state is StreamState.ENDED:
            await end_for_stream(groupbuys, stream.id)

    app[STREAMS].on_state_change(on_stream_state)
    ended = EndedStreams(app[REDIS], app[STREAMS])
    task = asyncio.create_task(
        _sweep(groupbuys, ended, interval, stopping), name="groupbuy-sweeper"
    )
    try:
        yield
    finally:
        stopping.set()
        await cancel_and_wait(task)
