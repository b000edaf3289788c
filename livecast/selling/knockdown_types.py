"""What a price knock-down is on the wire: its states, the document every reader gets,
its live events, a buy's answer and the numbers (see :mod:`livecast.selling.knockdowns`
for what moves it)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

from livecast.events import Event
from livecast.inventory.money import Money
from livecast.timeline import MediaTimeMs

__all__ = [
    "Knockdown",
    "KnockdownBuy",
    "KnockdownEnded",
    "KnockdownMode",
    "KnockdownProgress",
    "KnockdownStarted",
    "KnockdownState",
    "KnockdownStats",
    "KnockdownUpdated",
    "TapResult",
]


class KnockdownState(StrEnum):
    RUNNING = "running"
    # Its last unit (or the floor price's quantity) went.
    SOLD_OUT = "sold_out"
    # The host ended it, or its deadline came.
    ENDED = "ended"

    def can_become(self, target: KnockdownState) -> bool:
        return target in _NEXT[self]

    @property
    def is_final(self) -> bool:
        return not _NEXT[self]


# The moves the scripts make (start makes a running knock-down); nothing else moves one.
_NEXT: dict[KnockdownState, frozenset[KnockdownState]] = {
    KnockdownState.RUNNING: frozenset({KnockdownState.SOLD_OUT, KnockdownState.ENDED}),
    KnockdownState.SOLD_OUT: frozenset(),
    KnockdownState.ENDED: frozenset(),
}


class KnockdownMode(StrEnum):
    # The price drops a step every taps_per_step taps of the audience.
    TAPS = "taps"
    # The price drops a step every step_every_s seconds.
    TIME = "time"


class Knockdown(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    stream_id: str
    seller_id: str
    sku: str
    title: str
    image_url: str | None
    state: KnockdownState
    mode: KnockdownMode
    start_price: Money
    step: Money
    floor: Money
    price: Annotated[Money, msgspec.Meta(description="what a buy pays now")]
    next_price: Annotated[
        Money | None, msgspec.Meta(description="the price after the next step; null: at the floor")
    ]
    level: Annotated[int, msgspec.Meta(description="steps taken from the start price")]
    taps_per_step: Annotated[int, msgspec.Meta(description="taps mode: taps per step (else 0)")]
    step_every_s: Annotated[float, msgspec.Meta(description="time mode: seconds per step")]
    taps: Annotated[int, msgspec.Meta(description="every tap so far")]
    taps_to_next: Annotated[
        int, msgspec.Meta(description="taps mode: taps still needed for the next step (0: none)")
    ]
    next_step_at_ms: Annotated[
        int | None, msgspec.Meta(description="time mode: when the price drops next")
    ]
    quantity: int
    left: Annotated[int, msgspec.Meta(description="units not yet taken")]
    per_price: Annotated[int, msgspec.Meta(description="most units sold at one price (0: any)")]
    price_left: Annotated[
        int | None, msgspec.Meta(description="units left at this price (null: no such limit)")
    ]
    per_buyer_limit: int
    sold: Annotated[int, msgspec.Meta(description="units bought (cart holds made)")]
    steps: int
    starts_at_ms: int
    ends_at_ms: int
    ended_at_ms: int | None
    pay_within_s: Annotated[int, msgspec.Meta(description="how long a buyer's cart hold lasts")]
    server_ms: Annotated[
        int, msgspec.Meta(description="the server's clock when this was read, for the countdown")
    ]


class KnockdownStarted(Event, tag="knockdown.started", frozen=True, kw_only=True):
    """A knock-down opened (the stream's ``knockdown`` state slot holds it until it ends)."""

    data: Knockdown
    media_time_ms: MediaTimeMs = None


class KnockdownProgress(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The price, the taps and the units now."""

    id: str
    price: Money
    next_price: Money | None
    level: int
    taps: int
    taps_to_next: int
    next_step_at_ms: int | None
    left: int
    price_left: int | None
    sold: int
    server_ms: int


class KnockdownUpdated(Event, tag="knockdown.updated", frozen=True, kw_only=True):
    """The price dropped, units were bought, or the audience tapped (taps are coalesced:
    a few updates a second at most)."""

    data: KnockdownProgress
    media_time_ms: MediaTimeMs = None


class KnockdownEnded(Event, tag="knockdown.ended", frozen=True, kw_only=True):
    """The knock-down ended: ``sold_out`` or ``ended`` (the host, or its deadline)."""

    data: Knockdown
    media_time_ms: MediaTimeMs = None


class KnockdownBuy(msgspec.Struct, frozen=True, kw_only=True):
    knockdown_id: str
    hold_id: Annotated[str, msgspec.Meta(description="your cart line: check out as usual")]
    price: Money
    expires_at_ms: int
    left: int
    replayed: Annotated[bool, msgspec.Meta(description="this key bought before")]


class TapResult(msgspec.Struct, frozen=True, kw_only=True):
    price: Money
    taps: int
    taps_to_next: int


class KnockdownStats(msgspec.Struct, frozen=True, kw_only=True):
    """A stream's knock-downs in numbers, exact (read from the knock-downs themselves)."""

    stream_id: str
    runs: int
    running: int
    sold_out: int
    ended: int
    taps: int
    steps: Annotated[int, msgspec.Meta(description="price drops")]
    units: Annotated[int, msgspec.Meta(description="units bought (cart holds made)")]
    gmv: Annotated[
        list[Money],
        msgspec.Meta(
            description="per currency, the prices of the units bought (their holds may "
            "still be unpaid: the stream's sales stats count what was paid)"
        ),
    ]
