"""Placing a stream's timeline on its replay: pinned spans and deal starts."""

from __future__ import annotations

from livecast.replay.moments import deal_starts, pinned_spans, place
from livecast.replay.store import ReplayRecord
from livecast.timeline.store import MomentKind, TimelineEntry

# media from unix 1000 s (replay 0 s) to 1010 s; the publisher dropped, came back at
# 1020 s (replay 10 s), and the replay ends at 15 s
RECORD = ReplayRecord(
    stream_id="s1",
    node_id="n1",
    node_url="",
    started_ms=1_000_000,
    ended_ms=1_025_000,
    duration_s=15.0,
    segments=15,
    poster=True,
    spans=[(1000.0, 0.0), (1020.0, 10.0)],
    open=0,
)


def _entry(
    kind: MomentKind, media_s: float | None, sku: str | None = None, **more: str
) -> TimelineEntry:
    at_ms = int((media_s or 990.0) * 1000)
    return TimelineEntry(
        kind=kind,
        media_time_ms=int(media_s * 1000) if media_s is not None else None,
        sku=sku,
        id=f"{at_ms}-0",
        at_ms=at_ms,
        **more,  # type: ignore[arg-type]
    )


def test_each_pin_runs_to_the_next_pin_or_unpin_or_the_end() -> None:
    entries = [
        _entry(MomentKind.PIN_SET, None, "A"),  # before the media: at the start
        _entry(MomentKind.STOCK, 1001.0, "A"),
        _entry(MomentKind.PIN_SET, 1002.5, "B"),
        _entry(MomentKind.PIN_CLEARED, 1004.0, "B"),
        _entry(MomentKind.PIN_SET, 1021.0, "C"),  # after the publisher came back
    ]
    spans = [(s.sku, s.start_s, s.end_s) for s in pinned_spans(entries, RECORD)]
    assert spans == [("A", 0.0, 2.5), ("B", 2.5, 4.0), ("C", 11.0, 15.0)]
    assert place(entries[0], RECORD) == 0.0
    # a pin replaced at once has no span
    twice = [_entry(MomentKind.PIN_SET, 1003.0, "A"), _entry(MomentKind.PIN_SET, 1003.0, "B")]
    assert [s.sku for s in pinned_spans(twice, RECORD)] == ["B"]


def test_deals_are_placed_at_their_start() -> None:
    entries = [
        _entry(MomentKind.DEAL_STARTED, 1005.0, "A", deal_id="d1"),
        _entry(MomentKind.DEAL_ENDED, 1006.0, "A", deal_id="d1"),
        _entry(MomentKind.DEAL_STARTED, 1030.0, "B", deal_id="d2"),  # past the end
    ]
    assert [(d.deal_id, d.at_s) for d in deal_starts(entries, RECORD)] == [
        ("d1", 5.0),
        ("d2", 15.0),
    ]
