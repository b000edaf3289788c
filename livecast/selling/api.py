"""REST routes for auctions.

Starting and cancelling are for whoever may manage the stream, on a product the stream
may run deals on (:mod:`livecast.inventory.ownership`); bidding is for any signed-in
buyer but the stream's seller and hosts. Reads are public.
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
from livecast.selling.auction_types import Auction, AuctionStats, BidResult, LoggedBid
from livecast.selling.increments import DEFAULT_INCREMENTS, IncrementStep
from livecast.selling.service import SELLING
from livecast.streams.access import managed_stream, require_live

__all__ = ["routes"]

routes = web.RouteTableDef()


class StartAuction(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku
    start_price: Money
    duration_s: Annotated[int, msgspec.Meta(ge=5, le=3600)]
    soft_close_s: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            le=300,
            description="a bid in the last soft_close_s seconds moves the end this much "
            "later; 0: sudden death (it ends at the bell)",
        ),
    ] = 10
    increments: Annotated[
        list[IncrementStep] | None,
        msgspec.Meta(
            description="bid steps by price band, lowest band first, the last open "
            "(below_minor null); null: 0.50 below 10.00, 1.00 below 100.00, 5.00 below "
            "500.00, then 10.00 (in the currency's minor units: 50, 100, 500, 1000)"
        ),
    ] = None
    pay_within_s: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=86_400,
            description="how long the winner's cart hold lasts; unpaid, the unit returns to stock",
        ),
    ] = 600


class PlaceBid(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    amount: Annotated[
        Money,
        msgspec.Meta(
            description="your maximum: the auction bids for you only as much as it takes "
            "to lead, up to this (the auction's next_bid for a one-step bid)"
        ),
    ]
    key: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z0-9_-]{1,64}$",
            description="a new key per bid; sending the same key again (a retry) is "
            "answered as the first time and bids nothing more",
        ),
    ]


class CurrentAuction(msgspec.Struct, frozen=True):
    auction: Annotated[
        Auction | None,
        msgspec.Meta(description="the stream's latest auction, running or not; null: none"),
    ]


class BidLog(msgspec.Struct, frozen=True):
    bids: Annotated[list[LoggedBid], msgspec.Meta(description="in the server's order")]


_MANAGER = {ErrorCode.FORBIDDEN: "may not manage the stream", ErrorCode.STREAM_NOT_FOUND: ""}


@routes.post("/api/streams/{stream_id}/auctions")
@contract(
    summary="Auction one unit of a product on a live stream (who may manage the stream)",
    description="The unit leaves free stock at once. At the end time the winner's cart "
    "holds it at the winning price for pay_within_s; unpaid, it returns to stock.",
    body=StartAuction,
    responses={201: Reply(Auction, "started", headers={"Location": "the auction's URL"})},
    errors={
        **_MANAGER,
        ErrorCode.DEALS_NOT_GRANTED: "the product's owner has not allowed this stream to "
        "set its price",
        ErrorCode.UNKNOWN_SKU: "",
        ErrorCode.STREAM_NOT_LIVE: "",
        ErrorCode.SOLD_OUT: "",
        ErrorCode.AUCTION_RUNNING: "",
        ErrorCode.AUCTION_EXISTS: "",
        ErrorCode.CURRENCY_MISMATCH: "",
        ErrorCode.INVALID_INCREMENTS: "",
    },
    auth=Auth.REQUIRED,
)
async def start_auction(request: web.Request) -> web.Response:
    stream = await managed_stream(request, request.match_info["stream_id"])
    body = await read_json(request, StartAuction)
    require_live(stream, "an auction")
    ownership = request.app[INVENTORY].ownership
    await ownership.require(stream, body.sku, Right.DEALS)
    auction = await request.app[SELLING].auctions.start(
        stream_id=stream.id,
        seller_id=stream.seller_id,
        sku=body.sku,
        start_price=body.start_price,
        duration_s=body.duration_s,
        soft_close_s=body.soft_close_s,
        increments=body.increments or DEFAULT_INCREMENTS,
        pay_within_s=body.pay_within_s,
    )
    return json_response(auction, status=201, headers={"Location": f"/api/auctions/{auction.id}"})


@routes.get("/api/streams/{stream_id}/auction")
@contract(
    summary="The stream's latest auction",
    responses={200: Reply(CurrentAuction, "the auction or null")},
    errors=[ErrorCode.STREAM_NOT_FOUND],
)
async def current_auction(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    return json_response(CurrentAuction(await request.app[SELLING].auctions.current(stream.id)))


@routes.get("/api/streams/{stream_id}/auction-stats")
@contract(
    summary="The stream's auctions in numbers, for its hosts: how many ran and how they "
    "ended, bids, distinct bidders, and the winning prices per currency",
    responses={200: Reply(AuctionStats, "the numbers")},
    errors=_MANAGER,
    auth=Auth.REQUIRED,
)
async def auction_stats(request: web.Request) -> web.Response:
    stream = await managed_stream(request, request.match_info["stream_id"])
    return json_response(await request.app[SELLING].auctions.stats(stream.id))


@routes.get("/api/auctions/{auction_id}")
@contract(
    summary="One auction (server_ms: the server's clock, for the countdown)",
    responses={200: Reply(Auction, "the auction")},
    errors=[ErrorCode.UNKNOWN_AUCTION],
)
async def get_auction(request: web.Request) -> web.Response:
    auctions = request.app[SELLING].auctions
    return json_response(await auctions.get(request.match_info["auction_id"]))


@routes.get("/api/auctions/{auction_id}/bids")
@contract(
    summary="Every bid that moved the price, in the server's order",
    responses={200: Reply(BidLog, "the bids")},
    errors=[ErrorCode.UNKNOWN_AUCTION],
)
async def list_bids(request: web.Request) -> web.Response:
    auctions = request.app[SELLING].auctions
    return json_response(BidLog(await auctions.bid_log(request.match_info["auction_id"])))


@routes.post("/api/auctions/{auction_id}/bids")
@contract(
    summary="Bid up to a maximum (any signed-in buyer but the stream's seller and hosts)",
    body=PlaceBid,
    responses={200: Reply(BidResult, "the bid's outcome (the same for a retried key)")},
    errors={
        ErrorCode.UNKNOWN_AUCTION: "",
        ErrorCode.AUCTION_ENDED: "",
        ErrorCode.BID_TOO_LOW: "next_bid says the lowest accepted now",
        ErrorCode.OWN_AUCTION: "",
        ErrorCode.CURRENCY_MISMATCH: "",
    },
    auth=Auth.REQUIRED,
)
async def place_bid(request: web.Request) -> web.Response:
    caller = identity(request)
    caller.require_identity()
    body = await read_json(request, PlaceBid)
    auctions = request.app[SELLING].auctions
    auction_id = request.match_info["auction_id"]
    fixed = await auctions.fixed_part(auction_id)
    if caller.can_manage(fixed.stream_id, fixed.seller_id):
        raise ApiError.of(ErrorCode.OWN_AUCTION, f"{auction_id}: {ErrorCode.OWN_AUCTION.meaning}")
    name = caller.name or caller.sub
    result = await auctions.bid(
        auction_id, user=caller.sub, name=name, amount=body.amount, key=body.key
    )
    return json_response(result)


@routes.post("/api/auctions/{auction_id}/cancel")
@contract(
    summary="Cancel an auction before its first bid (who may manage its stream); the unit "
    "returns to stock",
    responses={200: Reply(Auction, "the cancelled auction")},
    errors={
        **_MANAGER,
        ErrorCode.UNKNOWN_AUCTION: "",
        ErrorCode.AUCTION_HAS_BIDS: "",
        ErrorCode.AUCTION_ENDED: "",
    },
    auth=Auth.REQUIRED,
)
async def cancel_auction(request: web.Request) -> web.Response:
    auctions = request.app[SELLING].auctions
    auction_id = request.match_info["auction_id"]
    fixed = await auctions.fixed_part(auction_id)
    await managed_stream(request, fixed.stream_id)
    return json_response(await auctions.cancel(auction_id))
