"""Which streams may sell a product: its owner's, and those the owner allowed.

A product's owner is a seller (see :mod:`livecast.inventory.catalog`). A stream has a
:class:`Right` on a product when:

* the product has no owner (stored before products had owners, or made by an admin for
  nobody): every stream has both rights, as before;
* the stream's seller owns it: both rights;
* the owner (or an admin) granted it: to a seller (``seller:<sub>``, every stream of
  that seller) or to one stream (``stream:<id>``), the right to sell and, if the grant
  says ``deals``, to run flash deals too.

``Right.SELL`` lets a stream feature the product, pin it and sell it at the regular price;
``Right.DEALS`` also lets it start flash deals on it.

Keys, beside the SKU's others under its hash tag (``grant.lua`` checks the owner and
writes a grant in one step)::

    <prefix>{sku:S}:grants     hash: grantee -> "<deals 0|1> <granted at, ms> <granted by>"

Taking a right away (revoking a grant, or an admin giving the product to another seller)
acts at once on the streams showing the product: those that may no longer run deals on
it see their running deals on it end (reason ``consent_revoked``; unsold units go back to
the stock), those that may no longer sell it lose its pin. A pin or deal started while a
grant is being revoked is checked again once it is in place, so either the revocation
sees it or it sees the revocation.
"""

from __future__ import annotations

import logging
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import msgspec
import redis.asyncio as aioredis

from livecast.error_codes import ErrorCode
from livecast.errors import NotFound, Unprocessable
from livecast.ids import STREAM_ID_PATTERN, SUBJECT_PATTERN, is_sku
from livecast.inventory._private import text
from livecast.inventory.catalog import Catalog, Product
from livecast.inventory.deals import Deals
from livecast.inventory.errors import raise_for_status
from livecast.inventory.pins import Pins
from livecast.inventory.reserve import Reservations
from livecast.redisdb import load_lua
from livecast.streams.registry import IsoTime, Stream, StreamRegistry, iso_time

__all__ = ["GRANTEE_PATTERN", "MAX_GRANTS", "Grant", "GrantFields", "Ownership", "Right"]

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent

GRANTEE_PATTERN = f"^(seller:{SUBJECT_PATTERN.strip('^$')}|stream:{STREAM_ID_PATTERN.strip('^$')})$"
# Grants one product may carry: far past any real resale network, and a bound on the
# work a revocation or a listing does.
MAX_GRANTS = 1000
# The reason a deal ends with when its stream lost the right to run it.
REVOKED = "consent_revoked"
_GRANTEE = re.compile(GRANTEE_PATTERN)


class Right(StrEnum):
    SELL = "sell"
    DEALS = "deals"


_BOTH = frozenset({Right.SELL, Right.DEALS})
_SELL_ONLY = frozenset({Right.SELL})
_NONE: frozenset[Right] = frozenset()


