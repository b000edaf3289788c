"""What an auction is on the wire: its states, the document every reader gets, its live
events, a bid's answer, the bid log and the numbers (see :mod:`livecast.selling.auctions`
for what moves it)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

from livecast.events import Event
from livecast.inventory.money import Money
from livecast.selling.increments import IncrementStep
from livecast.timeline import MediaTimeMs

__all__ = [
    "Auction",
    "AuctionBid",
    "AuctionBidData",
    "AuctionCancelled",
    "AuctionEnded",
    "AuctionExtended",
    "AuctionExtendedData",
    "AuctionStarted",
    "AuctionState",
    "AuctionStats",
    "BidOutcome",
    "BidResult",
    "LoggedBid",
]


class AuctionState(StrEnum):
    RUNNING = "running"
    SOLD = "sold"
    UNSOLD = "unsold"
    CANCELLED = "cancelled"

    def can_become(self, target: AuctionState) -> bool:
        return target in _NEXT[self]

    @property
    def is_final(self) -> bool:
        return not _NEXT[self]


# The moves the scripts make (start makes a running auction); nothing else moves one.
_NEXT: dict[AuctionState, frozenset[AuctionState]] = {
    AuctionState.RUNNING: frozenset(
        {AuctionState.SOLD, AuctionState.UNSOLD, AuctionState.CANCELLED}
    ),
    AuctionState.SOLD: frozenset(),
    AuctionState.UNSOLD: frozenset(),
    AuctionState.CANCELLED: frozenset(),
}


class Auction(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    stream_id: str
    seller_id: str
    sku: str
    title: str
    image_url: str | None
    state: AuctionState
    start_price: Money
    price: Annotated[
        Money | None, msgspec.Meta(description="the leading bid; null before the first bid")
    ]
    next_bid: Annotated[Money, msgspec.Meta(description="the lowest bid accepted now")]
    increments: list[IncrementStep]
    soft_close_s: Annotated[
        int,
        msgspec.Meta(
            description="a bid in the last soft_close_s seconds moves the end this much "
            "later; 0: sudden death (it ends at the bell)"
        ),
    ]
    leader_id: str | None
    leader_name: str | None
    bids: Annotated[int, msgspec.Meta(description="bids that moved the price")]
    bidders: int
    extensions: int
    starts_at_ms: int
    ends_at_ms: int
    ended_at_ms: int | None
    pay_within_s: Annotated[int, msgspec.Meta(description="how long the winner's cart hold lasts")]
    hold_id: Annotated[
        str | None, msgspec.Meta(description="sold: the winner's cart hold (its cart line)")
    ]
    server_ms: Annotated[
        int, msgspec.Meta(description="the server's clock when this was read, for the countdown")
    ]


class AuctionStarted(Event, tag="auction.started", frozen=True, kw_only=True):
    """An auction opened (the stream's ``auction`` state slot holds it until it ends)."""

    data: Auction
    media_time_ms: MediaTimeMs = None


class AuctionBidData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A bid moved the price; ``ends_at_ms`` and ``server_ms`` are server clock."""

    id: str
    price: Money
    next_bid: Money
    leader_id: str
    leader_name: str
    bids: int
    bidders: int
    ends_at_ms: int
    extended_ms: Annotated[int, msgspec.Meta(description="how much later it ends (soft close)")]
    server_ms: int


class AuctionBid(Event, tag="auction.bid", frozen=True, kw_only=True):
    """A bid moved the price (a leader raising their own maximum sends nothing)."""

    data: AuctionBidData


class AuctionExtendedData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    ends_at_ms: int
    extended_ms: int
    server_ms: int


class AuctionExtended(Event, tag="auction.extended", frozen=True, kw_only=True):
    """A bid in the soft-close window moved the end later (sent with its ``auction.bid``)."""

    data: AuctionExtendedData


class AuctionEnded(Event, tag="auction.ended", frozen=True, kw_only=True):
    """The auction ended at its time: ``sold`` (``leader_*`` won at ``price``; the unit is
    their cart hold) or ``unsold``."""

    data: Auction
    media_time_ms: MediaTimeMs = None


class AuctionCancelled(Event, tag="auction.cancelled", frozen=True, kw_only=True):
    """The host cancelled the auction before its first bid."""

    data: Auction
    media_time_ms: MediaTimeMs = None


class BidOutcome(StrEnum):
    ACCEPTED = "accepted"
    OUTBID = "outbid"
    MAX_RAISED = "max_raised"


class BidResult(msgspec.Struct, frozen=True, kw_only=True):
    auction_id: str
    outcome: Annotated[
        BidOutcome,
        msgspec.Meta(
            description="accepted: you lead; outbid: the leader's maximum was higher and "
            "the price rose; max_raised: you led and your maximum is higher now"
        ),
    ]
    leading: bool
    price: Money
    next_bid: Money
    your_max: Money
    leader_name: str
    bids: int
    ends_at_ms: int
    server_ms: int
    replayed: Annotated[bool, msgspec.Meta(description="this key's bid was placed before")]


class LoggedBid(msgspec.Struct, frozen=True, kw_only=True):
    """A bid that moved the price, in the server's order."""

    price: Money
    leader_id: str
    at_ms: int
    ends_at_ms: int
    extended_ms: int


class AuctionStats(msgspec.Struct, frozen=True, kw_only=True):
    """A stream's auctions in numbers, exact (read from the auctions themselves)."""

    stream_id: str
    auctions: int
    running: int
    sold: int
    unsold: int
    cancelled: int
    bids: Annotated[int, msgspec.Meta(description="bids that moved a price")]
    bidders: Annotated[int, msgspec.Meta(description="distinct buyers who bid on any")]
    gmv: Annotated[
        list[Money],
        msgspec.Meta(
            description="per currency, the winning prices of the sold auctions (their "
            "holds may still be unpaid: the stream's sales stats count what was paid)"
        ),
    ]
