"""REST routes for giveaways and follows.

Starting, drawing and cancelling are for whoever may manage the stream, on a product the
stream may run deals on (:mod:`livecast.inventory.ownership`); entering is for any
signed-in viewer the giveaway is for, but the stream's seller and hosts. Reads are
public (the entry list only once drawn); the stats are for the stream's hosts.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.error_codes import ErrorCode
from livecast.errors import Unprocessable
from livecast.http import identity, json_response, read_json
from livecast.inventory.catalog import Sku
from livecast.inventory.ownership import Right
from livecast.inventory.service import INVENTORY
from livecast.openapi import Auth, Reply, contract
from livecast.selling.giveaway_types import (
    Eligibility,
    EntryResult,
    Giveaway,
    GiveawayAudit,
    GiveawayStats,
)
from livecast.selling.service import SELLING
from livecast.streams.access import managed_stream, require_live

__all__ = ["routes"]

routes = web.RouteTableDef()


class StartGiveaway(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Annotated[Sku, msgspec.Meta(description="the prize: one unit leaves free stock")]
    eligibility: Annotated[
        Eligibility,
        msgspec.Meta(
            description="everyone: any signed-in viewer; followers: who follows the "
            "stream's seller; buyers: who has an order from this stream"
        ),
    ] = Eligibility.EVERYONE
    duration_s: Annotated[
        int,
        msgspec.Meta(
            ge=0, le=86_400, description="it draws by itself after this long; 0: the host draws"
        ),
    ] = 0


class CurrentGiveaway(msgspec.Struct, frozen=True):
    giveaway: Annotated[
        Giveaway | None,
        msgspec.Meta(description="the stream's latest giveaway, running or not; null: none"),
    ]


class MyEntry(msgspec.Struct, frozen=True):
    entered: bool


class Following(msgspec.Struct, frozen=True):
    seller_id: str
    following: bool
    followers: int


_MANAGER = {ErrorCode.FORBIDDEN: "may not manage the stream", ErrorCode.STREAM_NOT_FOUND: ""}


@routes.post("/api/streams/{stream_id}/giveaways")
@contract(
    summary="Give one unit of a product away on a live stream (who may manage the stream)",
    description="The unit leaves free stock at once; seed_sha256 commits to the draw's "
    "seed. At the draw the winner gets a zero-priced order; with no entry, or cancelled, "
    "the unit returns to stock.",
    body=StartGiveaway,
    responses={201: Reply(Giveaway, "started", headers={"Location": "the giveaway's URL"})},
    errors={
        **_MANAGER,
        ErrorCode.DEALS_NOT_GRANTED: "the product's owner has not allowed this stream to "
        "set its price",
        ErrorCode.UNKNOWN_SKU: "",
        ErrorCode.STREAM_NOT_LIVE: "",
        ErrorCode.SOLD_OUT: "",
        ErrorCode.GIVEAWAY_RUNNING: "",
        ErrorCode.GIVEAWAY_EXISTS: "",
    },
    auth=Auth.REQUIRED,
)
async def start_giveaway(request: web.Request) -> web.Response:
    stream = await managed_stream(request, request.match_info["stream_id"])
    body = await read_json(request, StartGiveaway)
    require_live(stream, "a giveaway")
    await request.app[INVENTORY].ownership.require(stream, body.sku, Right.DEALS)
    giveaway = await request.app[SELLING].giveaways.start(
        stream_id=stream.id,
        seller_id=stream.seller_id,
        sku=body.sku,
        eligibility=body.eligibility,
        duration_s=body.duration_s,
    )
    return json_response(
        giveaway, status=201, headers={"Location": f"/api/giveaways/{giveaway.id}"}
    )


@routes.get("/api/streams/{stream_id}/giveaway")
@contract(
    summary="The stream's latest giveaway",
    responses={200: Reply(CurrentGiveaway, "the giveaway or null")},
    errors=[ErrorCode.STREAM_NOT_FOUND],
)
async def current_giveaway(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    giveaways = request.app[SELLING].giveaways
    return json_response(CurrentGiveaway(await giveaways.current(stream.id)))


@routes.get("/api/streams/{stream_id}/giveaway-stats")
@contract(
    summary="The stream's giveaways in numbers, for its hosts: how many ran and how they "
    "ended, entries, distinct entrants, winners and units given away",
    responses={200: Reply(GiveawayStats, "the numbers")},
    errors=_MANAGER,
    auth=Auth.REQUIRED,
)
async def giveaway_stats(request: web.Request) -> web.Response:
    stream = await managed_stream(request, request.match_info["stream_id"])
    return json_response(await request.app[SELLING].giveaways.stats(stream.id))


@routes.get("/api/giveaways/{giveaway_id}")
@contract(
    summary="One giveaway (the seed only once drawn)",
    responses={200: Reply(Giveaway, "the giveaway")},
    errors=[ErrorCode.UNKNOWN_GIVEAWAY],
)
async def get_giveaway(request: web.Request) -> web.Response:
    giveaways = request.app[SELLING].giveaways
    return json_response(await giveaways.get(request.match_info["giveaway_id"]))


@routes.get("/api/giveaways/{giveaway_id}/audit")
@contract(
    summary="What checks the draw: the commitment and, once drawn, the seed and the "
    'entrants in entry order (the README\'s "Giveaways" says how)',
    responses={200: Reply(GiveawayAudit, "the audit record")},
    errors=[ErrorCode.UNKNOWN_GIVEAWAY],
)
async def audit_giveaway(request: web.Request) -> web.Response:
    giveaways = request.app[SELLING].giveaways
    return json_response(await giveaways.audit(request.match_info["giveaway_id"]))


@routes.get("/api/giveaways/{giveaway_id}/entry")
@contract(
    summary="Whether you have entered",
    responses={200: Reply(MyEntry, "entered or not")},
    errors=[ErrorCode.UNKNOWN_GIVEAWAY],
    auth=Auth.REQUIRED,
)
async def my_entry(request: web.Request) -> web.Response:
    caller = identity(request)
    caller.require_identity()
    giveaways = request.app[SELLING].giveaways
    entered = await giveaways.has_entered(request.match_info["giveaway_id"], caller.sub)
    return json_response(MyEntry(entered))


@routes.put("/api/giveaways/{giveaway_id}/entry")
@contract(
    summary="Enter the draw (a signed-in viewer it is for, not the stream's seller or "
    "hosts): one entry each; entering again changes nothing",
    responses={200: Reply(EntryResult, "you are in")},
    errors={
        ErrorCode.UNKNOWN_GIVEAWAY: "",
        ErrorCode.GIVEAWAY_ENDED: "",
        ErrorCode.OWN_GIVEAWAY: "",
        ErrorCode.NOT_ELIGIBLE: "",
    },
    auth=Auth.REQUIRED,
)
async def enter(request: web.Request) -> web.Response:
    caller = identity(request)
    caller.require_identity()
    giveaways = request.app[SELLING].giveaways
    return json_response(await giveaways.enter(request.match_info["giveaway_id"], caller))


async def _managed_giveaway(request: web.Request) -> str:
    giveaways = request.app[SELLING].giveaways
    giveaway = await giveaways.get(request.match_info["giveaway_id"])
    await managed_stream(request, giveaway.stream_id)
    return giveaway.id


@routes.post("/api/giveaways/{giveaway_id}/draw")
@contract(
    summary="Draw the winner now (who may manage its stream); the seed is revealed and "
    "the winner gets a zero-priced order",
    responses={200: Reply(Giveaway, "drawn (or no_entries: the unit is back in stock)")},
    errors={**_MANAGER, ErrorCode.UNKNOWN_GIVEAWAY: "", ErrorCode.GIVEAWAY_ENDED: ""},
    auth=Auth.REQUIRED,
)
async def draw(request: web.Request) -> web.Response:
    giveaway_id = await _managed_giveaway(request)
    return json_response(await request.app[SELLING].giveaways.draw(giveaway_id))


@routes.post("/api/giveaways/{giveaway_id}/cancel")
@contract(
    summary="Cancel the giveaway before its draw (who may manage its stream); the unit "
    "returns to stock",
    responses={200: Reply(Giveaway, "the cancelled giveaway")},
    errors={**_MANAGER, ErrorCode.UNKNOWN_GIVEAWAY: "", ErrorCode.GIVEAWAY_ENDED: ""},
    auth=Auth.REQUIRED,
)
async def cancel(request: web.Request) -> web.Response:
    giveaway_id = await _managed_giveaway(request)
    return json_response(await request.app[SELLING].giveaways.cancel(giveaway_id))


async def _following(request: web.Request, *, change: bool | None) -> web.Response:
    caller = identity(request)
    caller.require_identity()
    seller_id = request.match_info["seller_id"]
    if len(seller_id) > 128:
        raise Unprocessable("seller_id is over 128 characters", code=ErrorCode.INVALID_FIELD)
    follows = request.app[SELLING].follows
    if change is True:
        count = await follows.follow(caller.sub, seller_id)
    elif change is False:
        count = await follows.unfollow(caller.sub, seller_id)
    else:
        count = await follows.followers(seller_id)
    following = await follows.follows(caller.sub, seller_id)
    return json_response(Following(seller_id=seller_id, following=following, followers=count))


@routes.get("/api/sellers/{seller_id}/follow")
@contract(
    summary="Whether you follow the seller (giveaways for followers let them enter)",
    responses={200: Reply(Following, "following or not")},
    errors=[ErrorCode.INVALID_FIELD],
    auth=Auth.REQUIRED,
)
async def get_follow(request: web.Request) -> web.Response:
    return await _following(request, change=None)


@routes.put("/api/sellers/{seller_id}/follow")
@contract(
    summary="Follow the seller (again: nothing changes)",
    responses={200: Reply(Following, "following")},
    errors=[ErrorCode.INVALID_FIELD],
    auth=Auth.REQUIRED,
)
async def follow(request: web.Request) -> web.Response:
    return await _following(request, change=True)


@routes.delete("/api/sellers/{seller_id}/follow")
@contract(
    summary="Stop following the seller",
    responses={200: Reply(Following, "not following")},
    errors=[ErrorCode.INVALID_FIELD],
    auth=Auth.REQUIRED,
)
async def unfollow(request: web.Request) -> web.Response:
    return await _following(request, change=False)
