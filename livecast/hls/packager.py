"""The LL-HLS packager of one stream: encoded frames in, fMP4 parts, segments and playlists out.

The relay hands every frame it receives to :meth:`Packager.push_video` and
:meth:`Packager.push_audio`, on its sources' continuous timelines (90 kHz video, 48 kHz
Opus), with the frame's monotonic arrival time; :meth:`Packager.publisher_changed` says
a new publisher's frames follow. Nothing is awaited and nothing is decoded but the
audio: H.264 access units are rewrapped (Annex B to length-prefixed) as they are, Opus
goes through one AAC encoder per stream (:mod:`livecast.hls._aac`), in a thread of its
own with ``audio_thread`` (its frames join the open part when they come back, a
millisecond or so later: each part's audio keeps its own decode times).

Layout (RFC 8216bis, fMP4 with video and audio in one file; see _fmp4.py):

* a *segment* starts at an H.264 keyframe once the open one reached ``segment_s``
  (the packager asks the publisher for a keyframe when one is due and none came);
* a *part* is one ``moof`` + ``mdat`` of ``part_s`` at most: it closes before the frame
  that would make it longer (a single frame longer than a part, a stall, gets the
  previous frame's duration and the next part starts at its true time); a part that
  starts a segment starts at a keyframe and is ``INDEPENDENT=YES``;
* a segment's bytes are its parts' bytes; both are immutable once made; parts are
  numbered through the run (not per segment), so the hinted next part exists whether
  or not a keyframe makes it the first of a new segment;
* the init segment (``EXT-X-MAP``) changes when the parameter sets do; a publisher's
  drop and return continues the playlist after an ``EXT-X-DISCONTINUITY``;
* the playlist keeps ``window`` complete segments and lists parts for the newest ones
  (the last three target durations), then ``EXT-X-PRELOAD-HINT`` for the next part.

Every part made renders the playlist once; each rendering is kept under the part it
ends with, so a blocking request (``_HLS_msn``/``_HLS_part``) gets the playlist as it
was when that part appeared: identical requests get identical bytes, which is what lets
a CDN collapse them.

URLs carry a per-run id (``run``): a new packager for the same stream (its media ended
here and started again) never reuses a name that a cache may hold forever.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest
from livecast.hls import _fmp4
from livecast.hls._aac import CHANNELS, SAMPLE_RATE, AacEncoder, AacFrame, AacThread
from livecast.hls.dateranges import DateRanges, Playlist
from livecast.ingest._bitstream import h264_parameter_sets, h264_picture_size

__all__ = ["Packager", "PackagerSettings", "Part", "Playlist", "Segment", "SegmentSink"]

VIDEO_CLOCK: Final = 90_000
_SIGNED: Final = 1 << 31
_U32: Final = 0xFFFFFFFF
_START: Final = b"\x00\x00\x01"
# a blocking request may ask this many segments past the newest one (RFC 8216bis 6.2.5.2)
_MSN_AHEAD: Final = 2
# AAC frames kept for the next part: about 5 s (video that stopped cuts no parts)
_MAX_AUDIO_HELD: Final = 240
# waiting requests' futures kept before those that gave up are dropped (at least)
_PRUNE_WAITERS: Final = 4096


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
    """Told of each init segment and each complete segment a packager makes (on the
    thread that feeds it), e.g. to keep them past the playlist window. ``rendition``
    names the packager's rendition."""

    def init_made(self, rendition: str, name: str, data: bytes) -> None: ...

    def segment_made(self, rendition: str, segment: Segment) -> None: ...


def _nal_units(data: bytes) -> list[bytes]:
    units = []
    pos = data.find(_START)
    while pos != -1:
        start = pos + 3
        pos = data.find(_START, start)
        end = len(data) if pos == -1 else pos
        while end > start and data[end - 1] == 0:
            end -= 1
        if end > start:
            units.append(data[start:end])
    return units


