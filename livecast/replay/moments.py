"""Where the products are on a replay: its stream's stored timeline
(:mod:`livecast.timeline.store`) placed on the replay's playback clock.

An entry's media time is the program date time of the picture that was live when the
host acted; :meth:`ReplayRecord.position` turns it into seconds from the replay's start
(through the recorded spans, so across a publisher's drop and return too). An entry
without media time (the stream had no media then: before the publisher came) is placed
by when it was recorded, which is the replay's start if the media came later.

* A **pinned span** runs from a pin to the next pin or unpin (or the replay's end): a
  product clip is made of each (:mod:`livecast.clips`).
* A **deal** is placed at its start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from livecast.replay.store import ReplayRecord
from livecast.timeline.store import MomentKind, TimelineEntry

__all__ = ["DealStart", "PinnedSpan", "deal_starts", "pinned_spans", "place"]


@dataclass(frozen=True, slots=True)
class PinnedSpan:
    sku: str
    start_s: float
    end_s: float
    media_start_ms: int  # the pin's media time (or when it was recorded)


@dataclass(frozen=True, slots=True)
class DealStart:
    sku: str
    deal_id: str
    at_s: float


def _media_ms(entry: TimelineEntry) -> int:
    return entry.media_time_ms if entry.media_time_ms is not None else entry.at_ms


def place(entry: TimelineEntry, record: ReplayRecord) -> float:
    """Where ``entry`` is on the replay, in seconds from its start."""
    return record.position(_media_ms(entry) / 1000)


def pinned_spans(entries: Iterable[TimelineEntry], record: ReplayRecord) -> list[PinnedSpan]:
    """Each pin on the timeline (oldest first), to the next pin or unpin, or the end;
    spans of no length (a pin replaced at once) are left out."""
    spans: list[PinnedSpan] = []
    open_pin: TimelineEntry | None = None

    def close(at_s: float) -> None:
        if open_pin is None or open_pin.sku is None:
            return
        start = place(open_pin, record)
        if at_s > start:
            spans.append(PinnedSpan(open_pin.sku, start, at_s, _media_ms(open_pin)))

    for entry in entries:
        if entry.kind is MomentKind.PIN_SET or entry.kind is MomentKind.PIN_CLEARED:
            close(place(entry, record))
            open_pin = entry if entry.kind is MomentKind.PIN_SET else None
    close(record.duration_s)
    return spans


def deal_starts(entries: Iterable[TimelineEntry], record: ReplayRecord) -> list[DealStart]:
    """Each deal's start on the timeline, oldest first."""
    return [
        DealStart(entry.sku, entry.deal_id, place(entry, record))
        for entry in entries
        if entry.kind is MomentKind.DEAL_STARTED
        and entry.sku is not None
        and entry.deal_id is not None
    ]
