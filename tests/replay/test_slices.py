"""Slices of a replay's segment list: the segments overlapping a span, whole, in order."""

from __future__ import annotations

from livecast.replay.manifest import SegmentEntry
from livecast.replay.slices import slice_entries, slice_playlist

ENTRIES = [
    SegmentEntry(f"seg-0000000a-{i}.m4s", "init-0000000a-0.mp4", d, 100.0 + i, i == 3)
    for i, d in enumerate([2.0, 2.0, 1.5, 2.0, 2.0])
]


def test_a_slice_holds_the_segments_that_overlap_its_span() -> None:
    piece = slice_entries(ENTRIES, 2.5, 5.6)
    assert [e.name[-5:] for e in piece.entries] == ["1.m4s", "2.m4s", "3.m4s"]
    assert (piece.start_s, piece.end_s) == (2.0, 7.5)
    assert [e.name[-5:] for e in slice_entries(ENTRIES, 0.0, 2.0).entries] == ["0.m4s"]
    assert [e.name[-5:] for e in slice_entries(ENTRIES, 4.0, 4.0).entries] == ["2.m4s"]
    # past the end: the last segment; an empty replay: nothing
    assert [e.name[-5:] for e in slice_entries(ENTRIES, 99.0, 120.0).entries] == ["4.m4s"]
    assert slice_entries([], 0.0, 5.0).entries == []


def test_a_slice_playlist_is_vod_with_prefixed_uris_and_no_leading_discontinuity() -> None:
    text = slice_playlist(ENTRIES, 6.0, 8.0, "/replay/abc/").body.decode()
    lines = text.splitlines()
    assert lines[-1] == "#EXT-X-ENDLIST"
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in lines
    assert '#EXT-X-MAP:URI="/replay/abc/init-0000000a-0.mp4"' in lines
    assert [line for line in lines if not line.startswith("#")] == [
        "/replay/abc/seg-0000000a-3.m4s",
        "/replay/abc/seg-0000000a-4.m4s",
    ]
    assert "#EXT-X-DISCONTINUITY" not in lines
    assert "#EXT-X-DISCONTINUITY" in slice_playlist(ENTRIES, 5.0, 6.0).body.decode()
