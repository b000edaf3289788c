"""REST routes for group buys.

Starting and ending are for whoever may manage the stream, on a product the stream may
run deals on (:mod:`livecast.inventory.ownership`); joining and leaving are for any
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
from livecast.inventory.ownership import Right
from livecast.inventory.service import INVENTORY
from livecast.openapi import Auth, Reply, contract
from livecast.selling.groupbuy_service import GROUPBUYS
from livecast.selling.groupbuy_types import GroupBuy, GroupBuyStats, JoinResult, PriceTier
from livecast.streams.access import managed_stream, require_live

__all__ = ["routes"]

routes = web.RouteTableDef()


class StartGroupBuy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku
    tiers: Annotated[
        list[PriceTier],
        msgspec.Meta(
            min_length=1,
            max_length=10,
            description="from min_buyers members on, everyone pays price: thresholds "
            "rising, prices falling, in the product's currency",
        ),
    ]
    cap: Annotated[
        int,
        msgspec.Meta(
            ge=1, le=100_000, description="most buyers (units, each taken from free stock)"
        ),
    ]
    duration_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)]
    min_buyers: Annotated[
        Annotated[int, msgspec.Meta(ge=1)] | None,
        msgspec.Meta(
            description="members needed at the end to succeed; null: the first tier's threshold",
        ),
    ] = None


class JoinGroupBuy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z0-9_-]{1,64}$",
            description="a new key per join; the same key again (a retry) is answered as "
            "the first time",
        ),
    ]
    card_number: Annotated[
        Annotated[str, msgspec.Meta(max_length=32)] | None,
        msgspec.Meta(description="the payment instrument"),
    ] = None


class CurrentGroupBuy(msgspec.Struct, frozen=True):
    groupbuy: Annotated[
        GroupBuy | None,
        msgspec.Meta(description="the stream's latest group buy, running or not; null: none"),
    ]


_MANAGER = {ErrorCode.FORBIDDEN: "may not manage the stream", ErrorCode.STREAM_NOT_FOUND: ""}


@routes.post("/api/streams/{stream_id}/groupbuys")
@contract(
    summary="Start a group buy of a product on a live stream (who may manage the stream)",
    description="Each buyer who joins takes a unit from free stock and has the top price "
    "authorized. At the end (or when the host ends it) a group that reached min_buyers "
    "pays the lowest price reached, each member getting an order; else every "
    "authorization is voided and the units return to stock.",
    body=StartGroupBuy,
    responses={201: Reply(GroupBuy, "started", headers={"Location": "the group buy's URL"})},
    errors={
        **_MANAGER,
        ErrorCode.DEALS_NOT_GRANTED: "the product's owner has not allowed this stream to "
        "set its price",
        ErrorCode.UNKNOWN_SKU: "",
        ErrorCode.STREAM_NOT_LIVE: "",
        ErrorCode.SOLD_OUT: "",
        ErrorCode.GROUPBUY_RUNNING: "",
        ErrorCode.GROUPBUY_EXISTS: "",
        ErrorCode.CURRENCY_MISMATCH: "",
        ErrorCode.INVALID_TIERS: "",
    },
    auth=Auth.REQUIRED,
)
async def start_groupbuy(request: web.Request) -> web.Response:
    stream = await managed_stream(request, request.match_info["stream_id"])
    body = await read_json(request, StartGroupBuy)
    require_live(stream, "a group buy")
    await request.app[INVENTORY].ownership.require(stream, body.sku, Right.DEALS)
    groupbuy = await request.app[GROUPBUYS].start(
        stream_id=stream.id,
        seller_id=stream.seller_id,
        sku=body.sku,
        tiers=body.tiers,
        min_buyers=body.min_buyers,
        cap=body.cap,
        duration_s=body.duration_s,
    )
    return json_response(
        groupbuy, status=201, headers={"Location": f"/api/groupbuys/{groupbuy.id}"}
    )


@routes.get("/api/streams/{stream_id}/groupbuy")
@contract(
    summary="The stream's latest group buy",
    responses={200: Reply(CurrentGroupBuy, "the group buy or null")},
    errors=[ErrorCode.STREAM_NOT_FOUND],
)
async def current_groupbuy(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    return json_response(CurrentGroupBuy(await request.app[GROUPBUYS].current(stream.id)))


@routes.get("/api/streams/{stream_id}/groupbuy-stats")
@contract(
    summary="The stream's group buys in numbers, for its hosts: runs, how they ended, "
    "joins, units sold and what was charged per currency",
    responses={200: Reply(GroupBuyStats, "the numbers")},
    errors=_MANAGER,
    auth=Auth.REQUIRED,
)
async def groupbuy_stats(request: web.Request) -> web.Response:
    stream = await managed_stream(request, request.match_info["stream_id"])
    return json_response(await request.app[GROUPBUYS].stats(stream.id))


@routes.get("/api/groupbuys/{groupbuy_id}")
@contract(
    summary="One group buy (server_ms: the server's clock, for the countdown)",
    responses={200: Reply(GroupBuy, "the group buy")},
    errors=[ErrorCode.UNKNOWN_GROUPBUY],
)
async def get_groupbuy(request: web.Request) -> web.Response:
    return json_response(await request.app[GROUPBUYS].get(request.match_info["groupbuy_id"]))


async def _buyer_of(request: web.Request) -> tuple[str, str]:
    caller = identity(request)
    caller.require_identity()
    groupbuy_id = request.match_info["groupbuy_id"]
    fixed = await request.app[GROUPBUYS].fixed_part(groupbuy_id)
    if caller.can_manage(fixed.stream_id, fixed.seller_id):
        raise ApiError.of(
            ErrorCode.OWN_GROUPBUY, f"{groupbuy_id}: {ErrorCode.OWN_GROUPBUY.meaning}"
        )
    return caller.sub, caller.name or caller.sub


@routes.post("/api/groupbuys/{groupbuy_id}/join")
@contract(
    summary="Join a group buy (any signed-in buyer but the stream's seller and hosts): "
    "the top price is authorized now, the final price charged at the end",
    body=JoinGroupBuy,
    responses={200: Reply(JoinResult, "you are in (the same answer for a retried key)")},
    errors={
        ErrorCode.UNKNOWN_GROUPBUY: "",
        ErrorCode.GROUPBUY_ENDED: "",
        ErrorCode.GROUPBUY_FULL: "",
        ErrorCode.ALREADY_JOINED: "",
        ErrorCode.SOLD_OUT: "",
        ErrorCode.OWN_GROUPBUY: "",
        ErrorCode.PAYMENT_DECLINED: "nothing is held; the unit went back",
    },
    auth=Auth.REQUIRED,
)
async def join_groupbuy(request: web.Request) -> web.Response:
    user, name = await _buyer_of(request)
    body = await read_json(request, JoinGroupBuy)
    result = await request.app[GROUPBUYS].join(
        request.match_info["groupbuy_id"],
        user=user,
        name=name,
        key=body.key,
        card_number=body.card_number,
    )
    return json_response(result)


@routes.post("/api/groupbuys/{groupbuy_id}/leave")
@contract(
    summary="Leave a group buy before its end: the authorization is voided, the unit "
    "returns to stock",
    responses={200: Reply(GroupBuy, "the group buy without you")},
    errors={
        ErrorCode.UNKNOWN_GROUPBUY: "",
        ErrorCode.GROUPBUY_ENDED: "",
        ErrorCode.NOT_JOINED: "",
        ErrorCode.OWN_GROUPBUY: "",
    },
    auth=Auth.REQUIRED,
)
async def leave_groupbuy(request: web.Request) -> web.Response:
    user, _ = await _buyer_of(request)
    groupbuy_id = request.match_info["groupbuy_id"]
    return json_response(await request.app[GROUPBUYS].leave(groupbuy_id, user=user))


@routes.post("/api/groupbuys/{groupbuy_id}/end")
@contract(
    summary="End a group buy now (who may manage its stream): it succeeds or fails as "
    "at its end time, and its members are settled before the answer",
    responses={200: Reply(GroupBuy, "the settled group buy")},
    errors={**_MANAGER, ErrorCode.UNKNOWN_GROUPBUY: "", ErrorCode.GROUPBUY_ENDED: ""},
    auth=Auth.REQUIRED,
)
async def end_groupbuy(request: web.Request) -> web.Response:
    groupbuys = request.app[GROUPBUYS]
    groupbuy_id = request.match_info["groupbuy_id"]
    fixed = await groupbuys.fixed_part(groupbuy_id)
    await managed_stream(request, fixed.stream_id)
    return json_response(await groupbuys.end(groupbuy_id))