class Packager:
    """One stream's LL-HLS packaging; fed on the event loop, read by the HTTP handlers."""

    def __init__(
        self,
        settings: PackagerSettings,
        *,
        audio: bool,
        request_keyframe: Callable[[], None] | None = None,
        run: str | None = None,
        audio_thread: bool = False,
    ) -> None:
        """With ``audio``, Opus in and AAC out; encoded on the calling thread, or with
        ``audio_thread`` in a thread of its own (made now, so on the event loop) that
        :meth:`finish` stops and :meth:`join` waits for."""
        self.settings = settings
        self.run = run or secrets.token_hex(4)
        self._request_keyframe = request_keyframe
        self._part_ticks = round(settings.part_s * VIDEO_CLOCK)
        self._segment_ticks = round(settings.segment_s * VIDEO_CLOCK)
        self._aac: AacEncoder | AacThread | None = None
        if audio:
            self._aac = AacThread(self._take_aac, self.run) if audio_thread else AacEncoder()
        # timeline
        self._origin: float | None = None  # monotonic arrival of the first keyframe
        self._wall_offset = 0.0  # unix time - monotonic time
        self._resync = False  # a new publisher: re-anchor at its first keyframe
        self._discontinuity = False
        self._video_ts = 0  # relay timestamp of the last video frame
        self._video_dts = -1  # its decode time here
        self._nominal = VIDEO_CLOCK // 30  # the last steady frame duration
        self._audio_ts: int | None = None
        self._audio_dts = 0
        # the frame whose duration is known when the next one arrives
        self._held: tuple[int, bytes, bool] | None = None
        # the open part and segment
        self._samples: list[_fmp4.Sample] = []
        self._part_start = 0
        self._part_independent = False
        self._aac_frames: list[tuple[int, bytes]] = []
        self._segment: Segment | None = None
        self._segment_start = 0
        self._last_request = -math.inf
        self._fragments = 0
        self._parts_made = 0
        # init segments by name; the current one
        self._inits: dict[str, bytes] = {}
        self._init_name = ""
        self._init_sets: tuple[bytes, bytes] | None = None
        self._init_count = 0
        # what is served
        self.segments: list[Segment] = []  # complete, oldest first
        self._parts: dict[str, Part] = {}
        self._discontinuities = 0  # of segments that left the window
        self._max_segment = settings.segment_s
        self.target_duration = max(1, math.ceil(self._max_segment))  # EXT-X-TARGETDURATION
        self._renditions: dict[tuple[int, int], Playlist] = {}
        self._segment_ends: dict[int, tuple[int, int]] = {}
        self._latest: tuple[int, int] | None = None
        self._current: Playlist | None = None
        # the futures of the requests waiting for the next change; when to prune it
        self._waiters: list[asyncio.Future[None]] = []
        self._prune_at = _PRUNE_WAITERS
        self._dirty = False
        self.ended = False
        self.rendition = "main"
        self.sink: SegmentSink | None = None  # set before the first frame
        # the stream's commerce events, as EXT-X-DATERANGE tags (fed by the packaging)
        self.dateranges = DateRanges()

    # -- fed by the relay ------------------------------------------------------------

    def publisher_changed(self) -> None:
        """A new publisher's frames follow: continue after a discontinuity."""
        if self._origin is not None:
            self._resync = True

    def push_video(self, data: bytes, timestamp: int, keyframe: bool, arrived: float) -> None:
        """One H.264 access unit (Annex B) at ``timestamp`` (90 kHz, the relay's timeline)."""
        if self.ended:
            return
        units = _nal_units(data)
        sets = h264_parameter_sets(data) if keyframe else None
        if self._origin is None or self._resync:
            if sets is None:
                return  # wait for a keyframe that carries its parameter sets
            try:
                size = h264_picture_size(sets[0])
            except ValueError:
                return
            if self._origin is None:
                self._origin = arrived
                self._wall_offset = time.time() - time.monotonic()
                dts = 0
            else:
                self._close_at_gap()
                dts = max(round((arrived - self._origin) * VIDEO_CLOCK), self._video_dts + 1)
                self._discontinuity = True
                self._audio_ts = None
            self._resync = False
            if sets != self._init_sets:
                self._new_init(sets, size)
        else:
            delta = ((timestamp - self._video_ts + _SIGNED) & _U32) - _SIGNED
            dts = self._video_dts + max(delta, 1)
            if sets is not None and sets != self._init_sets:
                try:
                    size = h264_picture_size(sets[0])
                except ValueError:
                    sets = None
                else:
                    self._take_held(dts)
                    self._close_part()
                    self._close_segment()
                    self._new_init(sets, size)
        self._video_ts = timestamp
        self._video_dts = dts
        gap = self._take_held(dts)
        if self._segment is None:
            if not keyframe:
                return
            self._open_segment(dts, arrived)
        elif keyframe and (self._discontinuity or dts - self._segment_start >= self._segment_ticks):
            self._close_part()
            self._close_segment()
            self._open_segment(dts, arrived)
        elif gap or dts - self._part_start + self._nominal > self._part_ticks:
            self._close_part()
        if not self._samples:
            self._part_start = dts
            self._part_independent = keyframe
        self._held = (dts, _fmp4.annex_b_to_avcc(units), keyframe)
        if not keyframe and dts - self._segment_start >= self._segment_ticks:
            self._ask_keyframe(arrived)
        self._publish()

    def push_audio(self, data: bytes, timestamp: int, keyframe: bool, arrived: float) -> None:
        """One Opus frame at ``timestamp`` (48 kHz, the relay's timeline)."""
        aac = self._aac
        if aac is None or self.ended or self._origin is None or self._resync:
            return
        if self._audio_ts is None:
            dts = round((arrived - self._origin) * SAMPLE_RATE)
        else:
            delta = ((timestamp - self._audio_ts + _SIGNED) & _U32) - _SIGNED
            dts = self._audio_dts + delta
        self._audio_ts = timestamp
        self._audio_dts = dts
        if isinstance(aac, AacThread):
            aac.push(data, dts)
        else:
            self._take_aac(aac.encode(data, dts))

    def _take_aac(self, frames: list[AacFrame]) -> None:
        if self.ended:
            return
        self._aac_frames.extend(frames)
        if len(self._aac_frames) > _MAX_AUDIO_HELD:  # no video to cut parts with
            del self._aac_frames[: len(self._aac_frames) - _MAX_AUDIO_HELD]

    def finish(self) -> None:
        """The stream's media ended here: the playlist gets ``EXT-X-ENDLIST`` (and the
        audio thread, if any, is told to stop)."""
        if self.ended:
            return
        self._close_at_gap()
        self.ended = True
        if isinstance(self._aac, AacThread):
            self._aac.close()
        self._publish(force=True)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the audio thread (if any) to stop, once
        :meth:`finish` was called; whether it has (blocking: call it off the loop)."""
        return not isinstance(self._aac, AacThread) or self._aac.join(timeout)

    # -- building -----------------------------------------------------------------------

    def _take_held(self, dts: int) -> bool:
        """Give the held frame its duration (up to ``dts``); True if that was a stall."""
        held, self._held = self._held, None
        if held is None:
            return False
        duration = dts - held[0]
        stall = duration > self._part_ticks
        if stall:
            duration = self._nominal
        else:
            self._nominal = duration
        self._samples.append(_fmp4.Sample(held[1], duration, held[2]))
        return stall

    def _close_at_gap(self) -> None:
        """Close what is open, the held frame given the steady frame duration."""
        if self._held is not None:
            self._take_held(self._held[0] + self._nominal)
        self._close_part()
        self._close_segment()

    def _new_init(self, sets: tuple[bytes, bytes], size: tuple[int, int]) -> None:
        video = _fmp4.VideoTrack(sps=sets[0], pps=sets[1], width=size[0], height=size[1])
        audio = None
        if self._aac is not None:
            audio = _fmp4.AudioTrack(self._aac.audio_specific_config, SAMPLE_RATE, CHANNELS)
        self._init_count += 1
        self._init_name = f"init-{self.run}-{self._init_count - 1}.mp4"
        self._inits[self._init_name] = _fmp4.init_segment(video, audio)
        self._init_sets = sets
        if self.sink is not None:
            self.sink.init_made(self.rendition, self._init_name, self._inits[self._init_name])

    def _open_segment(self, dts: int, arrived: float) -> None:
        msn = self.segments[-1].msn + 1 if self.segments else 0
        self._segment = Segment(
            msn=msn,
            name=f"seg-{self.run}-{msn}.m4s",
            init_name=self._init_name,
            program_date_time=arrived + self._wall_offset,
            discontinuity=self._discontinuity and bool(self.segments),
        )
        self._discontinuity = False
        self._segment_start = dts
        self._samples = []

    def _close_part(self) -> None:
        segment = self._segment
        samples = self._samples
        if segment is None or not samples:
            return
        self._samples = []
        end = self._part_start + sum(s.duration for s in samples)
        audio_end = end * SAMPLE_RATE // VIDEO_CLOCK
        audio: list[_fmp4.Sample] = []
        audio_time = 0
        taken = 0
        for frame_time, frame in self._aac_frames:
            if frame_time >= audio_end:
                break
            if audio and frame_time != audio_time + len(audio) * 1024:
                break  # a jump in the audio timeline: the rest starts the next part
            if not audio:
                audio_time = frame_time
            audio.append(_fmp4.Sample(frame, 1024))
            taken += 1
        del self._aac_frames[:taken]
        self._fragments += 1
        data = _fmp4.fragment(self._fragments, self._part_start, samples, audio_time, audio)
        index = len(segment.parts)
        part = Part(
            msn=segment.msn,
            index=index,
            number=self._parts_made,
            duration=(end - self._part_start) / VIDEO_CLOCK,
            independent=self._part_independent,
            data=data,
            name=f"part-{self.run}-{self._parts_made}.m4s",
        )
        self._parts_made += 1
        segment.parts.append(part)
        segment.duration += part.duration
        self._parts[part.name] = part
        self._latest = (segment.msn, index)
        self._dirty = True

    def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        if not segment.parts:
            self._discontinuity = self._discontinuity or segment.discontinuity
            return
        segment.data = b"".join(p.data for p in segment.parts)
        self.segments.append(segment)
        if self.sink is not None:
            self.sink.segment_made(self.rendition, segment)
        self._max_segment = max(self._max_segment, segment.duration)
        self.target_duration = max(1, math.ceil(self._max_segment))
        self._segment_ends[segment.msn] = (segment.msn, len(segment.parts) - 1)
        while len(self.segments) > self.settings.window:
            gone = self.segments.pop(0)
            self._discontinuities += gone.discontinuity
            self._segment_ends.pop(gone.msn, None)
            for part in gone.parts:
                self._parts.pop(part.name, None)
                self._renditions.pop((part.msn, part.index), None)
            if gone.init_name != self.segments[0].init_name:
                self._inits.pop(gone.init_name, None)  # no listed segment needs it
        self._dirty = True

    def _ask_keyframe(self, arrived: float) -> None:
        if self._request_keyframe is not None and arrived - self._last_request >= (
            self.settings.part_s
        ):
            self._last_request = arrived
            self._request_keyframe()

    # -- the playlist -------------------------------------------------------------------

    def _publish(self, *, force: bool = False) -> None:
        if not (self._dirty or force):
            return
        self._dirty = False
        playlist = self._render()
        self._current = playlist
        if self._latest is not None:
            self._renditions[self._latest] = playlist
        waiters, self._waiters = self._waiters, []
        self._prune_at = _PRUNE_WAITERS
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _render(self) -> Playlist:
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
        if self._segment is not None and self._segment.parts:
            listed.append(self._segment)
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
            hint = f"part-{self.run}-{self._parts_made}.m4s"
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint}"')
        return self.dateranges.playlist(lines, target)

    def next_part(self) -> tuple[int, int]:
        """The (msn, index) the next part will most likely have."""
        segment = self._segment
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
        return self._renditions.get(key, self._current)

    def file(self, name: str) -> bytes | None:
        """An init segment, segment or part by name, None if there is none (any more)."""
        if name.startswith("init-"):
            return self._inits.get(name)
        if name.startswith("part-"):
            part = self._parts.get(name)
            return part.data if part is not None else None
        for segment in self.segments:
            if segment.name == name:
                return segment.data
        return None

    def may_come(self, number: int) -> bool:
        """Whether part ``number`` is not made yet but comes next (the hinted part) or
        right after it."""
        return not self.ended and self._parts_made <= number <= self._parts_made + 1

    def next_change(self) -> asyncio.Future[None]:
        """A future of the caller's own, resolved when the playlist changes next (a part
        was made, the stream ended): one that gives up (cancels it, or resolves it at
        its deadline) leaves the others waiting.

        Thousands of requests may wait for the same part; releasing them is one
        ``set_result`` each, nothing more.
        """
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        waiters.append(waiter)
        if len(waiters) > self._prune_at:  # those that gave up while nothing changed
            waiters[:] = [w for w in waiters if not w.done()]
            self._prune_at = max(_PRUNE_WAITERS, 2 * len(waiters))
        return waiter


def _rfc3339(unix: float) -> str:
    moment = dt.datetime.fromtimestamp(unix, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
