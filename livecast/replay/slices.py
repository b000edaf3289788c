"""Slices of a replay: a VOD playlist of the segments that overlap a span of it, made of
the replay's own files (no re-encode). Product clips and video receipts are slices.

A slice starts on the segment holding its start and ends with the segment holding its
end (segments are whole: a slice is up to a segment longer than asked, each side). Its
segment URIs are ``prefix`` + the file's name, so a slice's playlist may be served from
anywhere: under the replay's own path (``/replay/{id}/``), or its signed path.
"""

from __future__ import annotations

from dataclasses import dataclass

from livecast.replay.manifest import SegmentEntry, VodPlaylist, render_vod

__all__ = ["Slice", "slice_entries", "slice_playlist"]


@dataclass(frozen=True, slots=True)
class Slice:
    entries: list[SegmentEntry]
    start_s: float  # where the first segment starts on the replay
    end_s: float  # where the last one ends


def slice_entries(entries: list[SegmentEntry], start_s: float, end_s: float) -> Slice:
    """The segments of ``entries`` that overlap ``[start_s, end_s]`` (seconds from the
    replay's start); at least the one holding ``start_s`` if the replay has any."""
    picked: list[SegmentEntry] = []
    first = position = 0.0
    for entry in entries:
        begins, position = position, position + entry.duration
        if position > start_s and (begins < end_s or not picked):
            if not picked:
                first = begins
            picked.append(entry)
        elif picked:
            break
    if not picked and entries:
        picked = [entries[-1]]
        first = position - entries[-1].duration
    end = first + sum(e.duration for e in picked)
    return Slice(picked, round(first, 3), round(end, 3))


def slice_playlist(
    entries: list[SegmentEntry], start_s: float, end_s: float, prefix: str = ""
) -> VodPlaylist:
    """The VOD playlist (``EXT-X-ENDLIST``) of the slice ``[start_s, end_s]``."""
    return render_vod(slice_entries(entries, start_s, end_s).entries, prefix=prefix)
