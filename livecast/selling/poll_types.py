"""What a poll is on the wire: its states, the document every reader gets, its live
events, a vote's answer and the numbers (see :mod:`livecast.selling.polls` for what
moves it)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

from livecast.events import Event
from livecast.timeline import MediaTimeMs

__all__ = [
    "Poll",
    "PollCancelled",
    "PollClosed",
    "PollStarted",
    "PollState",
    "PollStats",
    "PollTotals",
    "PollTotalsData",
    "VoteResult",
]


class PollState(StrEnum):
    RUNNING = "running"
    CLOSED = "closed"
    CANCELLED = "cancelled"

    def can_become(self, target: PollState) -> bool:
        return target in _NEXT[self]

    @property
    def is_final(self) -> bool:
        return not _NEXT[self]


# The moves the scripts make (start makes a running poll); nothing else moves one.
_NEXT: dict[PollState, frozenset[PollState]] = {
    PollState.RUNNING: frozenset({PollState.CLOSED, PollState.CANCELLED}),
    PollState.CLOSED: frozenset(),
    PollState.CANCELLED: frozenset(),
}


class Poll(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    stream_id: str
    question: str
    options: list[str]
    state: PollState
    counts: Annotated[
        list[int], msgspec.Meta(description="votes per option, in the order of options")
    ]
    voters: Annotated[int, msgspec.Meta(description="people with a vote (one each)")]
    votes: Annotated[int, msgspec.Meta(description="votes cast, changes of mind included")]
    starts_at_ms: int
    ends_at_ms: Annotated[
        int | None, msgspec.Meta(description="when it closes by itself; null: the host closes it")
    ]
    closed_at_ms: int | None
    server_ms: Annotated[
        int, msgspec.Meta(description="the server's clock when this was read, for the countdown")
    ]


class PollStarted(Event, tag="poll.started", frozen=True, kw_only=True):
    """A poll opened (the stream's ``poll`` state slot holds it until it closes)."""

    data: Poll
    media_time_ms: MediaTimeMs = None


class PollTotalsData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The live totals, coalesced: a few times a second at most while votes come in."""

    id: str
    counts: list[int]
    voters: int
    votes: Annotated[
        int,
        msgspec.Meta(
            description="votes cast so far; it only grows, so a page keeps the totals with "
            "the highest (events from different nodes may arrive out of order)"
        ),
    ]


class PollTotals(Event, tag="poll.totals", frozen=True, kw_only=True):
    """The running poll's totals changed."""

    data: PollTotalsData


class PollClosed(Event, tag="poll.closed", frozen=True, kw_only=True):
    """The poll closed (the host closed it, or its time was up): the final tally."""

    data: Poll
    media_time_ms: MediaTimeMs = None


class PollCancelled(Event, tag="poll.cancelled", frozen=True, kw_only=True):
    """The host cancelled the poll: no result is announced."""

    data: Poll
    media_time_ms: MediaTimeMs = None


class VoteResult(msgspec.Struct, frozen=True, kw_only=True):
    poll_id: str
    option: Annotated[int, msgspec.Meta(description="your vote: the option's index")]
    changed: Annotated[
        bool, msgspec.Meta(description="false: you had already voted for this option")
    ]
    counts: list[int]
    voters: int
    votes: int


class PollStats(msgspec.Struct, frozen=True, kw_only=True):
    """A stream's polls in numbers, exact (read from the polls themselves)."""

    stream_id: str
    polls: Annotated[int, msgspec.Meta(description="polls run (started)")]
    running: int
    closed: int
    cancelled: int
    votes: Annotated[int, msgspec.Meta(description="votes cast, changes of mind included")]
    voters: Annotated[int, msgspec.Meta(description="distinct people who voted in any")]
