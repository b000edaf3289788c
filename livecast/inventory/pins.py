"""The product card a host pins to a live stream.

One pin per stream, kept in Redis (``<prefix>stream:<id>:pin`` holds the SKU) so every
node, and a viewer's hello snapshot, sees the same card. Events on the stream's channel:
:class:`PinSet` (``pin.set``) with the :class:`PinCard`, :class:`PinCleared`
(``pin.cleared``) with ``{"sku": ...}``; both carry ``media_time_ms`` and go on the
stream's timeline in the same MULTI (:mod:`livecast.timeline`).
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis

from livecast.events import Event, EventPublisher
from livecast.inventory._private import text
from livecast.inventory.catalog import Catalog
from livecast.inventory.deals import Deal, Deals
from livecast.inventory.money import Money
from livecast.redisdb import KeySpace
from livecast.timeline import MediaTimeMs, Moment, MomentKind, ShownPrice, Timeline

__all__ = ["PinCard", "PinCleared", "PinClearedData", "PinSet", "Pins"]


class PinCard(msgspec.Struct, frozen=True, kw_only=True):
    """What viewers see: the product, its regular price and what is left of it, and the
    stream's running deal on it if there is one."""

    sku: str
    title: str
    price: Money
    image_url: str | None
    stock_left: int
    sold_out: bool
    deal: Deal | None = None


class PinSet(Event, tag="pin.set", frozen=True, kw_only=True):
    """The host pinned a product card (replacing any other)."""

    data: PinCard
    media_time_ms: MediaTimeMs = None


class PinClearedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sku: str


class PinCleared(Event, tag="pin.cleared", frozen=True, kw_only=True):
    """The host cleared the pinned card (``sku``: the one that was pinned)."""

    data: PinClearedData
    media_time_ms: MediaTimeMs = None


class Pins:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        catalog: Catalog,
        deals: Deals,
        events: EventPublisher,
        timeline: Timeline,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._catalog = catalog
        self._deals = deals
        self._events = events
        self._timeline = timeline

    def pin_key(self, stream_id: str) -> str:
        return self._keys.key("stream", stream_id, "pin")

    async def pin(self, stream_id: str, sku: str) -> PinCard:
        """Pin ``sku`` (404 ``unknown_sku``) to the stream, replacing any pin; announce it."""
        await self._catalog.get(sku)
        previous: Any = await self._redis.set(self.pin_key(stream_id), sku, get=True)
        await self._redis.sadd(self._deals.watchers_key(sku), stream_id)
        if previous is not None and text(previous) != sku:
            await self._deals.unwatch_if_idle(text(previous), stream_id)
        card = await self.current_pin(stream_id)
        assert card is not None
        media = await self._timeline.media_now(stream_id)
        shown = card.deal.price if card.deal is not None else card.price
        moment = Moment(
            kind=MomentKind.PIN_SET,
            media_time_ms=media,
            sku=card.sku,
            deal_id=card.deal.id if card.deal is not None else None,
            title=card.title,
            price=ShownPrice(amount_minor=shown.amount_minor, currency=shown.currency),
            left=card.stock_left,
            sold_out=card.sold_out,
        )
        await self._events.set_state(
            "pin",
            card,
            PinSet(stream=stream_id, data=card, media_time_ms=media),
            also=self._timeline.appending(stream_id, moment),
        )
        return card

    async def clear(self, stream_id: str) -> str | None:
        """Clear the pin; returns the SKU that was pinned (None: nothing was)."""
        previous = await self._redis.getdel(self.pin_key(stream_id))
        if previous is None:
            return None
        sku = text(previous)
        await self._deals.unwatch_if_idle(sku, stream_id)
        media = await self._timeline.media_now(stream_id)
        cleared = PinCleared(stream=stream_id, data=PinClearedData(sku=sku), media_time_ms=media)
        moment = Moment(kind=MomentKind.PIN_CLEARED, media_time_ms=media, sku=sku)
        await self._events.clear_state(
            "pin", cleared, also=self._timeline.appending(stream_id, moment)
        )
        return sku

    async def current_pin(self, stream_id: str) -> PinCard | None:
        """The stream's pinned card with current stock, or None. For hello snapshots."""
        raw = await self._redis.get(self.pin_key(stream_id))
        if raw is None:
            return None
        product = await self._catalog.find(text(raw))
        if product is None:
            return None
        deal = next(
            (
                d
                for d in await self._deals.for_stream(stream_id, active_only=True)
                if d.sku == product.sku
            ),
            None,
        )
        return PinCard(
            sku=product.sku,
            title=product.title,
            price=product.price,
            image_url=product.image_url,
            stock_left=product.stock,
            sold_out=product.stock == 0,
            deal=deal,
        )
