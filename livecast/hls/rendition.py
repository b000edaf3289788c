"""One rendition of a packaged stream: one CMAF track (video or audio) as an LL-HLS
media playlist, with its init segments, segments and parts.

The :class:`~livecast.hls.packager.Packager` decides where parts and segments are cut
(at the video's frames) and hands each rendition its parts; a rendition keeps what is
served and renders its playlist:

* a segment's bytes are its parts' bytes; both are immutable once made; parts are
  numbered through the run (not per segment), so the hinted next part exists whether or
  not a keyframe makes it the first of a new segment;
* the playlist keeps ``window`` complete segments and lists parts for the newest ones
  (the last three target durations), then ``EXT-X-PRELOAD-HINT`` for the next part;
* ``EXT-X-RENDITION-REPORT`` says where the stream's other renditions are (their newest
  part, at the same moment);
* every rendering is kept under the part it ends with, so a blocking request
  (``_HLS_msn``/``_HLS_part``) gets the playlist as it was when that part appeared:
  identical requests get identical bytes, which is what lets a CDN collapse them.

Two things happen in one place each, per rendition: an init segment is made
(:meth:`Rendition.new_init`) and a segment completes (:meth:`Rendition.close_segment`);
the media playlist is rendered by :meth:`Rendition.render`.

Names carry the rendition and the run: ``video-{run}.m3u8`` with ``init-``, ``seg-`` and
``part-{run}-{n}`` files, ``audio-{run}.m3u8`` with ``audio-init-``, ``audio-seg-`` and
``audio-part-`` ones.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest
from livecast.hls import _fmp4
from livecast.hls.dateranges import DateRanges, Playlist

__all__ = ["PackagerSettings", "Part", "Playlist", "Rendition", "Segment", "SegmentSink"]

Kind = Literal["video", "audio"]
# a blocking request may ask this many segments past the newest one (RFC 8216bis 6.2.5.2)
_MSN_AHEAD: Final = 2


@dataclass(frozen=True, slots=True)
class PackagerSettings:
    part_s: float = 0.5
    segment_s: float = 2.0
    window: int = 6  # complete segments listed


@dataclass(slots=True)
class Part:
    msn: int
    index: int  # within its segment
    number: int  # within the run: what its name carries
    duration: float  # seconds
    independent: bool
    data: bytes
    name: str


@dataclass(slots=True)
class Segment:
    msn: int
    name: str
    init_name: str
    program_date_time: float  # unix time of its first frame
    discontinuity: bool
    parts: list[Part] = field(default_factory=list)
    duration: float = 0.0
    data: bytes | None = None  # once complete

    @property
    def complete(self) -> bool:
        return self.data is not None


class SegmentSink(Protocol):
    """Told of each init segment and each complete segment a rendition makes (on the
    thread that feeds it), e.g. to keep them past the playlist window. ``rendition``
    names the rendition (``main`` for the video, ``audio``)."""

    def init_made(self, rendition: str, name: str, data: bytes) -> None: ...

    def segment_made(self, rendition: str, segment: Segment) -> None: ...


class Rendition:
    """One track's media playlist and files; fed by the packager, read by the handlers."""

    def __init__(self, kind: Kind, run: str, settings: PackagerSettings) -> None:
        self.kind = kind
        self.run = run
        self.settings = settings
        self.playlist_name = f"{kind}-{run}.m3u8"
        self.prefix = "" if kind == "video" else "audio-"
        self._track_id = _fmp4.VIDEO_TRACK_ID if kind == "video" else _fmp4.AUDIO_TRACK_ID
        self.segments: list[Segment] = []  # complete, oldest first
        self.open: Segment | None = None
        self._parts: dict[str, Part] = {}
        self.parts_made = 0
        self._fragments = 0
        # init segments by name; the current one and its track
        self._inits: dict[str, bytes] = {}
        self.init_name = ""
        self.track: _fmp4.VideoTrack | _fmp4.AudioTrack | None = None
        self._init_count = 0
        # what is served
        self._discontinuities = 0  # of segments that left the window
        self._max_segment = settings.segment_s
        self.target_duration = max(1, math.ceil(self._max_segment))  # EXT-X-TARGETDURATION
        self._answers: dict[tuple[int, int], Playlist] = {}
        self._segment_ends: dict[int, tuple[int, int]] = {}
        self._latest: tuple[int, int] | None = None
        self._current: Playlist | None = None
        self.ended = False
        # the stream's other renditions, reported at the end of this one's playlist
        self.others: tuple[Rendition, ...] = ()
        # the commerce events as EXT-X-DATERANGE tags, and the delta updates (the video's
        # are fed by the packaging; the audio's stay empty: delta updates only)
        self.dateranges = DateRanges()
        self._sink: SegmentSink | None = None

    @property
    def sink_name(self) -> str:
        """The rendition's name for a :class:`SegmentSink`: ``main`` or ``audio``."""
        return "main" if self.kind == "video" else self.kind

    def attach(self, sink: SegmentSink) -> None:
        """Tell ``sink`` of every init segment and segment from now on, and of the
        current init segment now."""
        self._sink = sink
        if self.init_name:
            sink.init_made(self.sink_name, self.init_name, self._inits[self.init_name])

    # -- fed by the packager --------------------------------------------------------------

    def new_init(self, track: _fmp4.VideoTrack | _fmp4.AudioTrack) -> None:
        """An init segment was made: the segments opened from now on name it."""
        self._init_count += 1
        self.init_name = f"{self.prefix}init-{self.run}-{self._init_count - 1}.mp4"
        self._inits[self.init_name] = _fmp4.init_segment(track)
        self.track = track
        if self._sink is not None:
            self._sink.init_made(self.sink_name, self.init_name, self._inits[self.init_name])

    def open_segment(self, msn: int, program_date_time: float, discontinuity: bool) -> None:
        self.open = Segment(
            msn=msn,
            name=f"{self.prefix}seg-{self.run}-{msn}.m4s",
            init_name=self.init_name,
            program_date_time=program_date_time,
            discontinuity=discontinuity,
        )

    def add_part(
        self, base_time: int, samples: Sequence[_fmp4.Sample], duration: float, independent: bool
    ) -> None:
        """A part of the open segment: ``samples`` from decode time ``base_time``."""
        segment = self.open
        assert segment is not None
        self._fragments += 1
        index = len(segment.parts)
        part = Part(
            msn=segment.msn,
            index=index,
            number=self.parts_made,
            duration=duration,
            independent=independent,
            data=_fmp4.fragment(self._fragments, self._track_id, base_time, samples),
            name=f"{self.prefix}part-{self.run}-{self.parts_made}.m4s",
        )
        self.parts_made += 1
        segment.parts.append(part)
        segment.duration += part.duration
        self._parts[part.name] = part
        self._latest = (segment.msn, index)

    def close_segment(self) -> Segment | None:
        """The open segment completed (None if it had no part): listed whole from now on,
        and the oldest beyond the window let go."""
        segment, self.open = self.open, None
        if segment is None or not segment.parts:
            return None
        segment.data = b"".join(p.data for p in segment.parts)
        self.segments.append(segment)
        self._max_segment = max(self._max_segment, segment.duration)
        self.target_duration = max(1, math.ceil(self._max_segment))
        self._segment_ends[segment.msn] = (segment.msn, len(segment.parts) - 1)
        while len(self.segments) > self.settings.window:
            gone = self.segments.pop(0)
            self._discontinuities += gone.discontinuity
            self._segment_ends.pop(gone.msn, None)
            for part in gone.parts:
                self._parts.pop(part.name, None)
                self._answers.pop((part.msn, part.index), None)
            if gone.init_name != self.segments[0].init_name:
                self._inits.pop(gone.init_name, None)  # no listed segment needs it
        if self._sink is not None:
            self._sink.segment_made(self.sink_name, segment)
        return segment

    def publish(self) -> None:
        """Render the playlist; kept under the newest part for the blocking requests."""
        playlist = self.render()
        self._current = playlist
        if self._latest is not None:
            self._answers[self._latest] = playlist

    def render(self) -> Playlist:
        """The media playlist as it stands."""
        settings = self.settings
        target = self.target_duration
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:6",
            f"#EXT-X-TARGETDURATION:{target}",
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * settings.part_s:.3f}",
            f"#EXT-X-PART-INF:PART-TARGET={settings.part_s:.3f}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        listed = list(self.segments)
        if self.open is not None and self.open.parts:
            listed.append(self.open)
        first = listed[0].msn if listed else 0
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{first}")
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuities}")
        # parts are listed for the segments within the last three target durations
        with_parts = set()
        span = 0.0
        for segment in reversed(listed):
            if span >= 3 * target:
                break
            with_parts.add(segment.msn)
            span += segment.duration
        init = ""
        for segment in listed:
            if segment.discontinuity and segment is not listed[0]:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.init_name != init:
                init = segment.init_name
                lines.append(f'#EXT-X-MAP:URI="{init}"')
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_rfc3339(segment.program_date_time)}")
            if segment.msn in with_parts:
                for part in segment.parts:
                    independent = ",INDEPENDENT=YES" if part.independent else ""
                    lines.append(
                        f'#EXT-X-PART:DURATION={part.duration:.5f},URI="{part.name}"{independent}'
                    )
            if segment.complete:
                lines.append(f"#EXTINF:{segment.duration:.5f},")
                lines.append(segment.name)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        elif listed:
            hint = f"{self.prefix}part-{self.run}-{self.parts_made}.m4s"
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint}"')
        for other in self.others:  # where the others are, for a player that switches
            if other._latest is not None and not self.ended:
                last_msn, last_part = other._latest
                lines.append(
                    f'#EXT-X-RENDITION-REPORT:URI="{other.playlist_name}",'
                    f"LAST-MSN={last_msn},LAST-PART={last_part}"
                )
        return self.dateranges.playlist(lines, target)

    def next_part(self) -> tuple[int, int]:
        """The (msn, index) the next part will most likely have."""
        segment = self.open
        if segment is not None:
            return segment.msn, len(segment.parts)
        return (self.segments[-1].msn + 1 if self.segments else 0), 0

    # -- read by the HTTP handlers ------------------------------------------------------

    def playlist(self) -> Playlist | None:
        """The newest playlist, None before the first part."""
        return self._current

    def blocking_playlist(self, msn: int, part: int | None) -> Playlist | None:
        """The playlist once segment ``msn`` (or its part ``part``) exists, else None.

        Raises :class:`BadRequest` for a segment too far ahead (RFC 8216bis 6.2.5.2).
        """
        if msn < 0 or (part is not None and part < 0):
            raise BadRequest(
                "_HLS_msn and _HLS_part are not negative", code=ErrorCode.INVALID_HLS_REQUEST
            )
        open_msn = self.next_part()[0]
        if msn > open_msn + _MSN_AHEAD:
            raise BadRequest(
                f"_HLS_msn {msn} is more than {_MSN_AHEAD} past the newest segment {open_msn}",
                code=ErrorCode.INVALID_HLS_REQUEST,
            )
        if self.ended:
            return self._current
        if part is None:
            key = self._segment_ends.get(msn)
            if key is None:
                return self._current if self.segments and msn < self.segments[0].msn else None
        else:
            key = (msn, part)
            end = self._segment_ends.get(msn)
            if end is not None and part > end[1]:
                key = (msn + 1, 0)  # past the segment's last part: the next one's first
        latest = self._latest
        if latest is None or key > latest:
            return None
        return self._answers.get(key, self._current)

    def file(self, name: str) -> bytes | None:
        """An init segment, segment or part of this rendition by name, None if there is
        none (any more)."""
        local = name.removeprefix(self.prefix)
        if local.startswith("init-"):
            return self._inits.get(name)
        if local.startswith("part-"):
            part = self._parts.get(name)
            return part.data if part is not None else None
        for segment in self.segments:
            if segment.name == name:
                return segment.data
        return None

    def may_come(self, number: int) -> bool:
        """Whether part ``number`` is not made yet but comes next (the hinted part) or
        right after it."""
        return not self.ended and self.parts_made <= number <= self.parts_made + 1


def _rfc3339(unix: float) -> str:
    moment = dt.datetime.fromtimestamp(unix, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
