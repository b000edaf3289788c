"""REST routes: cart, checkout, orders and per-stream stats."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from livecast.appkeys import KEYS, STREAMS
from livecast.auth import Identity, Role
from livecast.cart.cart import CartEntry
from livecast.cart.checkout import CheckoutRequest
from livecast.cart.orders import Order, OrderEvent, line_source
from livecast.cart.service import CART
from livecast.cart.stats import StreamStats
from livecast.error_codes import ErrorCode
from livecast.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound
from livecast.http import identity, json_response, read_body, read_json
from livecast.ids import SKU_PATTERN, STREAM_ID_PATTERN
from livecast.inventory.batch import Steps
from livecast.inventory.money import Money
from livecast.inventory.reserve import Hold, HoldState
from livecast.inventory.service import INVENTORY
from livecast.metrics import METRICS
from livecast.openapi import Auth, Body, Param, Reply, Webhook, contract
from livecast.replay.receipts import record_moment
from livecast.replay.store import record_key
from livecast.streams.registry import IsoTime, StreamState, iso_time

__all__ = ["WEBHOOKS", "routes"]

routes = web.RouteTableDef()

# What livecast POSTs to the configured webhook URLs ([webhooks] in the config).
WEBHOOKS = {
    "order": Webhook(
        "An order was created or paid",
        OrderEvent,
        "Signed with the webhook secret; verify it with livecast.cart.verify_signature.",
    )
}

_ID = r"^[A-Za-z0-9_-]{1,64}$"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_LIVE = StreamState.LIVE.value.encode()
_ENDED = StreamState.ENDED.value.encode()
Source = Annotated[
    Literal["live", "replay", "clip"],
    msgspec.Meta(
        description="Where the buyer is: the live stream, or its replay once it ended, or "
        "one of its product clips (at the product's current price: no deal). Orders are "
        "attributed to it."
    ),
]


class AddCartItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    stream_id: Annotated[str, msgspec.Meta(pattern=STREAM_ID_PATTERN)]
    sku: Annotated[str, msgspec.Meta(pattern=SKU_PATTERN)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    deal_id: (
        Annotated[
            str,
            msgspec.Meta(
                pattern=_ID,
                description="Buy at the flash deal's price, within its limits. The deal must "
                "run on stream_id (else 422 deal_not_in_stream).",
            ),
        ]
        | None
    ) = None
    hold_id: (
        Annotated[
            str,
            msgspec.Meta(
                pattern=_ID,
                description="Client-chosen id: retrying an add with the same id holds once.",
            ),
        ]
        | None
    ) = None
    source: Source = "live"
    position_s: (
        Annotated[
            float,
            msgspec.Meta(
                ge=0,
                le=86_400 * 7,
                description="On a replay or clip: where the buyer was on the replay "
                "(seconds), the moment of the order's video receipt.",
            ),
        ]
        | None
    ) = None


class CartLine(msgspec.Struct, frozen=True, kw_only=True):
    hold_id: str
    sku: str
    title: str
    stream_id: str
    deal_id: str | None
    quantity: int
    unit_price: Money
    line_total: Money
    state: Annotated[
        HoldState,
        msgspec.Meta(description="held, or preparing: a checkout is committing this hold now"),
    ]
    expires_at: IsoTime
    seconds_left: Annotated[int, msgspec.Meta(ge=0)]
    source: Source = "live"


class ExpiredLine(msgspec.Struct, frozen=True, kw_only=True):
    hold_id: str
    sku: str
    title: str


class Cart(msgspec.Struct, frozen=True, kw_only=True):
    lines: list[CartLine]
    totals: Annotated[list[Money], msgspec.Meta(description="One total per currency.")]
    expired: Annotated[
        list[ExpiredLine],
        msgspec.Meta(
            description="Lines whose hold expired or was released; removed from the cart by "
            "this read."
        ),
    ]


class Released(msgspec.Struct, frozen=True):
    released: Annotated[str, msgspec.Meta(description="the hold id of the removed line")]


class OrderList(msgspec.Struct, frozen=True):
    orders: list[Order]
    next_after: Annotated[
        str | None,
        msgspec.Meta(
            description="when the page is full: pass it as ?after= for the next page "
            "(older orders); null on a page that is not full"
        ),
    ] = None


_IDEMPOTENCY_KEY_PARAM = Param(
    "Idempotency-Key",
    "header",
    Annotated[str, msgspec.Meta(pattern=_IDEMPOTENCY_KEY.pattern)],
    "A fresh random string per checkout attempt; the same one to retry it.",
    required=True,
)
_ORDER_LIMIT = Annotated[int, msgspec.Meta(ge=1, le=500)]


def _buyer(request: web.Request) -> Identity:
    caller = identity(request)
    caller.require_identity()
    return caller


def _line(entry: CartEntry, hold: Hold, now_ms: int) -> CartLine:
    return CartLine(
        hold_id=entry.hold_id,
        sku=entry.sku,
        title=hold.title or entry.title,
        stream_id=entry.stream_id,
        deal_id=hold.deal_id,
        quantity=hold.qty,
        unit_price=hold.price,
        line_total=Money(hold.price.amount_minor * hold.qty, hold.price.currency),
        state=hold.state,
        expires_at=iso_time(hold.expires_at_ms) or "",
        seconds_left=max(0, (hold.expires_at_ms - now_ms) // 1000),
        source=line_source(entry.source),
    )


@routes.post("/api/cart/items")
@contract(
    summary="Add to cart: reserve stock and hold it for the buyer",
    description="The line is written to the cart before its hold is made, so a hold is always "
    "in its buyer's cart: a refusal (4xx) holds nothing and adds no line; after a 503 the "
    "line may already hold the units (GET /api/cart shows it), and sending the same hold_id "
    "again answers with that hold and holds nothing more.",
    body=AddCartItem,
    responses={201: Reply(CartLine, "held")},
    errors={
        ErrorCode.PRODUCT_NOT_GRANTED: "the stream may not sell this product (another "
        "seller's, not granted to it); nothing is held",
        ErrorCode.STREAM_NOT_FOUND: "",
        ErrorCode.UNKNOWN_SKU: "",
        ErrorCode.UNKNOWN_DEAL: "",
        ErrorCode.STREAM_NOT_LIVE: "",
        ErrorCode.SOLD_OUT: "",
        ErrorCode.INSUFFICIENT_STOCK: "",
        ErrorCode.OVER_LIMIT: "",
        ErrorCode.DEAL_NOT_STARTED: "",
        ErrorCode.DEAL_ENDED: "",
        ErrorCode.HOLD_CONFLICT: "the hold id names another line or reservation",
        ErrorCode.CART_FULL: "",
        ErrorCode.INVALID_QUANTITY: "",
        ErrorCode.DEAL_NOT_IN_STREAM: "",
        ErrorCode.REDIS_UNAVAILABLE: "retry with the same hold_id",
        ErrorCode.REPLAY_NOT_FOUND: "source replay or clip, and the stream has not ended or "
        "has no replay",
    },
    auth=Auth.REQUIRED,
)
async def add_item(request: web.Request) -> web.Response:
    """Two round trips to Redis: the stream's state and seller and the product's free
    units read and the cart line staged, in one pipeline; then the reservation (with every
    other reservation of the SKU made in the same loop tick), which also checks the stream
    may sell the product. A refusal drops the staged line again (a third); a reservation
    whose answer was lost keeps it, so its hold is never in nobody's cart. A new line for
    a SKU the read shows sold out is refused without a reservation."""
    buyer = _buyer(request)
    body = await read_json(request, AddCartItem)
    app = request.app
    service = app[CART]
    reservations = app[INVENTORY].reservations
    hold_id = body.hold_id or reservations.new_hold_id()
    replay = body.source != "live"  # a replay or a clip of it: the stream has ended
    if replay and body.deal_id is not None:
        raise Conflict("deals are over on a replay", code=ErrorCode.DEAL_ENDED)
    entry = CartEntry(
        hold_id=hold_id,
        sku=body.sku,
        stream_id=body.stream_id,
        deal_id=body.deal_id,
        source=body.source,
    )
    stream_key = app[STREAMS].hash_key(body.stream_id)
    steps = Steps().command("HMGET", stream_key, "state", "seller_id")
    reservations.add_stock_read(steps, body.sku)
    if replay:
        steps.command("EXISTS", record_key(app[KEYS], body.stream_id))
    (state, seller), stock, *rest = await reservations.batcher.send(
        service.carts.add_stage(steps, buyer.sub, entry)
    )
    recorded = rest[0] if replay else 0
    staged = rest[-1]
    try:
        if state is None:
            raise NotFound(f"no stream {body.stream_id!r}", code=ErrorCode.STREAM_NOT_FOUND)
        if replay and (state != _ENDED or not recorded):
            raise NotFound(
                f"stream {body.stream_id!r} has no replay to buy from",
                code=ErrorCode.REPLAY_NOT_FOUND,
            )
        if not replay and state != _LIVE:
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
        if staged == b"added" and body.hold_id is None and body.deal_id is None:
            reservations.refuse_if_sold_out(body.sku, stock, body.quantity, seller.decode())
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
        record_moment(reservations.batcher, app[KEYS], hold_id, body.position_s, not replay)
        service.tally.count(body.stream_id)
        metrics = app[METRICS]
        metrics.add_to_carts.inc()
        metrics.source_add_to_carts.labels(body.source).inc()
        if replay:
            await service.sales.add_to_cart_from(body.stream_id, body.source)
    return json_response(_line(entry, hold, hold.answered_at_ms), status=201)


@routes.get("/api/cart")
@contract(
    summary="The buyer's cart, with hold timers; expired lines leave and are listed",
    responses={200: Cart},
    auth=Auth.REQUIRED,
)
async def get_cart(request: web.Request) -> web.Response:
    buyer = _buyer(request)
    carts = request.app[CART].carts
    reservations = request.app[INVENTORY].reservations
    clock = reservations.batcher.command("TIME")
    entries = await carts.entries(buyer.sub)
    seconds, micros = await clock
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    holds = await asyncio.gather(*(reservations.get_hold(e.sku, e.hold_id) for e in entries))
    lines: list[CartLine] = []
    expired: list[ExpiredLine] = []
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
            expired.append(ExpiredLine(hold_id=entry.hold_id, sku=entry.sku, title=title))
            continue
        line = _line(entry, hold, now_ms)
        lines.append(line)
        totals[hold.price.currency] = totals.get(hold.price.currency, 0) + (
            hold.price.amount_minor * hold.qty
        )
    if expired:
        await carts.remove(buyer.sub, *(e.hold_id for e in expired))
    return json_response(
        Cart(
            lines=lines,
            totals=[Money(amount, currency) for currency, amount in sorted(totals.items())],
            expired=expired,
        )
    )


def _in_checkout(hold_id: str) -> Conflict:
    return Conflict(
        f"hold {hold_id!r} is being checked out; retry once that checkout has finished",
        code=ErrorCode.HOLD_IN_CHECKOUT,
        holds=[hold_id],
    )


@routes.delete("/api/cart/items/{hold_id}")
@contract(
    summary="Remove a line and release its hold",
    responses={200: Released},
    errors={
        ErrorCode.NOT_IN_CART: "",
        ErrorCode.HOLD_IN_CHECKOUT: "a checkout is committing this hold; the line stays (it "
        "is removable again if that checkout aborts)",
    },
    auth=Auth.REQUIRED,
)
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
    return json_response(Released(hold_id))


@routes.post("/api/checkout")
@contract(
    summary="Pay for every line in the cart, all or nothing, exactly once per Idempotency-Key",
    description="Every step is journaled in Redis before the payment provider is called. "
    "After a 503 or a dropped connection, the same Idempotency-Key finishes that checkout "
    "and returns its order; if the buyer never retries, a recovery pass on some node "
    "finishes it within seconds (the order then appears in GET /api/orders) or, if no hold "
    "was committed yet, voids the payment and leaves the cart as it was.",
    params=[_IDEMPOTENCY_KEY_PARAM],
    body=Body(CheckoutRequest, required=False),
    responses={
        201: Reply(
            Order,
            "the order (the same one for a replayed key)",
            headers={"Idempotent-Replayed": "true when this key's order was made before"},
        )
    },
    errors={
        ErrorCode.MISSING_IDEMPOTENCY_KEY: "",
        ErrorCode.INVALID_IDEMPOTENCY_KEY: "",
        ErrorCode.PAYMENT_DECLINED: "",
        ErrorCode.HOLD_EXPIRED: "before any payment call: a line's hold expired or was released",
        ErrorCode.HOLD_COMMITTED: "before any payment call: a line was bought in another order",
        ErrorCode.HOLD_IN_CHECKOUT: "before any payment call: another checkout is committing "
        "a line (holds lists them)",
        ErrorCode.COMMIT_FAILED: "a hold expired during checkout; the authorization is voided",
        ErrorCode.CHECKOUT_IN_PROGRESS: "",
        ErrorCode.EMPTY_CART: "",
        ErrorCode.MIXED_CURRENCIES: "",
        ErrorCode.IDEMPOTENCY_KEY_REUSED: "",
        ErrorCode.REDIS_UNAVAILABLE: "the checkout may have stopped midway; retry with the "
        "same Idempotency-Key to get its order",
    },
    auth=Auth.REQUIRED,
)
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
        metrics.count_order_sources(result.order.lines)
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
@contract(
    summary="One order (its buyer, the stream's seller or hosts, admins)",
    responses={200: Order},
    errors=[ErrorCode.FORBIDDEN, ErrorCode.ORDER_NOT_FOUND],
    auth=Auth.REQUIRED,
)
async def get_order(request: web.Request) -> web.Response:
    caller = _buyer(request)
    order = await request.app[CART].orders.get(request.match_info["order_id"])
    if not await _can_see(request, caller, order):
        raise Forbidden("only the buyer, the stream's seller or hosts, and admins see an order")
    return json_response(order)


@routes.get("/api/orders")
@contract(
    summary="Orders of a stream (its seller, hosts, admins) or, without ?stream, the caller's own",
    description="Newest first, a page at a time: a full page has next_after, the id to "
    "pass as ?after= for the next one.",
    params=[
        Param("stream", description="a stream id: that stream's orders"),
        Param("limit", type=_ORDER_LIMIT, default=100),
        Param("after", description="the previous page's next_after: the orders after it"),
    ],
    responses={200: OrderList},
    errors=[ErrorCode.INVALID_QUERY, ErrorCode.FORBIDDEN, ErrorCode.STREAM_NOT_FOUND],
    auth=Auth.REQUIRED,
)
async def list_orders(request: web.Request) -> web.Response:
    caller = _buyer(request)
    raw_limit = request.query.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 500:
        raise BadRequest("limit must be an integer from 1 to 500", code=ErrorCode.INVALID_QUERY)
    limit = int(raw_limit)
    after = request.query.get("after")
    if after is not None and not (after.startswith("ord_") and len(after) <= 64):
        raise BadRequest(
            "after must be an order id (a page's next_after)", code=ErrorCode.INVALID_QUERY
        )
    stream_id = request.query.get("stream")
    orders = request.app[CART].orders
    if stream_id is None:
        page = await orders.for_buyer(caller.sub, limit=limit, after=after)
    else:
        stream = await request.app[STREAMS].get(stream_id)
        caller.require_manage(stream.id, stream.seller_id)
        page = await orders.for_stream(stream.id, limit=limit, after=after)
    return json_response(OrderList(page, page[-1].id if len(page) == limit else None))


@routes.get("/api/streams/{stream_id}/stats")
@contract(
    summary="Live numbers of a stream for its hosts; also pushed to hosts as the `stats` event",
    responses={200: StreamStats},
    errors=[ErrorCode.FORBIDDEN, ErrorCode.STREAM_NOT_FOUND],
    auth=Auth.REQUIRED,
)
async def stream_stats(request: web.Request) -> web.Response:
    caller = _buyer(request)
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    caller.require_manage(stream.id, stream.seller_id)
    audience = await request.app[CART].audience.audience(stream.id)
    await request.app[CART].tally.flush()
    return json_response(await request.app[CART].sales.stream_stats(stream.id, audience))