class GrantFields(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of ``PUT /api/products/{sku}/grants/{grantee}``."""

    deals: Annotated[bool, msgspec.Meta(description="also allow flash deals on the product")] = (
        False
    )


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    grantee: Annotated[str, msgspec.Meta(description="seller:<subject> or stream:<stream id>")]
    seller: str | None
    stream_id: str | None
    deals: Annotated[bool, msgspec.Meta(description="flash deals allowed too")]
    granted_by: str
    granted_at: IsoTime | None


def _decode_grant(sku: str, grantee: str, raw: Any) -> Grant:
    deals, at, by = text(raw).split(" ", 2)
    kind, _, who = grantee.partition(":")
    return Grant(
        sku=sku,
        grantee=grantee,
        seller=who if kind == "seller" else None,
        stream_id=who if kind == "stream" else None,
        deals=deals == "1",
        granted_by=by,
        granted_at=iso_time(int(at)),
    )


def _rights(owner: str | None, stream_seller: str, grants: list[Any]) -> frozenset[Right]:
    """The rights a stream of ``stream_seller`` has, given the grants that name it."""
    if owner is None or owner == stream_seller:
        return _BOTH
    found = [text(g) for g in grants if g is not None]
    if any(g.startswith("1 ") for g in found):
        return _BOTH
    return _SELL_ONLY if found else _NONE


class Ownership:
    def __init__(
        self,
        redis: aioredis.Redis,
        reservations: Reservations,
        catalog: Catalog,
        deals: Deals,
        pins: Pins,
        streams: StreamRegistry,
        *,
        max_grants: int = MAX_GRANTS,
    ) -> None:
        self._redis = redis
        self._reservations = reservations
        self._catalog = catalog
        self._deals = deals
        self._pins = pins
        self._streams = streams
        self._max_grants = max_grants
        self._grant = load_lua(redis, _HERE / "grant.lua")

    def grants_key(self, sku: str) -> str:
        return self._reservations.base(sku) + ":grants"

    # --- the owner's side: grant, revoke, list ------------------------------------------

    async def grant(
        self, sku: str, grantee: str, fields: GrantFields, *, editor: str | None, by: str
    ) -> tuple[Grant, bool]:
        """Grant ``grantee`` the right to sell ``sku`` (and run deals if ``fields.deals``)
        as ``editor`` (None: an admin); returns the grant and whether it is new.

        Narrowing a grant (``deals`` from true to false) acts at once, as a revocation
        does. 404 ``unknown_sku``, 403 ``not_product_owner``, 409 ``too_many_grants``.
        """
        await self._check_grantee(grantee)
        status, value = await self._run(sku, editor, grantee, "1" if fields.deals else "0", by)
        if status == "updated" and not fields.deals:
            await self.enforce(sku)
        return _decode_grant(sku, grantee, value), status == "created"

    async def revoke(self, sku: str, grantee: str, *, editor: str | None, by: str) -> Grant:
        """Take a grant back (404 ``unknown_grant``) and apply it to running streams."""
        _parse_grantee(grantee)
        _, value = await self._run(sku, editor, grantee, "", by)
        await self.enforce(sku)
        return _decode_grant(sku, grantee, value)

    async def _run(
        self, sku: str, editor: str | None, grantee: str, deals: str, by: str
    ) -> tuple[str, Any]:
        if not is_sku(sku):
            raise_for_status("unknown_sku", sku)
        status, value = await self._grant(
            keys=[self._reservations.base(sku)],
            args=[editor or "", grantee, deals, self._max_grants, by],
        )
        status = text(status)
        if status == "not_owner":
            raise_for_status("not_product_owner", sku)
        if status not in ("created", "updated", "revoked"):
            raise_for_status(status, sku, grantee=grantee)
        return status, value

    async def grants(self, sku: str, *, editor: str | None) -> list[Grant]:
        """The product's grants, sellers then streams, for its owner or an admin."""
        product = await self._catalog.get(sku)
        if editor is not None and product.owner != editor:
            raise_for_status("not_product_owner", sku)
        raw: dict[Any, Any] = await self._redis.hgetall(self.grants_key(sku))
        found = [_decode_grant(sku, text(k), v) for k, v in raw.items()]
        return sorted(found, key=lambda g: (g.stream_id is not None, g.grantee))

    async def _check_grantee(self, grantee: str) -> None:
        kind, who = _parse_grantee(grantee)
        if kind == "stream" and await self._streams.find(who) is None:
            raise NotFound(f"no stream {who!r}", code=ErrorCode.STREAM_NOT_FOUND)

    # --- the stream's side: what it may sell ----------------------------------------------

    async def rights(
        self, seller_id: str, stream_id: str | None, skus: list[str]
    ) -> dict[str, frozenset[Right]]:
        """The rights of a stream (of ``seller_id``; ``stream_id`` None for one not made
        yet) on each SKU in the catalog; SKUs not in the catalog are left out."""
        wanted = [s for s in dict.fromkeys(skus) if is_sku(s)]
        if not wanted:
            return {}
        fields = _grantees(seller_id, stream_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for sku in wanted:
                pipe.hmget(self._reservations.base(sku) + ":product", ["currency", "owner"])
                pipe.hmget(self.grants_key(sku), fields)
            replies = await pipe.execute()
        found: dict[str, frozenset[Right]] = {}
        for i, sku in enumerate(wanted):
            (currency, owner), grants = replies[2 * i], replies[2 * i + 1]
            if currency is not None:
                found[sku] = _rights(text(owner) if owner else None, seller_id, grants)
        return found

    async def require(self, stream: Stream, sku: str, right: Right) -> None:
        """403 (``product_not_granted``, ``deals_not_granted``) unless the stream has
        ``right`` on the SKU; 404 ``unknown_sku`` if there is no such product."""
        rights = (await self.rights(stream.seller_id, stream.id, [sku])).get(sku)
        if rights is None:
            raise_for_status("unknown_sku", sku)
        _refuse_unless(right, rights, stream.id, sku)

    async def require_sellable(self, stream: Stream, product: Product) -> None:
        """For a sale of a product already read: its owner's streams (and products with no
        owner) pass without another Redis call; others need a grant."""
        if product.owner is None or product.owner == stream.seller_id:
            return
        fields = _grantees(stream.seller_id, stream.id)
        grants = await self._redis.hmget(self.grants_key(product.sku), fields)
        rights = _rights(product.owner, stream.seller_id, grants)
        _refuse_unless(Right.SELL, rights, stream.id, product.sku)

    async def confirm(self, stream: Stream, sku: str, right: Right) -> None:
        """Called once a pin or deal is in place: if the right was taken away meanwhile,
        undo what it allowed on this stream and refuse as :meth:`require` would."""
        rights = (await self.rights(stream.seller_id, stream.id, [sku])).get(sku, _NONE)
        if right not in rights:
            await self._withdraw(stream, sku, rights)
            _refuse_unless(right, rights, stream.id, sku)

    async def check_featured(self, seller_id: str, stream_id: str | None, skus: list[str]) -> None:
        """The stream registry's featuring check: every featured SKU in the catalog must be
        sellable by the stream (SKUs not in the catalog yet may be featured)."""
        rights = await self.rights(seller_id, stream_id, skus)
        refused = [sku for sku, r in rights.items() if Right.SELL not in r]
        if refused:
            raise_for_status(
                "product_not_granted", ", ".join(refused), skus=refused, stream_id=stream_id
            )

    # --- acting on a right taken away ---------------------------------------------------

    async def enforce(self, sku: str) -> None:
        """End the deals and clear the pins of ``sku`` on every stream showing it that no
        longer has the right to."""
        members: set[Any] = await self._redis.smembers(self._deals.watchers_key(sku))
        for stream_id in sorted(text(m) for m in members):
            stream = await self._streams.find(stream_id)
            if stream is None:
                continue
            rights = (await self.rights(stream.seller_id, stream.id, [sku])).get(sku, _BOTH)
            if Right.DEALS not in rights:
                await self._withdraw(stream, sku, rights)

    async def _withdraw(self, stream: Stream, sku: str, rights: frozenset[Right]) -> None:
        try:
            for deal in await self._deals.for_stream(stream.id, active_only=True):
                if deal.sku == sku:
                    await self._deals.end(deal.id, REVOKED)
            if Right.SELL not in rights:
                pinned = await self._redis.get(self._pins.pin_key(stream.id))
                if pinned is not None and text(pinned) == sku:
                    await self._pins.clear(stream.id)
        except Exception:
            # The right is gone either way: new pins, deals and sales are refused.
            log.exception("could not withdraw %s from stream %s", sku, stream.id)


def _parse_grantee(grantee: str) -> tuple[str, str]:
    if not _GRANTEE.match(grantee):
        raise Unprocessable(
            f"grantee {grantee!r} must be seller:<subject> or stream:<stream id>",
            code=ErrorCode.INVALID_FIELD,
        )
    kind, _, who = grantee.partition(":")
    return kind, who


def _grantees(seller_id: str, stream_id: str | None) -> list[str]:
    """The grant fields that may name a stream: its own, and its seller's."""
    return [f"seller:{seller_id}", f"stream:{stream_id}" if stream_id else "stream:"]


def _refuse_unless(right: Right, rights: frozenset[Right], stream_id: str, sku: str) -> None:
    if right not in rights:
        code = "deals_not_granted" if right is Right.DEALS else "product_not_granted"
        raise_for_status(code, sku, sku=sku, stream_id=stream_id)
