"""The inventory services of one app, built from its settings and Redis, and the getters
other capabilities call.

For the chat hub (a viewer's hello snapshot)::

    inventory = app[INVENTORY]
    await inventory.current_pin(stream_id)   # dict like the pin.set event's data, or None
    await inventory.active_deals(stream_id)  # [dict like deal.started's data], running or
                                             # scheduled, oldest first

Before selling a product on a stream: ``await app[INVENTORY].ownership.require_sellable(stream,
product)`` (403 unless the stream may sell it; see :mod:`livecast.inventory.ownership`).

For checkout: ``app[INVENTORY].reservations`` (:class:`~livecast.inventory.reserve.Reservations`:
``reserve``, ``release``, ``commit``, ``commit_holds``, ``get_hold``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgspec
from aiohttp import web

from livecast.aio import cancel_and_wait
from livecast.appkeys import EVENTS, KEYS, REDIS, SETTINGS, STREAMS
from livecast.inventory.batch import ScriptBatcher
from livecast.inventory.catalog import Catalog
from livecast.inventory.deals import Deals
from livecast.inventory.notify import StockNotifier
from livecast.inventory.ownership import Ownership
from livecast.inventory.pins import Pins
from livecast.inventory.reserve import Reservations
from livecast.inventory.sweeper import Sweeper
from livecast.streams.registry import Stream, StreamRegistry, StreamState
from livecast.timeline import TIMELINE

__all__ = ["INVENTORY", "Inventory", "inventory_ctx"]

log = logging.getLogger(__name__)


@dataclass
class Inventory:
    reservations: Reservations
    catalog: Catalog
    deals: Deals
    pins: Pins
    sweeper: Sweeper
    notifier: StockNotifier
    ownership: Ownership
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def current_pin(self, stream_id: str) -> dict[str, Any] | None:
        card = await self.pins.current_pin(stream_id)
        return None if card is None else dict(msgspec.to_builtins(card))

    async def active_deals(self, stream_id: str) -> list[dict[str, Any]]:
        deals = await self.deals.for_stream(stream_id, active_only=True)
        return [dict(msgspec.to_builtins(d)) for d in deals]

    async def on_stream_state(self, stream: Stream, previous: StreamState) -> None:
        """A stream that ends takes its deals and its pin with it.

        Each step stands alone: a deal that cannot be ended (logged) does not keep the
        others running or the pin set. A deal left running is ended by the next full
        sweep of any node (:class:`~livecast.inventory.sweeper.Sweeper`).
        """
        if stream.state is not StreamState.ENDED:
            return
        try:
            await self.deals.end_for_stream(stream.id)
        except Exception:
            log.exception("could not end the deals of ended stream %s", stream.id)
        try:
            await self.pins.clear(stream.id)
        except Exception:
            log.exception("could not clear the pin of ended stream %s", stream.id)


INVENTORY = web.AppKey("inventory", Inventory)


async def _stream_has_ended(streams: StreamRegistry, stream_id: str) -> bool:
    """For the sweeper: has this stream ended? (An unknown id has not: the deal ends at
    its time.)"""
    stream = await streams.find(stream_id)
    return stream is not None and stream.state is StreamState.ENDED


async def inventory_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the services, run the sweeper and notifier, stop them at shutdown."""
    settings = app[SETTINGS].inventory
    redis, keys, events = app[REDIS], app[KEYS], app[EVENTS]
    reservations = Reservations(
        redis,
        keys,
        hold_ttl_s=settings.hold_ttl_s,
        retention_s=settings.hold_retention_s,
        prepare_window_s=settings.prepare_window_s,
        max_qty=settings.max_quantity,
        batcher=ScriptBatcher(redis),
    )
    catalog = Catalog(redis, keys, reservations)
    deals = Deals(redis, keys, reservations, catalog, events, app[TIMELINE])
    sweeper = Sweeper(
        redis,
        keys,
        reservations,
        deals,
        catalog_index_key=catalog.index_key,
        interval_s=settings.sweep_interval_s,
        full_interval_s=settings.full_sweep_interval_s,
        stream_ended=partial(_stream_has_ended, app[STREAMS]),
    )
    pins = Pins(redis, keys, catalog, deals, events, app[TIMELINE])
    notifier = StockNotifier(
        redis,
        reservations,
        deals,
        pins,
        events,
        due_key=sweeper.due_key,
        interval_s=settings.event_interval_s,
    )
    inventory = Inventory(
        reservations=reservations,
        catalog=catalog,
        deals=deals,
        pins=pins,
        sweeper=sweeper,
        notifier=notifier,
        ownership=Ownership(redis, reservations, catalog, deals, pins, app[STREAMS]),
    )
    app[INVENTORY] = inventory
    app[STREAMS].on_state_change(inventory.on_stream_state)
    app[STREAMS].on_featuring(inventory.ownership.check_featured)
    loop = asyncio.get_running_loop()
    inventory.tasks = [loop.create_task(sweeper.run()), loop.create_task(notifier.run())]
    try:
        yield
    finally:
        # Stopped as well as cancelled: a cancellation that lands while a Redis command
        # is sent can be lost (see livecast.aio).
        sweeper.stop()
        notifier.stop()
        await cancel_and_wait(*inventory.tasks)
        with contextlib.suppress(Exception):
            await notifier.flush()
        await reservations.batcher.aclose()
