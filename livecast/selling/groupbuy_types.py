"""What a group buy is on the wire: its states, its members' states, the document every
reader gets, its live events, a join's answer and the numbers (see
:mod:`livecast.selling.groupbuys` for what moves it)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

from livecast.events import Event
from livecast.inventory.money import Money
from livecast.timeline import MediaTimeMs

__all__ = [
    "GroupBuy",
    "GroupBuyEnded",
    "GroupBuyProgress",
    "GroupBuyStarted",
    "GroupBuyState",
    "GroupBuyStats",
    "GroupBuyUpdated",
    "JoinResult",
    "MemberState",
    "PriceTier",
]


class GroupBuyState(StrEnum):
    RUNNING = "running"
    # Closed with enough members: every authorized member's payment is being captured.
    CAPTURING = "capturing"
    # Closed with too few: every authorization is being voided.
    VOIDING = "voiding"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    def can_become(self, target: GroupBuyState) -> bool:
        return target in _NEXT[self]

    @property
    def is_final(self) -> bool:
        return not _NEXT[self]


# The moves the scripts make (start makes a running group buy); nothing else moves one.
_NEXT: dict[GroupBuyState, frozenset[GroupBuyState]] = {
    GroupBuyState.RUNNING: frozenset({GroupBuyState.CAPTURING, GroupBuyState.VOIDING}),
    GroupBuyState.CAPTURING: frozenset({GroupBuyState.SUCCEEDED}),
    GroupBuyState.VOIDING: frozenset({GroupBuyState.FAILED}),
    GroupBuyState.SUCCEEDED: frozenset(),
    GroupBuyState.FAILED: frozenset(),
}


class MemberState(StrEnum):
    # Joined: a unit is the group's, the payment is being authorized.
    PENDING = "pending"
    # The payment is authorized at the top price: the member counts.
    AUTHORIZED = "authorized"
    # Left before the end: the payment is being voided.
    LEAVING = "leaving"
    CAPTURED = "captured"
    VOIDED = "voided"

    def can_become(self, target: MemberState) -> bool:
        return target in _MEMBER_NEXT[self]


_MEMBER_NEXT: dict[MemberState, frozenset[MemberState]] = {
    MemberState.PENDING: frozenset({MemberState.AUTHORIZED, MemberState.VOIDED}),
    MemberState.AUTHORIZED: frozenset(
        {MemberState.LEAVING, MemberState.CAPTURED, MemberState.VOIDED}
    ),
    MemberState.LEAVING: frozenset({MemberState.VOIDED}),
    MemberState.CAPTURED: frozenset(),
    # A buyer who left may join again (a new membership, a new payment).
    MemberState.VOIDED: frozenset({MemberState.PENDING}),
}


class PriceTier(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """From ``min_buyers`` members on, everyone pays ``price``."""

    min_buyers: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    price: Money


class GroupBuy(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    stream_id: str
    seller_id: str
    sku: str
    title: str
    image_url: str | None
    state: GroupBuyState
    tiers: Annotated[
        list[PriceTier], msgspec.Meta(description="buyer thresholds rising, prices falling")
    ]
    min_buyers: Annotated[
        int, msgspec.Meta(description="members needed at the end for the group to succeed")
    ]
    cap: Annotated[int, msgspec.Meta(description="most units (members) the group takes")]
    members: Annotated[int, msgspec.Meta(description="members whose payment is authorized")]
    price: Annotated[
        Money,
        msgspec.Meta(
            description="what every member pays if the group ended now (the lowest tier "
            "reached; the top price below the first threshold); final once closed"
        ),
    ]
    next_tier: Annotated[
        PriceTier | None, msgspec.Meta(description="the next lower price; null: the lowest")
    ]
    needed: Annotated[int, msgspec.Meta(description="more members the next tier needs (0: none)")]
    joins: int
    leaves: int
    captured: Annotated[int, msgspec.Meta(description="members charged (each has an order)")]
    voided: int
    starts_at_ms: int
    ends_at_ms: int
    ended_at_ms: int | None
    server_ms: Annotated[
        int, msgspec.Meta(description="the server's clock when this was read, for the countdown")
    ]


class GroupBuyStarted(Event, tag="groupbuy.started", frozen=True, kw_only=True):
    """A group buy opened (the stream's ``groupbuy`` state slot holds it until it closes)."""

    data: GroupBuy
    media_time_ms: MediaTimeMs = None


class GroupBuyProgress(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Members joined or left: the price now, the next tier and how many more it needs."""

    id: str
    members: int
    price: Money
    next_tier: PriceTier | None
    needed: int
    ends_at_ms: int
    server_ms: int


class GroupBuyUpdated(Event, tag="groupbuy.updated", frozen=True, kw_only=True):
    """A member joined or left."""

    data: GroupBuyProgress
    media_time_ms: MediaTimeMs = None


class GroupBuyEnded(Event, tag="groupbuy.ended", frozen=True, kw_only=True):
    """The group buy closed: ``capturing`` (it reached its minimum: every member pays
    ``price`` and gets an order) or ``voiding`` (it did not: nobody pays)."""

    data: GroupBuy
    media_time_ms: MediaTimeMs = None


class JoinResult(msgspec.Struct, frozen=True, kw_only=True):
    groupbuy_id: str
    state: Annotated[
        MemberState,
        msgspec.Meta(
            description="authorized: you are in; captured: you paid (see orders); voided: "
            "this key's membership was declined, left, or the group failed"
        ),
    ]
    authorized: Annotated[
        Money, msgspec.Meta(description="what was authorized: the top price; you pay the final")
    ]
    order_id: Annotated[str, msgspec.Meta(description="your order's id once the group succeeds")]
    members: int
    price: Money
    replayed: Annotated[bool, msgspec.Meta(description="this key joined before")]


class GroupBuyStats(msgspec.Struct, frozen=True, kw_only=True):
    """A stream's group buys in numbers, exact (read from the group buys themselves)."""

    stream_id: str
    runs: int
    running: int
    succeeded: Annotated[int, msgspec.Meta(description="closed with enough members")]
    failed: int
    joins: Annotated[int, msgspec.Meta(description="authorized joins (a rejoin counts again)")]
    units: Annotated[int, msgspec.Meta(description="units sold (captured members)")]
    gmv: Annotated[list[Money], msgspec.Meta(description="per currency, what was captured")]
