"""REST routes for price knock-downs.

Starting and ending are for whoever may manage the stream, on a product the stream may
run deals on (:mod:`livecast.inventory.ownership`); tapping and buying are for any
signed-in buyer but the stream's seller and hosts. Reads are public.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.error_codes import ErrorCode
from livecast.errors import ApiError
from livecast.http import identity, json_response, read_json
from livecast.inventory.catalog import Sku
from livecast.inventory.money import Money
from livecast.inventory.ownership import Right
from livecast.inventory.service import INVENTORY
from livecast.openapi import Auth, Reply, contract
from livecast.selling.knockdown_service import KNOCKDOWNS
from livecast.selling.knockdown_types import (
    Knockdown,
    KnockdownBuy,
    KnockdownMode,
    KnockdownStats,
    TapResult,
)
from livecast.streams.access import managed_stream, require_live

__all__ = ["routes"]

routes = web.RouteTableDef()


class StartKnockdown(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku
    start_price: Money
    step: Annotated[Money, msgspec.Meta(description="how much one step takes off")]
    floor: Annotated[Money, msgspec.Meta(description="the lowest price; below start_price")]
    quantity: Annotated[
        int, msgspec.Meta(ge=1, le=100_000, description="units carved out of free stock")
    ]
    duration_s: Annotated[int, msgspec.Meta(ge=1, le=86_400, description="the deadline")]
    mode: Annotated[
        KnockdownMode,
        msgspec.Meta(description="taps: a step every taps_per_step taps; time: every step_every_s"),
    ] = KnockdownMode.TAPS
    taps_per_step: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 100
    step_every_s: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 10.0
    per_price: Annotated[
        int,
        msgspec.Meta(ge=0, le=100_000, description="most units sold at one price; 0: any"),
    ] = 0
    per_buyer_limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    pay_within_s: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=86_400,
            description="how long a buyer's cart hold lasts; unpaid, the unit returns to stock",
        ),
    ] = 600


class Taps(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    count: Annotated[
        int, msgspec.Meta(ge=1, le=50, description="taps since the page last sent (coalesced)")
    ] = 1


class BuyNow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z0-9_-]{1,64}$",
            description="a new key per buy; the same key again (a retry) is answered as "
            "the first time and takes nothing more",
        ),
    ]


class CurrentKnockdown(msgspec.Struct, frozen=True):
    knockdown: Annotated[
        Knockdown | None,
        msgspec.Meta(description="the stream's latest knock-down, running or not; null: none"),
    ]


_MANAGER = {ErrorCode.FORBIDDEN: "may not manage the stream", ErrorCode.STREAM_NOT_FOUND: ""}


@routes.post("/api/streams/{stream_id}/knockdowns")
@contract(
    summary="Start a price knock-down of a product on a live stream (who may manage the stream)",
    description="Its quantity leaves free stock at once. The price drops a step every "
    "taps_per_step taps of the audience (or every step_every_s) down to the floor; a buy "
    "is a cart hold at the price of the moment.",
    body=StartKnockdown,
    responses={201: Reply(Knockdown, "started", headers={"Location": "the knock-down's URL"})},
    errors={
        **_MANAGER,
        ErrorCode.DEALS_NOT_GRANTED: "the product's owner has not allowed this stream to "
        "set its price",
        ErrorCode.UNKNOWN_SKU: "",
        ErrorCode.STREAM_NOT_LIVE: "",
        ErrorCode.INSUFFICIENT_STOCK: "",
        ErrorCode.KNOCKDOWN_RUNNING: "",
        ErrorCode.KNOCKDOWN_EXISTS: "",
        ErrorCode.CURRENCY_MISMATCH: "",
        ErrorCode.INVALID_KNOCKDOWN: "",
    },
    auth=Auth.REQUIRED,
)
async def start_knockdown(request: web.Request) -> web.Response:
    stream = await managed_stream(request, request.match_info["stream_id"])
    body = await read_json(request, StartKnockdown)
    require_live(stream, "a knock-down")
    await request.app[INVENTORY].ownership.require(stream, body.sku, Right.DEALS)
    knockdown = await request.app[KNOCKDOWNS].start(
        stream_id=stream.id,
        seller_id=stream.seller_id,
        sku=body.sku,
        start_price=body.start_price,
        step=body.step,
        floor=body.floor,
        mode=body.mode,
        taps_per_step=body.taps_per_step,
        step_every_s=body.step_every_s,
        quantity=body.quantity,
        per_price=body.per_price,
        per_buyer_limit=body.per_buyer_limit,
        duration_s=body.duration_s,
        pay_within_s=body.pay_within_s,
    )
    return json_response(
        knockdown, status=201, headers={"Location": f"/api/knockdowns/{knockdown.id}"}
    )


@routes.get("/api/streams/{stream_id}/knockdown")
@contract(
    summary="The stream's latest knock-down",
    responses={200: Reply(CurrentKnockdown, "the knock-down or null")},
    errors=[ErrorCode.STREAM_NOT_FOUND],
)
async def current_knockdown(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    return json_response(CurrentKnockdown(await request.app[KNOCKDOWNS].current(stream.id)))


@routes.get("/api/streams/{stream_id}/knockdown-stats")
@contract(
    summary="The stream's knock-downs in numbers, for its hosts: runs, taps, price drops, "
    "units bought and their prices per currency",
    responses={200: Reply(KnockdownStats, "the numbers")},
    errors=_MANAGER,
    auth=Auth.REQUIRED,
)
async def knockdown_stats(request: web.Request) -> web.Response:
    stream = await managed_stream(request, request.match_info["stream_id"])
    return json_response(await request.app[KNOCKDOWNS].stats(stream.id))


@routes.get("/api/knockdowns/{knockdown_id}")
@contract(
    summary="One knock-down (server_ms: the server's clock, for the countdown)",
    responses={200: Reply(Knockdown, "the knock-down")},
    errors=[ErrorCode.UNKNOWN_KNOCKDOWN],
)
async def get_knockdown(request: web.Request) -> web.Response:
    return json_response(await request.app[KNOCKDOWNS].get(request.match_info["knockdown_id"]))


async def _buyer_of(request: web.Request) -> str:
    caller = identity(request)
    caller.require_identity()
    knockdown_id = request.match_info["knockdown_id"]
    fixed = await request.app[KNOCKDOWNS].fixed_part(knockdown_id)
    if caller.can_manage(fixed.stream_id, fixed.seller_id):
        raise ApiError.of(
            ErrorCode.OWN_KNOCKDOWN, f"{knockdown_id}: {ErrorCode.OWN_KNOCKDOWN.meaning}"
        )
    return caller.sub


@routes.post("/api/knockdowns/{knockdown_id}/taps")
@contract(
    summary="Tap to knock the price down (any signed-in viewer but the stream's seller "
    "and hosts); pages send their taps coalesced",
    body=Taps,
    responses={200: Reply(TapResult, "the price and taps now")},
    errors={
        ErrorCode.UNKNOWN_KNOCKDOWN: "",
        ErrorCode.KNOCKDOWN_ENDED: "",
        ErrorCode.OWN_KNOCKDOWN: "",
    },
    auth=Auth.REQUIRED,
)
async def tap_knockdown(request: web.Request) -> web.Response:
    await _buyer_of(request)
    body = await read_json(request, Taps)
    knockdowns = request.app[KNOCKDOWNS]
    return json_response(await knockdowns.tap(request.match_info["knockdown_id"], body.count))


@routes.post("/api/knockdowns/{knockdown_id}/buy")
@contract(
    summary="Buy one unit at the current price: it becomes your cart hold at that price; "
    "check out as usual",
    body=BuyNow,
    responses={200: Reply(KnockdownBuy, "your hold (the same for a retried key)")},
    errors={
        ErrorCode.UNKNOWN_KNOCKDOWN: "",
        ErrorCode.KNOCKDOWN_ENDED: "",
        ErrorCode.SOLD_OUT: "",
        ErrorCode.PRICE_SOLD_OUT: "",
        ErrorCode.OVER_LIMIT: "per_buyer_limit units each",
        ErrorCode.OWN_KNOCKDOWN: "",
    },
    auth=Auth.REQUIRED,
)
async def buy_knockdown(request: web.Request) -> web.Response:
    user = await _buyer_of(request)
    body = await read_json(request, BuyNow)
    knockdowns = request.app[KNOCKDOWNS]
    result = await knockdowns.buy(request.match_info["knockdown_id"], user=user, key=body.key)
    return json_response(result)


@routes.post("/api/knockdowns/{knockdown_id}/end")
@contract(
    summary="End a knock-down now (who may manage its stream); what is left returns to stock",
    responses={200: Reply(Knockdown, "the ended knock-down")},
    errors={**_MANAGER, ErrorCode.UNKNOWN_KNOCKDOWN: "", ErrorCode.KNOCKDOWN_ENDED: ""},
    auth=Auth.REQUIRED,
)
async def end_knockdown(request: web.Request) -> web.Response:
    knockdowns = request.app[KNOCKDOWNS]
    knockdown_id = request.match_info["knockdown_id"]
    fixed = await knockdowns.fixed_part(knockdown_id)
    await managed_stream(request, fixed.stream_id)
    return json_response(await knockdowns.end(knockdown_id))
