"""REST routes: cart, checkout, orders and per-stream stats."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

import msgspec
from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.auth import Identity, Role
from livecast.cart.cart import CartEntry
from livecast.cart.checkout import CheckoutRequest
from livecast.cart.orders import Order
from livecast.cart.service import CART
from livecast.error_codes import ErrorCode
from livecast.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound
from livecast.http import identity, json_response, read_body, read_json
from livecast.ids import SKU_PATTERN, STREAM_ID_PATTERN, new_id
from livecast.inventory.reserve import Hold, HoldState
from livecast.inventory.service import INVENTORY
from livecast.metrics import METRICS
from livecast.streams.registry import StreamState, iso_time

__all__ = ["routes"]

routes = web.RouteTableDef()

_ID = r"^[A-Za-z0-9_-]{1,64}$"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_LIVE = StreamState.LIVE.value.encode()


class AddItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    stream_id: Annotated[str, msgspec.Meta(pattern=STREAM_ID_PATTERN)]
    sku: Annotated[str, msgspec.Meta(pattern=SKU_PATTERN)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    deal_id: Annotated[str, msgspec.Meta(pattern=_ID)] | None = None
    # Lets a client retry an add-to-cart without holding twice.
    hold_id: Annotated[str, msgspec.Meta(pattern=_ID)] | None = None


def _buyer(request: web.Request) -> Identity:
    caller = identity(request)
    caller.require_identity()
    return caller


def _line(entry: CartEntry, hold: Hold, now_ms: int) -> dict[str, Any]:
    return {
        "hold_id": entry.hold_id,
        "sku": entry.sku,
        "title": hold.title or entry.title,
        "stream_id": entry.stream_id,
        "deal_id": hold.deal_id,
        "quantity": hold.qty,
        "unit_price": hold.price,
        "line_total": {
            "amount_minor": hold.price.amount_minor * hold.qty,
            "currency": hold.price.currency,
        },
        "state": hold.state.value,
        "expires_at": iso_time(hold.expires_at_ms),
        "seconds_left": max(0, (hold.expires_at_ms - now_ms) // 1000),
    }


@routes.post("/api/cart/items")
async def add_item(request: web.Request) -> web.Response:
    """Two round trips to Redis: the stream's state and seller read and the cart line
    staged, in one pipeline; then the reservation (with every other reservation of the SKU
    made in the same loop tick), which also checks the stream may sell the product. A
    refusal drops the staged line again; a reservation whose answer was lost keeps it, so
    its hold is never in nobody's cart."""
    buyer = _buyer(request)
    body = await read_json(request, AddItem)
    service = request.app[CART]
    reservations = request.app[INVENTORY].reservations
    hold_id = body.hold_id or new_id()
    entry = CartEntry(hold_id=hold_id, sku=body.sku, stream_id=body.stream_id, deal_id=body.deal_id)
    stream_key = request.app[STREAMS].hash_key(body.stream_id)
    # Both queued now, so both go out in the same pipeline.
    stream_read = reservations.batcher.command("HMGET", stream_key, "state", "seller_id")
    staging = service.carts.stage(buyer.sub, entry)
    try:
        state, seller = await stream_read
    finally:
        staged = await staging
    try:
        if state is None:
            raise NotFound(f"no stream {body.stream_id!r}", code=ErrorCode.STREAM_NOT_FOUND)
        if state != _LIVE:
            raise Conflict(
                f"stream {body.stream_id!r} is {state.decode()}", code=ErrorCode.STREAM_NOT_LIVE
            )
        if staged == b"cart_full":
            raise Conflict(
                f"the cart holds at most {service.carts.max_lines} lines", code=ErrorCode.CART_FULL
            )
        if isinstance(staged, list):
            # Hold ids are unique per SKU only; in a cart they name one line.
            raise Conflict(
                f"hold id {hold_id!r} is already a line for {staged[1].decode()} in your cart",
                code=ErrorCode.HOLD_CONFLICT,
            )
        hold = await reservations.reserve(
            body.sku,
            body.quantity,
            buyer.sub,
            hold_id,
            deal_id=body.deal_id,
            stream_id=body.stream_id,
            seller_id=seller.decode(),
        )
    except ApiError:
        if staged == b"added":
            await service.carts.drop(buyer.sub, hold_id)
        raise
    if not hold.replayed:
        service.tally.count(body.stream_id)
        request.app[METRICS].add_to_carts.inc()
    return json_response(_line(entry, hold, hold.answered_at_ms), status=201)


@routes.get("/api/cart")
async def get_cart(request: web.Request) -> web.Response:
    buyer = _buyer(request)
    carts = request.app[CART].carts
    reservations = request.app[INVENTORY].reservations
    clock = reservations.batcher.command("TIME")
    entries = await carts.entries(buyer.sub)
    seconds, micros = await clock
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    holds = await asyncio.gather(*(reservations.get_hold(e.sku, e.hold_id) for e in entries))
    lines: list[dict[str, Any]] = []
    expired: list[dict[str, str]] = []
    totals: dict[str, int] = {}
    for entry, hold in zip(entries, holds, strict=True):
        if hold is None:
            # Its add-to-cart failed, or is still on its way: settle which, for good.
            hold = await reservations.hold_or_void(entry.sku, buyer.sub, entry.hold_id)
        # A hold a checkout is committing stays a line: if that checkout aborts, it is
        # held again and the buyer must still see it (and be able to remove it).
        if hold is None or (
            hold.state is not HoldState.PREPARING
            and (hold.state is not HoldState.HELD or hold.expires_at_ms <= now_ms)
        ):
            title = entry.title or (hold.title if hold is not None else "") or entry.sku
            expired.append({"hold_id": entry.hold_id, "sku": entry.sku, "title": title})
            continue
        line = _line(entry, hold, now_ms)
        lines.append(line)
        totals[hold.price.currency] = totals.get(hold.price.currency, 0) + (
            hold.price.amount_minor * hold.qty
        )
    if expired:
        await carts.remove(buyer.sub, *(e["hold_id"] for e in expired))
    return json_response(
        {
            "lines": lines,
            "totals": [{"amount_minor": v, "currency": k} for k, v in sorted(totals.items())],
            "expired": expired,
        }
    )


