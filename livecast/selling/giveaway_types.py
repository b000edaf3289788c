"""What a giveaway is on the wire: its states, who may enter, the document every reader
gets, its live events, an entry's answer, the audit record and the numbers (see
:mod:`livecast.selling.giveaways` for what moves it)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

from livecast.events import Event
from livecast.timeline import MediaTimeMs

__all__ = [
    "Eligibility",
    "EntryResult",
    "Giveaway",
    "GiveawayAudit",
    "GiveawayCancelled",
    "GiveawayDrawn",
    "GiveawayEntries",
    "GiveawayEntriesData",
    "GiveawayStarted",
    "GiveawayState",
    "GiveawayStats",
]


class GiveawayState(StrEnum):
    RUNNING = "running"
    DRAWN = "drawn"
    NO_ENTRIES = "no_entries"
    CANCELLED = "cancelled"

    def can_become(self, target: GiveawayState) -> bool:
        return target in _NEXT[self]

    @property
    def is_final(self) -> bool:
        return not _NEXT[self]


# The moves the scripts make (start makes a running giveaway); nothing else moves one.
_NEXT: dict[GiveawayState, frozenset[GiveawayState]] = {
    GiveawayState.RUNNING: frozenset(
        {GiveawayState.DRAWN, GiveawayState.NO_ENTRIES, GiveawayState.CANCELLED}
    ),
    GiveawayState.DRAWN: frozenset(),
    GiveawayState.NO_ENTRIES: frozenset(),
    GiveawayState.CANCELLED: frozenset(),
}


class Eligibility(StrEnum):
    """Who may enter: every signed-in viewer, the seller's followers, or viewers with an
    order from this stream."""

    EVERYONE = "everyone"
    FOLLOWERS = "followers"
    BUYERS = "buyers"


class Giveaway(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    stream_id: str
    seller_id: str
    sku: str
    title: str
    image_url: str | None
    state: GiveawayState
    eligibility: Eligibility
    entries: int
    seed_sha256: Annotated[
        str,
        msgspec.Meta(
            description="the commitment, published at the start: hex SHA-256 of the seed's "
            "text, so the seed revealed at the draw can be checked against it"
        ),
    ]
    seed: Annotated[
        str | None, msgspec.Meta(description="the draw's seed (hex), revealed at the draw")
    ]
    winner_id: str | None
    winner_name: str | None
    winner_index: Annotated[
        int | None, msgspec.Meta(description="the winner's place in the entry list (0-based)")
    ]
    order_id: Annotated[
        str | None, msgspec.Meta(description="the winner's zero-priced order, once made")
    ]
    starts_at_ms: int
    ends_at_ms: Annotated[
        int | None, msgspec.Meta(description="when it draws by itself; null: the host draws")
    ]
    drawn_at_ms: int | None
    server_ms: Annotated[
        int, msgspec.Meta(description="the server's clock when this was read, for the countdown")
    ]


class GiveawayStarted(Event, tag="giveaway.started", frozen=True, kw_only=True):
    """A giveaway opened; ``seed_sha256`` commits to the seed of its draw (the stream's
    ``giveaway`` state slot holds it until it ends)."""

    data: Giveaway
    media_time_ms: MediaTimeMs = None


class GiveawayEntriesData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    entries: Annotated[
        int, msgspec.Meta(description="only grows: a page keeps the highest it has seen")
    ]


class GiveawayEntries(Event, tag="giveaway.entries", frozen=True, kw_only=True):
    """The entry count, coalesced: a few times a second at most while entries come in."""

    data: GiveawayEntriesData


class GiveawayDrawn(Event, tag="giveaway.drawn", frozen=True, kw_only=True):
    """The draw: ``drawn`` (``winner_*``, the revealed ``seed``) or ``no_entries`` (the
    unit went back to stock)."""

    data: Giveaway
    media_time_ms: MediaTimeMs = None


class GiveawayCancelled(Event, tag="giveaway.cancelled", frozen=True, kw_only=True):
    """The host cancelled the giveaway; the unit went back to stock."""

    data: Giveaway
    media_time_ms: MediaTimeMs = None


class EntryResult(msgspec.Struct, frozen=True, kw_only=True):
    giveaway_id: str
    entered: Annotated[bool, msgspec.Meta(description="always true: you are in the draw")]
    replayed: Annotated[bool, msgspec.Meta(description="you had entered before")]
    entries: int


class GiveawayAudit(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to check a draw (see the README's "Giveaways")."""

    giveaway_id: str
    state: GiveawayState
    seed_sha256: str
    seed: Annotated[str | None, msgspec.Meta(description="null until the draw")]
    entrants: Annotated[
        list[str] | None,
        msgspec.Meta(description="the entrants' ids in entry order; null until the draw"),
    ]
    winner_index: int | None
    winner_id: str | None


class GiveawayStats(msgspec.Struct, frozen=True, kw_only=True):
    """A stream's giveaways in numbers, exact (read from the giveaways themselves)."""

    stream_id: str
    giveaways: Annotated[int, msgspec.Meta(description="giveaways run (started)")]
    running: int
    drawn: int
    no_entries: int
    cancelled: int
    entries: int
    entrants: Annotated[int, msgspec.Meta(description="distinct people who entered any")]
    winners: int
    prize_units: Annotated[int, msgspec.Meta(description="units given away (one per winner)")]
