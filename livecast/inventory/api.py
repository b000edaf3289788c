"""REST routes for the catalog, selling rights, flash deals and pins.

Catalog writes are for a product's owner (a seller) and admins, and so are its grants;
deals and pins for whoever may manage the stream (its seller, a host or seller granted
it, an admin), on products the stream may sell (:mod:`livecast.inventory.ownership`).
Reads are public.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from livecast.appkeys import SETTINGS, STREAMS
from livecast.auth import Identity, Role
from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest, Conflict, Unprocessable, UnsupportedMediaType
from livecast.http import identity, json_response, read_body, read_json
from livecast.ids import is_sku
from livecast.inventory.catalog import ProductFields, Sku, StockChange
from livecast.inventory.catalog_import import import_rows, parse_csv, parse_json_lines
from livecast.inventory.money import Money
from livecast.inventory.ownership import GrantFields, Right
from livecast.inventory.service import INVENTORY
from livecast.streams.registry import Stream

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
async def get_product(request: web.Request) -> web.Response:
    return json_response(await request.app[INVENTORY].catalog.get(_sku(request)))


@routes.get("/api/products")
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
        {
            "products": [found[s] for s in wanted if s in found],
            "missing": [s for s in wanted if s not in found],
        }
    )


@routes.post("/api/products/{sku}/stock")
async def change_stock(request: web.Request) -> web.Response:
    _, editor = _catalog_editor(request)
    sku = _sku(request)
    body = await read_json(request, StockChange)
    catalog = request.app[INVENTORY].catalog
    return json_response(await catalog.change_stock(sku, body, editor=editor))


@routes.get("/api/products/{sku}/grants")
async def list_grants(request: web.Request) -> web.Response:
    _, editor = _catalog_editor(request)
    grants = await request.app[INVENTORY].ownership.grants(_sku(request), editor=editor)
    return json_response({"grants": grants})


@routes.put("/api/products/{sku}/grants/{grantee}")
async def put_grant(request: web.Request) -> web.Response:
    caller, editor = _catalog_editor(request)
    sku = _sku(request)
    body = await read_json(request, GrantFields)
    grant, created = await request.app[INVENTORY].ownership.grant(
        sku, request.match_info["grantee"], body, editor=editor, by=caller.sub
    )
    return json_response(grant, status=201 if created else 200)


@routes.delete("/api/products/{sku}/grants/{grantee}")
async def revoke_grant(request: web.Request) -> web.Response:
    caller, editor = _catalog_editor(request)
    grant = await request.app[INVENTORY].ownership.revoke(
        _sku(request), request.match_info["grantee"], editor=editor, by=caller.sub
    )
    return json_response({"revoked": grant})


@routes.post("/api/products/import")
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


async def _managed_stream(request: web.Request, stream_id: str) -> Stream:
    caller = identity(request)
    caller.require_identity()
    stream = await request.app[STREAMS].get(stream_id)
    caller.require_manage(stream.id, stream.seller_id)
    return stream


def _require_live(stream: Stream, action: str) -> None:
    if not stream.is_live:
        raise Conflict(
            f"stream {stream.id!r} is {stream.state.value}; {action} needs a live stream",
            code=ErrorCode.STREAM_NOT_LIVE,
        )


@routes.post("/api/streams/{stream_id}/deals")
async def start_deal(request: web.Request) -> web.Response:
    stream = await _managed_stream(request, request.match_info["stream_id"])
    body = await read_json(request, StartDeal)
    _require_live(stream, "a deal")
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
async def list_deals(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    active = request.query.get("active", "0")
    if active not in {"0", "1", "true", "false"}:
        raise BadRequest("active must be 0/1 or true/false", code=ErrorCode.INVALID_QUERY)
    deals = await request.app[INVENTORY].deals.for_stream(
        stream.id, active_only=active in {"1", "true"}
    )
    return json_response({"deals": deals})


@routes.get("/api/deals/{deal_id}")
async def get_deal(request: web.Request) -> web.Response:
    return json_response(await request.app[INVENTORY].deals.get(request.match_info["deal_id"]))


@routes.post("/api/deals/{deal_id}/end")
async def end_deal(request: web.Request) -> web.Response:
    deals = request.app[INVENTORY].deals
    deal = await deals.get(request.match_info["deal_id"])
    await _managed_stream(request, deal.stream_id)
    return json_response(await deals.end(deal.id, "host"))


@routes.post("/api/streams/{stream_id}/pin")
async def pin_product(request: web.Request) -> web.Response:
    stream = await _managed_stream(request, request.match_info["stream_id"])
    body = await read_json(request, PinBody)
    _require_live(stream, "pinning")
    inventory = request.app[INVENTORY]
    await inventory.ownership.require(stream, body.sku, Right.SELL)
    card = await inventory.pins.pin(stream.id, body.sku)
    await inventory.ownership.confirm(stream, body.sku, Right.SELL)
    return json_response(card)


@routes.delete("/api/streams/{stream_id}/pin")
async def clear_pin(request: web.Request) -> web.Response:
    stream = await _managed_stream(request, request.match_info["stream_id"])
    cleared = await request.app[INVENTORY].pins.clear(stream.id)
    return json_response({"cleared": cleared})


@routes.get("/api/streams/{stream_id}/pin")
async def get_pin(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    return json_response({"pin": await request.app[INVENTORY].pins.current_pin(stream.id)})
