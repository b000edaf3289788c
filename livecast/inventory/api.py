"""REST routes for the catalog, selling rights, flash deals and pins.

Catalog writes are for a product's owner (a seller) and admins, and so are its grants;
deals and pins for whoever may manage the stream (its seller, a host or seller granted
it, an admin), on products the stream may sell (:mod:`livecast.inventory.ownership`).
Reads are public.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from livecast.appkeys import SETTINGS, STREAMS
from livecast.auth import Identity, Role
from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest, Unprocessable, UnsupportedMediaType
from livecast.http import identity, json_response, read_body, read_json
from livecast.ids import is_sku
from livecast.inventory.catalog import Product, ProductFields, Sku, StockChange
from livecast.inventory.catalog_import import (
    ImportReport,
    import_rows,
    parse_csv,
    parse_json_lines,
)
from livecast.inventory.deals import Deal
from livecast.inventory.money import Money
from livecast.inventory.ownership import GRANTEE_PATTERN, Grant, GrantFields, Right
from livecast.inventory.pins import PinCard
from livecast.inventory.service import INVENTORY
from livecast.openapi import Auth, Body, Param, Reply, contract
from livecast.streams.access import managed_stream, require_live

__all__ = ["routes"]

routes = web.RouteTableDef()

_MAX_LOOKUP = 100
_JSON_LINES = {"application/x-ndjson", "application/jsonl", "application/x-jsonlines"}
_CSV = {"text/csv"}


class StartDeal(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku
    price: Money
    quantity: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    duration_s: Annotated[int, msgspec.Meta(ge=5)]
    per_buyer_limit: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 1
    start_in_s: Annotated[int, msgspec.Meta(ge=0, le=86_400)] = 0


class PinBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku


class ProductLookup(msgspec.Struct, frozen=True):
    products: list[Product]
    missing: Annotated[
        list[str], msgspec.Meta(description="the SKUs asked for that no product has")
    ]


class GrantList(msgspec.Struct, frozen=True):
    grants: Annotated[list[Grant], msgspec.Meta(description="sellers first")]


class Revoked(msgspec.Struct, frozen=True):
    revoked: Grant


class DealList(msgspec.Struct, frozen=True):
    deals: list[Deal]


class Unpinned(msgspec.Struct, frozen=True):
    cleared: Annotated[str | None, msgspec.Meta(description="the SKU that was pinned, or null")]


class CurrentPin(msgspec.Struct, frozen=True):
    pin: PinCard | None


_SKU = Param("sku", "path", Sku)
_GRANTEE = Param(
    "grantee",
    "path",
    Annotated[str, msgspec.Meta(pattern=GRANTEE_PATTERN)],
    "seller:<subject> (every stream of that seller) or stream:<stream id> (that stream)",
)
_SKU_LIST = Annotated[list[Sku], msgspec.Meta(min_length=1, max_length=_MAX_LOOKUP)]
_OWNER_ONLY = {
    ErrorCode.FORBIDDEN: "not a seller or admin",
    ErrorCode.NOT_PRODUCT_OWNER: "the product is another seller's or nobody's",
}
_MANAGER = {ErrorCode.FORBIDDEN: "may not manage the stream", ErrorCode.STREAM_NOT_FOUND: ""}


def _sku(request: web.Request) -> str:
    sku = request.match_info["sku"]
    if not is_sku(sku):
        raise Unprocessable(f"{sku!r} is not a SKU", code=ErrorCode.INVALID_FIELD)
    return sku


def _catalog_editor(request: web.Request) -> tuple[Identity, str | None]:
    """The caller, a seller or an admin, and the editor the catalog checks: the seller's
    subject, or None for an admin (who may change any product)."""
    caller = identity(request)
    caller.require_role(Role.SELLER, Role.ADMIN)
    return caller, None if caller.role is Role.ADMIN else caller.sub


@routes.put("/api/products/{sku}")
@contract(
    summary="Create or replace a product (its owner, a seller creating it, or an admin)",
    params=[_SKU],
    body=ProductFields,
    responses={200: Reply(Product, "replaced"), 201: Reply(Product, "created")},
    errors={
        ErrorCode.FORBIDDEN: "not a seller or admin",
        ErrorCode.NOT_PRODUCT_OWNER: "the product is another seller's or nobody's, or a "
        "seller named another owner",
        ErrorCode.CURRENCY_MISMATCH: "",
        ErrorCode.BELOW_COMMITTED: "",
    },
    auth=Auth.REQUIRED,
)
async def put_product(request: web.Request) -> web.Response:
    _, editor = _catalog_editor(request)
    sku = _sku(request)
    body = await read_json(request, ProductFields)
    if not body.title.strip():
        raise Unprocessable("title must not be blank", code=ErrorCode.INVALID_FIELD)
    inventory = request.app[INVENTORY]
    product, created, owner_before = await inventory.catalog.put(sku, body, editor=editor)
    if not created and product.owner != owner_before:
        await inventory.ownership.enforce(sku)
    return json_response(product, status=201 if created else 200)


@routes.get("/api/products/{sku}")
@contract(
    summary="A product with its stock",
    params=[_SKU],
    responses={200: Reply(Product, "the product")},
    errors=[ErrorCode.UNKNOWN_SKU, ErrorCode.INVALID_FIELD],
)
async def get_product(request: web.Request) -> web.Response:
    return json_response(await request.app[INVENTORY].catalog.get(_sku(request)))


@routes.get("/api/products")
@contract(
    summary="Several products by SKU",
    params=[Param("sku", type=_SKU_LIST, description="repeat for each SKU", required=True)],
    responses={200: Reply(ProductLookup, "found and missing")},
    errors=[ErrorCode.INVALID_QUERY],
)
async def get_products(request: web.Request) -> web.Response:
    skus = request.query.getall("sku", [])
    if not skus or len(skus) > _MAX_LOOKUP:
        raise BadRequest(f"give 1 to {_MAX_LOOKUP} ?sku= parameters", code=ErrorCode.INVALID_QUERY)
    bad = [s for s in skus if not is_sku(s)]
    if bad:
        raise BadRequest(f"not SKUs: {', '.join(map(repr, bad))}", code=ErrorCode.INVALID_QUERY)
    found = await request.app[INVENTORY].catalog.find_many(skus)
    wanted = list(dict.fromkeys(skus))
    return json_response(
        ProductLookup(
            products=[found[s] for s in wanted if s in found],
            missing=[s for s in wanted if s not in found],
        )
    )


@routes.post("/api/products/{sku}/stock")
@contract(
    summary="Change stock by a delta or to a total (the product's owner or an admin)",
    params=[_SKU],
    body=StockChange,
    responses={200: Reply(Product, "the product")},
    errors={**_OWNER_ONLY, ErrorCode.UNKNOWN_SKU: "", ErrorCode.BELOW_COMMITTED: ""},
    auth=Auth.REQUIRED,
)
async def change_stock(request: web.Request) -> web.Response:
    _, editor = _catalog_editor(request)
    sku = _sku(request)
    body = await read_json(request, StockChange)
    catalog = request.app[INVENTORY].catalog
    return json_response(await catalog.change_stock(sku, body, editor=editor))


@routes.get("/api/products/{sku}/grants")
@contract(
    summary="Who may sell this product besides its owner's streams (the owner or an admin)",
    params=[_SKU],
    responses={200: Reply(GrantList, "the grants, sellers first")},
    errors={**_OWNER_ONLY, ErrorCode.UNKNOWN_SKU: "", ErrorCode.INVALID_FIELD: ""},
    auth=Auth.REQUIRED,
)
async def list_grants(request: web.Request) -> web.Response:
    _, editor = _catalog_editor(request)
    grants = await request.app[INVENTORY].ownership.grants(_sku(request), editor=editor)
    return json_response(GrantList(grants))


@routes.put("/api/products/{sku}/grants/{grantee}")
@contract(
    summary="Allow a seller's streams, or one stream, to feature, pin and sell this product, "
    "and with deals: true to run flash deals on it (the owner or an admin). Narrowing a "
    "grant ends the grantee's running deals on it.",
    params=[_SKU, _GRANTEE],
    body=GrantFields,
    responses={200: Reply(Grant, "replaced"), 201: Reply(Grant, "granted")},
    errors={
        **_OWNER_ONLY,
        ErrorCode.UNKNOWN_SKU: "",
        ErrorCode.STREAM_NOT_FOUND: "a stream grantee that does not exist",
        ErrorCode.TOO_MANY_GRANTS: "",
        ErrorCode.INVALID_FIELD: "a bad grantee or body",
    },
    auth=Auth.REQUIRED,
)
async def put_grant(request: web.Request) -> web.Response:
    caller, editor = _catalog_editor(request)
    sku = _sku(request)
    body = await read_json(request, GrantFields)
    grant, created = await request.app[INVENTORY].ownership.grant(
        sku, request.match_info["grantee"], body, editor=editor, by=caller.sub
    )
    return json_response(grant, status=201 if created else 200)


@routes.delete("/api/products/{sku}/grants/{grantee}")
@contract(
    summary="Take a grant back (the owner or an admin): the grantee's running deals on the "
    "product end (reason consent_revoked) and, unless it may still sell it, its pin of it "
    "is cleared",
    params=[_SKU, _GRANTEE],
    responses={200: Reply(Revoked, "the grant taken back")},
    errors={
        **_OWNER_ONLY,
        ErrorCode.UNKNOWN_SKU: "",
        ErrorCode.UNKNOWN_GRANT: "",
        ErrorCode.INVALID_FIELD: "",
    },
    auth=Auth.REQUIRED,
)
async def revoke_grant(request: web.Request) -> web.Response:
    caller, editor = _catalog_editor(request)
    grant = await request.app[INVENTORY].ownership.revoke(
        _sku(request), request.match_info["grantee"], editor=editor, by=caller.sub
    )
    return json_response(Revoked(grant))


@routes.post("/api/products/import")
@contract(
    summary="Bulk import, JSON lines or CSV (seller or admin)",
    description="Row errors are reported, and no half row is imported; a seller's rows "
    "write only their own products (others are reported per row as not_product_owner). "
    "JSON lines are ImportRow objects; CSV has the columns sku, title, price_minor, "
    "currency and optionally description, image_url, stock, owner.",
    body=Body(None, media_type=("application/x-ndjson", "text/csv")),
    responses={200: Reply(ImportReport, "what was imported and which rows failed")},
    errors={
        ErrorCode.FORBIDDEN: "not a seller or admin",
        ErrorCode.MALFORMED_JSON: "the body is not UTF-8",
        ErrorCode.MALFORMED_CSV: "",
        ErrorCode.EMPTY_IMPORT: "",
    },
    auth=Auth.REQUIRED,
)
async def import_catalog(request: web.Request) -> web.Response:
    _, editor = _catalog_editor(request)
    kind = request.content_type
    if kind not in _JSON_LINES | _CSV:
        raise UnsupportedMediaType(
            "send application/x-ndjson (JSON lines) or text/csv",
            code=ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        )
    try:
        text = (await read_body(request)).decode("utf-8-sig")
    except UnicodeDecodeError:
        malformed = ErrorCode.MALFORMED_CSV if kind in _CSV else ErrorCode.MALFORMED_JSON
        raise BadRequest("body is not UTF-8", code=malformed) from None
    max_rows = request.app[SETTINGS].inventory.import_max_rows
    parse = parse_csv if kind in _CSV else parse_json_lines
    parsed = parse(text, max_rows=max_rows)
    if not parsed:
        raise Unprocessable("no rows to import", code=ErrorCode.EMPTY_IMPORT)
    inventory = request.app[INVENTORY]
    report = await import_rows(
        inventory.catalog, parsed, editor=editor, owner_changed=inventory.ownership.enforce
    )
    return json_response(report)


@routes.post("/api/streams/{stream_id}/deals")
@contract(
    summary="Start a flash deal on a live stream (who may manage the stream)",
    body=StartDeal,
    responses={201: Reply(Deal, "started", headers={"Location": "the deal's URL"})},
    errors={
        **_MANAGER,
        ErrorCode.DEALS_NOT_GRANTED: "the product's owner has not allowed this stream flash "
        "deals on it",
        ErrorCode.UNKNOWN_SKU: "",
        ErrorCode.STREAM_NOT_LIVE: "",
        ErrorCode.INSUFFICIENT_STOCK: "",
        ErrorCode.DEAL_EXISTS: "",
        ErrorCode.CURRENCY_MISMATCH: "",
    },
    auth=Auth.REQUIRED,
)
async def start_deal(request: web.Request) -> web.Response:
    stream = await managed_stream(request, request.match_info["stream_id"])
    body = await read_json(request, StartDeal)
    require_live(stream, "a deal")
    max_duration = request.app[SETTINGS].inventory.max_deal_duration_s
    if body.duration_s > max_duration:
        raise Unprocessable(
            f"duration_s must be at most {max_duration} seconds", code=ErrorCode.INVALID_FIELD
        )
    ownership = request.app[INVENTORY].ownership
    await ownership.require(stream, body.sku, Right.DEALS)
    deal = await request.app[INVENTORY].deals.start(
        stream_id=stream.id,
        sku=body.sku,
        price=body.price,
        quantity=body.quantity,
        duration_s=body.duration_s,
        per_buyer_limit=body.per_buyer_limit,
        start_in_s=body.start_in_s,
    )
    await ownership.confirm(stream, body.sku, Right.DEALS)
    return json_response(deal, status=201, headers={"Location": f"/api/deals/{deal.id}"})


@routes.get("/api/streams/{stream_id}/deals")
@contract(
    summary="The stream's deals",
    params=[Param("active", type=Literal["0", "1", "true", "false"], default="0")],
    responses={200: Reply(DealList, "deals")},
    errors=[ErrorCode.INVALID_QUERY, ErrorCode.STREAM_NOT_FOUND],
)
async def list_deals(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    active = request.query.get("active", "0")
    if active not in {"0", "1", "true", "false"}:
        raise BadRequest("active must be 0/1 or true/false", code=ErrorCode.INVALID_QUERY)
    deals = await request.app[INVENTORY].deals.for_stream(
        stream.id, active_only=active in {"1", "true"}
    )
    return json_response(DealList(deals))


@routes.get("/api/deals/{deal_id}")
@contract(
    summary="One deal", responses={200: Reply(Deal, "the deal")}, errors=[ErrorCode.UNKNOWN_DEAL]
)
async def get_deal(request: web.Request) -> web.Response:
    return json_response(await request.app[INVENTORY].deals.get(request.match_info["deal_id"]))


@routes.post("/api/deals/{deal_id}/end")
@contract(
    summary="End a deal now; unsold units return to the SKU",
    responses={200: Reply(Deal, "the ended deal")},
    errors={**_MANAGER, ErrorCode.UNKNOWN_DEAL: ""},
    auth=Auth.REQUIRED,
)
async def end_deal(request: web.Request) -> web.Response:
    deals = request.app[INVENTORY].deals
    deal = await deals.get(request.match_info["deal_id"])
    await managed_stream(request, deal.stream_id)
    return json_response(await deals.end(deal.id, "host"))


@routes.post("/api/streams/{stream_id}/pin")
@contract(
    summary="Pin a product card to a live stream",
    body=PinBody,
    responses={200: Reply(PinCard, "the card viewers see")},
    errors={
        **_MANAGER,
        ErrorCode.PRODUCT_NOT_GRANTED: "the product's owner has not allowed this stream to sell it",
        ErrorCode.UNKNOWN_SKU: "",
        ErrorCode.STREAM_NOT_LIVE: "",
    },
    auth=Auth.REQUIRED,
)
async def pin_product(request: web.Request) -> web.Response:
    stream = await managed_stream(request, request.match_info["stream_id"])
    body = await read_json(request, PinBody)
    require_live(stream, "pinning")
    inventory = request.app[INVENTORY]
    await inventory.ownership.require(stream, body.sku, Right.SELL)
    card = await inventory.pins.pin(stream.id, body.sku)
    await inventory.ownership.confirm(stream, body.sku, Right.SELL)
    return json_response(card)


@routes.delete("/api/streams/{stream_id}/pin")
@contract(
    summary="Clear the pin",
    responses={200: Reply(Unpinned, "the SKU that was pinned, or null")},
    errors=_MANAGER,
    auth=Auth.REQUIRED,
)
async def clear_pin(request: web.Request) -> web.Response:
    stream = await managed_stream(request, request.match_info["stream_id"])
    cleared = await request.app[INVENTORY].pins.clear(stream.id)
    return json_response(Unpinned(cleared))


@routes.get("/api/streams/{stream_id}/pin")
@contract(
    summary="The current pin",
    responses={200: Reply(CurrentPin, "the card or null")},
    errors=[ErrorCode.STREAM_NOT_FOUND],
)
async def get_pin(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    return json_response(CurrentPin(await request.app[INVENTORY].pins.current_pin(stream.id)))
