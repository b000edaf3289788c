"""Slices of a replay: a VOD playlist of the segments that overlap a span of it, made of
the replay's own files (no re-encode). Product clips and video receipts are slices.

A slice starts on the segment holding its start and ends with the segment holding its
end (segments are whole: a slice is up to a segment longer than asked, each side). Its
segment URIs are ``prefix`` + the file's name, so a slice's playlist may be served from
anywhere: under the replay's own path (``/replay/{id}/``), or its signed path. A slice
of a replay with audio cuts the same segments of both tracks (:func:`slice_set`).
"""

from __future__ import annotations

from dataclasses import dataclass

from livecast.replay.manifest import SegmentEntry, VodPlaylist, render_vod
from livecast.replay.variants import Recording, VodSet, render_set

__all__ = ["Slice", "slice_entries", "slice_playlist", "slice_set"]


@dataclass(frozen=True, slots=True)
class Slice:
    entries: list[SegmentEntry]
    start_s: float  # where the first segment starts on the replay
    end_s: float  # where the last one ends
    first: int = 0  # the index of its first segment in the replay


def slice_entries(entries: list[SegmentEntry], start_s: float, end_s: float) -> Slice:
    """The segments of ``entries`` that overlap ``[start_s, end_s]`` (seconds from the
    replay's start); at least the one holding ``start_s`` if the replay has any."""
    picked: list[SegmentEntry] = []
    first = position = 0.0
    index = 0
    for at, entry in enumerate(entries):
        begins, position = position, position + entry.duration
        if position > start_s and (begins < end_s or not picked):
            if not picked:
                first, index = begins, at
            picked.append(entry)
        elif picked:
            break
    if not picked and entries:
        picked = [entries[-1]]
        first, index = position - entries[-1].duration, len(entries) - 1
    end = first + sum(e.duration for e in picked)
    return Slice(picked, round(first, 3), round(end, 3), index)


def slice_playlist(
    entries: list[SegmentEntry], start_s: float, end_s: float, prefix: str = ""
) -> VodPlaylist:
    """The VOD playlist (``EXT-X-ENDLIST``) of the slice ``[start_s, end_s]``."""
    return render_vod(slice_entries(entries, start_s, end_s).entries, prefix=prefix)


def slice_set(recording: Recording, start_s: float, end_s: float, prefix: str = "") -> VodSet:
    """The multivariant, video and audio VOD playlists of the slice ``[start_s, end_s]``
    of ``recording`` (the audio, if the replay has it, cut at the same segments)."""
    cut = slice_entries(recording.video, start_s, end_s)
    return render_set(recording, cut.first, cut.first + len(cut.entries), prefix=prefix)
