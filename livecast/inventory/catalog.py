"""The catalog: products keyed by SKU, with a price, a stock and an owner.

A product's catalog fields and its stock counters share one hash (see
:mod:`livecast.inventory.reserve` for the key layout), so a catalog write and a
reservation never disagree about which product they mean. Writes go through Lua
(``product_put.lua``, ``stock.lua``): a product is written whole or not at all, and stock
never drops below what is held, sold or carved into live deals.

A product belongs to the seller who created it (``owner``, a token subject; an admin may
create it for a seller, or give it to another). Writes take the *editor*: the caller's
subject, checked against the owner inside the script, or None for an admin, who may
change any product. A product with no owner (stored before products had owners, or made
by an admin for nobody) is an admin's to change; which streams may sell what is
:mod:`livecast.inventory.ownership`'s business.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import msgspec
import redis.asyncio as aioredis

from livecast.display_text import check_line, check_multiline
from livecast.error_codes import ErrorCode
from livecast.errors import NotFound
from livecast.ids import SKU_PATTERN, SUBJECT_PATTERN, is_sku
from livecast.inventory._private import text
from livecast.inventory.errors import raise_for_status
from livecast.inventory.money import Money
from livecast.inventory.reserve import Reservations
from livecast.redisdb import KeySpace, load_lua
from livecast.streams.registry import IsoTime, iso_time

__all__ = ["Catalog", "Owner", "Product", "ProductFields", "StockChange"]

_HERE = Path(__file__).parent

Sku = Annotated[str, msgspec.Meta(pattern=SKU_PATTERN)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Description = Annotated[str, msgspec.Meta(max_length=4000)]
ImageUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/$.?#][^\s]*$", max_length=2048)]
# Whole units; 10^9 is far beyond any warehouse and exact everywhere.
Stock = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
Delta = Annotated[int, msgspec.Meta(ge=-1_000_000_000, le=1_000_000_000)]
# A seller's token subject.
Owner = Annotated[str, msgspec.Meta(pattern=SUBJECT_PATTERN)]


def _said(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class ProductFields(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of ``PUT /api/products/{sku}``. ``stock`` sets the total stock if given;
    ``owner`` (admins only) gives the product to that seller, else it keeps its owner."""

    title: Annotated[Title, _said("one line; no control or bidi-format characters")]
    price: Money
    description: Annotated[
        Description, _said("may span lines; no other control or bidi-format characters")
    ] = ""
    image_url: ImageUrl | None = None
    stock: Annotated[Stock, _said("total stock; never below held + sold + in deals")] | None = None
    owner: (
        Annotated[
            Owner,
            _said(
                "admins only: the seller (token subject) the product belongs to; a seller's "
                "products are theirs"
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        check_line("title", self.title)
        check_multiline("description", self.description)


class StockChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``{"delta": n}`` or ``{"set": n}``: exactly one."""

    delta: Delta | None = None
    set: Stock | None = None


class Product(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    title: str
    description: str
    image_url: str | None
    price: Money
    stock: Annotated[int, _said("free to buy at the regular price now")]
    held: int
    sold: int
    in_deals: int
    total_stock: int
    created_at: IsoTime | None
    updated_at: IsoTime | None
    owner: Annotated[
        str | None,
        _said(
            "the seller who owns it; null for a product nobody owns (stored before products "
            "had owners, or made by an admin for nobody): only admins change it and every "
            "stream may sell it"
        ),
    ] = None


_FIELDS = [
    "title",
    "description",
    "image_url",
    "price_minor",
    "currency",
    "available",
    "held",
    "sold",
    "deal_reserved",
    "created",
    "updated",
    "owner",
]


def _decode(sku: str, raw: list[Any]) -> Product | None:
    if raw[0] is None:
        return None
    row = [v.decode() if isinstance(v, bytes) else v for v in raw]
    available, held, sold, carved = (int(v) for v in row[5:9])
    return Product(
        sku=sku,
        title=row[0],
        description=row[1],
        image_url=row[2] or None,
        price=Money(amount_minor=int(row[3]), currency=row[4]),
        stock=available,
        held=held,
        sold=sold,
        in_deals=carved,
        total_stock=available + held + sold + carved,
        created_at=iso_time(int(row[9])),
        updated_at=iso_time(int(row[10])),
        owner=row[11] or None,
    )


class Catalog:
    def __init__(self, redis: aioredis.Redis, keys: KeySpace, reservations: Reservations) -> None:
        self._redis = redis
        self._keys = keys
        self._reservations = reservations
        self._put = load_lua(redis, _HERE / "product_put.lua")
        self._stock = load_lua(redis, _HERE / "stock.lua")

    @property
    def index_key(self) -> str:
        """Set of every SKU ever written (the sweeper's safety-net scan walks it)."""
        return self._keys.key("catalog", "skus")

    async def put(
        self, sku: str, fields: ProductFields, *, editor: str | None = None
    ) -> tuple[Product, bool, str | None]:
        """Create or replace a product as ``editor`` (None: an admin); returns it, whether
        it was created, and its owner before (None: none, or it is new).

        A seller's new product is theirs; ``fields.owner`` must then be theirs or unset.
        403 ``not_product_owner`` for a product someone else owns or nobody does.
        """
        if not is_sku(sku):
            raise_for_status("invalid_field", f"SKU {sku!r} does not match {SKU_PATTERN}")
        if editor is not None and fields.owner not in (None, editor):
            raise_for_status("not_product_owner", sku, owner=fields.owner)
        owner = editor if editor is not None else fields.owner
        # Indexed first: an index entry without a product is harmless, the reverse is not.
        await self._redis.sadd(self.index_key, sku)
        status, committed, owner_before = await self._put(
            keys=[self._reservations.base(sku)],
            args=[
                fields.title,
                fields.description,
                fields.image_url or "",
                fields.price.amount_minor,
                fields.price.currency,
                "" if fields.stock is None else fields.stock,
                editor or "",
                owner or "",
            ],
        )
        if status == b"not_owner":
            raise_for_status("not_product_owner", sku)
        if status == b"below_committed":
            raise_for_status("below_committed", sku, committed=int(committed))
        self._reservations.dirty_skus.setdefault(sku, 0)
        return await self.get(sku), status == b"created", text(owner_before) or None

    async def get(self, sku: str) -> Product:
        product = await self.find(sku)
        if product is None:
            raise NotFound(f"no product with SKU {sku!r}", code=ErrorCode.UNKNOWN_SKU)
        return product

    async def find(self, sku: str) -> Product | None:
        if not is_sku(sku):
            return None
        raw = await self._redis.hmget(self._reservations.base(sku) + ":product", _FIELDS)
        return _decode(sku, raw)

    async def find_many(self, skus: list[str]) -> dict[str, Product]:
        wanted = [s for s in dict.fromkeys(skus) if is_sku(s)]
        if not wanted:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for sku in wanted:
                pipe.hmget(self._reservations.base(sku) + ":product", _FIELDS)
            rows = await pipe.execute()
        found = {sku: _decode(sku, row) for sku, row in zip(wanted, rows, strict=True)}
        return {sku: p for sku, p in found.items() if p is not None}

    async def change_stock(
        self, sku: str, change: StockChange, *, editor: str | None = None
    ) -> Product:
        """Change the stock as ``editor`` (None: an admin); 403 ``not_product_owner``
        unless the editor owns the product."""
        if (change.delta is None) == (change.set is None):
            raise_for_status("invalid_field", 'send exactly one of "delta" or "set"')
        if not is_sku(sku):
            raise NotFound(f"no product with SKU {sku!r}", code=ErrorCode.UNKNOWN_SKU)
        mode, n = ("set", change.set) if change.set is not None else ("delta", change.delta)
        reply = await self._stock(keys=[self._reservations.base(sku)], args=[mode, n, editor or ""])
        status = reply[0].decode()
        if status == "not_owner":
            raise_for_status("not_product_owner", sku)
        if status != "ok":
            raise_for_status(
                status, sku, held=int(reply[2]), sold=int(reply[3]), in_deals=int(reply[4])
            )
        self._reservations.dirty_skus.setdefault(sku, 0)
        return await self.get(sku)