def _in_checkout(hold_id: str) -> Conflict:
    return Conflict(
        f"hold {hold_id!r} is being checked out; retry once that checkout has finished",
        code=ErrorCode.HOLD_IN_CHECKOUT,
        holds=[hold_id],
    )


@routes.delete("/api/cart/items/{hold_id}")
async def remove_item(request: web.Request) -> web.Response:
    """Release the line's hold and drop the line. A hold that a checkout has prepared
    (``preparing``) is that checkout's until it commits or aborts: the line stays and the
    answer is 409 ``hold_in_checkout`` (an aborted checkout leaves it held, removable)."""
    buyer = _buyer(request)
    hold_id = request.match_info["hold_id"]
    carts = request.app[CART].carts
    entry = await carts.find(buyer.sub, hold_id)
    if entry is None:
        raise NotFound(f"no hold {hold_id!r} in your cart", code=ErrorCode.NOT_IN_CART)
    reservations = request.app[INVENTORY].reservations
    hold = await reservations.get_hold(entry.sku, hold_id)
    if hold is None:
        # Its add-to-cart failed, or is still on its way: settle which, for good.
        hold = await reservations.hold_or_void(entry.sku, buyer.sub, hold_id)
    if hold is not None and hold.state is HoldState.PREPARING:
        raise _in_checkout(hold_id)
    if hold is not None and hold.state is HoldState.HELD:
        try:
            await reservations.release(entry.sku, hold_id)
        except ApiError as exc:
            # A checkout prepared it since we looked; committed or expired is final.
            if exc.code != "not_held":
                raise
            if exc.details.get("state") == HoldState.PREPARING.value:
                raise _in_checkout(hold_id) from None
    await carts.remove(buyer.sub, hold_id)
    return json_response({"released": hold_id})


@routes.post("/api/checkout")
async def checkout(request: web.Request) -> web.Response:
    buyer = _buyer(request)
    key = request.headers.get("Idempotency-Key")
    if key is None:
        raise BadRequest(
            "send an Idempotency-Key header (a fresh random string per checkout attempt)",
            code=ErrorCode.MISSING_IDEMPOTENCY_KEY,
        )
    if not _IDEMPOTENCY_KEY.match(key):
        raise BadRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters",
            code=ErrorCode.INVALID_IDEMPOTENCY_KEY,
        )
    if request.can_read_body:
        body = await read_json(request, CheckoutRequest)
    else:
        await read_body(request)
        body = CheckoutRequest()
    metrics = request.app[METRICS]
    try:
        result = await request.app[CART].checkout.checkout(buyer, key, body)
    except ApiError as exc:
        metrics.checkouts_refused.labels(exc.code).inc()
        raise
    if not result.replayed:
        metrics.orders.labels(result.order.total.currency).inc()
        metrics.order_value.labels(result.order.total.currency).inc(result.order.total.amount_minor)
    headers = {"Idempotent-Replayed": "true" if result.replayed else "false"}
    return json_response(result.order, status=201, headers=headers)


async def _can_see(request: web.Request, caller: Identity, order: Order) -> bool:
    if caller.role is Role.ADMIN or caller.sub == order.buyer_id or caller.sub in order.seller_ids:
        return True
    for stream_id in order.stream_ids:
        stream = await request.app[STREAMS].find(stream_id)
        if stream is not None and caller.can_manage(stream.id, stream.seller_id):
            return True
    return False


@routes.get("/api/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    caller = _buyer(request)
    order = await request.app[CART].orders.get(request.match_info["order_id"])
    if not await _can_see(request, caller, order):
        raise Forbidden("only the buyer, the stream's seller or hosts, and admins see an order")
    return json_response(order)


@routes.get("/api/orders")
async def list_orders(request: web.Request) -> web.Response:
    caller = _buyer(request)
    raw_limit = request.query.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 500:
        raise BadRequest("limit must be an integer from 1 to 500", code=ErrorCode.INVALID_QUERY)
    stream_id = request.query.get("stream")
    if stream_id is None:
        orders = await request.app[CART].orders.for_buyer(caller.sub, limit=int(raw_limit))
        return json_response({"orders": orders})
    stream = await request.app[STREAMS].get(stream_id)
    caller.require_manage(stream.id, stream.seller_id)
    orders = await request.app[CART].orders.for_stream(stream.id, limit=int(raw_limit))
    return json_response({"orders": orders})


@routes.get("/api/streams/{stream_id}/stats")
async def stream_stats(request: web.Request) -> web.Response:
    caller = _buyer(request)
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    caller.require_manage(stream.id, stream.seller_id)
    audience = await request.app[CART].audience.audience(stream.id)
    await request.app[CART].tally.flush()
    return json_response(await request.app[CART].sales.stream_stats(stream.id, audience))
