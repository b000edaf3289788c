"""The LL-HLS packager of one stream: encoded frames in, fMP4 parts, segments and playlists out.

The relay hands every frame it receives to :meth:`Packager.push_video` and
:meth:`Packager.push_audio`, on its sources' continuous timelines (90 kHz video, 48 kHz
Opus), with the frame's monotonic arrival time; :meth:`Packager.publisher_changed` says
a new publisher's frames follow. Nothing is awaited and nothing is decoded but the
audio: H.264 access units are rewrapped (Annex B to length-prefixed) as they are, Opus
goes through one AAC encoder per stream (:mod:`livecast.hls._aac`), in a thread of its
own with ``audio_thread`` (its frames join the audio rendition's next part when they
come back, a millisecond or so later).

Layout (RFC 8216bis, CMAF: one track per file): a video rendition and, when the run
began with audio, an audio rendition (:mod:`livecast.hls.rendition`), each its own media
playlist, named by a multivariant playlist (:meth:`Packager.multivariant`).

* a *segment* starts at an H.264 keyframe once the open one reached ``segment_s``
  (the packager asks the publisher for a keyframe when one is due and none came);
* a *part* is one ``moof`` + ``mdat`` of ``part_s`` at most: it closes before the frame
  that would make it longer (a single frame longer than a part, a stall, gets the
  previous frame's duration and the next part starts at its true time); a part that
  starts a segment starts at a keyframe and is ``INDEPENDENT=YES``;
* the video leads, as in MediaMTX's muxer: when a video part closes, the audio
  rendition gets a part of the AAC frames that start before that part's end, and
  when a video segment closes, so does the audio's; both renditions have the same
  media sequence numbers, part indexes and program date times, and their boundaries
  agree within a few AAC frames (the encoder runs that far behind; it never adds up),
  so a player switches and syncs them cleanly;
* the audio track is contiguous: each AAC frame takes the next 1024-sample slot (within
  half a frame of its own time); where the publisher sends no audio (a returning
  publisher without it, a stall of a part or more), the slots are filled with silence,
  so the audio playlist goes on with the video's and players keep playing;
* the init segments (``EXT-X-MAP``) change when the parameter sets do; a publisher's
  drop and return continues both playlists after an ``EXT-X-DISCONTINUITY``.

Every part made renders each rendition's playlist once (see :mod:`livecast.hls.rendition`
for the blocking answers).

URLs carry a per-run id (``run``): a new packager for the same stream (its media ended
here and started again) never reuses a name that a cache may hold forever.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Callable
from typing import Final

from livecast.hls import _fmp4
from livecast.hls._aac import (
    CHANNELS,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AacEncoder,
    AacFrame,
    AacThread,
    silent_frame,
)
from livecast.hls.dateranges import DateRanges
from livecast.hls.rendition import (
    PackagerSettings,
    Playlist,
    Rendition,
    Segment,
    SegmentSink,
)
from livecast.ingest._bitstream import h264_parameter_sets, h264_picture_size

__all__ = ["Packager", "PackagerSettings", "Playlist", "Rendition", "Segment", "SegmentSink"]

VIDEO_CLOCK: Final = 90_000
_SIGNED: Final = 1 << 31
_U32: Final = 0xFFFFFFFF
_START: Final = b"\x00\x00\x01"
_HALF_FRAME: Final = FRAME_SAMPLES // 2
# AAC frames kept for the next part: about 5 s (video that stopped cuts no parts)
_MAX_AUDIO_HELD: Final = 240
# waiting requests' futures kept before those that gave up are dropped (at least)
_PRUNE_WAITERS: Final = 4096
# BANDWIDTH in the multivariant playlist is rounded up to this (bits/s), so it settles
_BANDWIDTH_STEP: Final = 100_000
AUDIO_GROUP: Final = "audio"


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
        """With ``audio``, an audio rendition: Opus in and AAC out; encoded on the
        calling thread, or with ``audio_thread`` in a thread of its own (made now, so on
        the event loop) that :meth:`finish` stops and :meth:`join` waits for."""
        self.settings = settings
        self.run = run or secrets.token_hex(4)
        self._request_keyframe = request_keyframe
        self._part_ticks = round(settings.part_s * VIDEO_CLOCK)
        self._segment_ticks = round(settings.segment_s * VIDEO_CLOCK)
        self.video = Rendition("video", self.run, settings)
        self.audio: Rendition | None = None
        self._aac: AacEncoder | AacThread | None = None
        if audio:
            self._aac = AacThread(self._take_aac, self.run) if audio_thread else AacEncoder()
            self.audio = Rendition("audio", self.run, settings)
            self.audio.new_init(
                _fmp4.AudioTrack(self._aac.audio_specific_config, SAMPLE_RATE, CHANNELS)
            )
        self.renditions = (self.video,) if self.audio is None else (self.video, self.audio)
        for rendition in self.renditions:
            rendition.others = tuple(r for r in self.renditions if r is not rendition)
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
        self._aac_frames: list[AacFrame] = []
        self._audio_slot: int | None = None  # decode time of the audio track's next frame
        self._segment_start = 0
        self._last_request = -math.inf
        self._peak_bps = 0  # of the complete segments, every rendition together
        self._multivariant: tuple[object, Playlist] | None = None
        # the futures of the requests waiting for the next change; when to prune it
        self._waiters: list[asyncio.Future[None]] = []
        self._prune_at = _PRUNE_WAITERS
        self._dirty = False
        self.ended = False

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
            if not self._same_sets(sets):
                self._new_init(sets, size)
        else:
            delta = ((timestamp - self._video_ts + _SIGNED) & _U32) - _SIGNED
            dts = self._video_dts + max(delta, 1)
            if sets is not None and not self._same_sets(sets):
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
        if self.video.open is None:
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
        """The stream's media ended here: the playlists get ``EXT-X-ENDLIST`` (and the
        audio thread, if any, is told to stop)."""
        if self.ended:
            return
        self._close_at_gap()
        self.ended = True
        for rendition in self.renditions:
            rendition.ended = True
        if isinstance(self._aac, AacThread):
            self._aac.close()
        self._publish(force=True)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the audio thread (if any) to stop, once
        :meth:`finish` was called; whether it has (blocking: call it off the loop)."""
        return not isinstance(self._aac, AacThread) or self._aac.join(timeout)

    # -- building -----------------------------------------------------------------------

    def _same_sets(self, sets: tuple[bytes, bytes]) -> bool:
        track = self.video.track
        return isinstance(track, _fmp4.VideoTrack) and (track.sps, track.pps) == sets

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
        self.video.new_init(
            _fmp4.VideoTrack(sps=sets[0], pps=sets[1], width=size[0], height=size[1])
        )

    def _open_segment(self, dts: int, arrived: float) -> None:
        video = self.video
        msn = video.segments[-1].msn + 1 if video.segments else 0
        discontinuity = self._discontinuity and bool(video.segments)
        for rendition in self.renditions:
            rendition.open_segment(msn, arrived + self._wall_offset, discontinuity)
        if self._audio_slot is None or self._discontinuity:
            self._audio_slot = dts * SAMPLE_RATE // VIDEO_CLOCK
        self._discontinuity = False
        self._segment_start = dts
        self._samples = []

    def _close_part(self) -> None:
        samples = self._samples
        if self.video.open is None or not samples:
            return
        self._samples = []
        end = self._part_start + sum(s.duration for s in samples)
        self.video.add_part(
            self._part_start,
            samples,
            (end - self._part_start) / VIDEO_CLOCK,
            self._part_independent,
        )
        if self.audio is not None:
            self._cut_audio(end * SAMPLE_RATE // VIDEO_CLOCK)
        self._dirty = True

    def _cut_audio(self, end: int) -> None:
        """The audio rendition's part up to ``end`` (48 kHz), where the video's ended: the
        AAC frames in hand, each in the next slot of the track; silence in the slots of
        frames that are missing (a jump in the audio's timeline, or no audio for a part
        or more); frames whose slot was filled already are dropped."""
        audio = self.audio
        slot = self._audio_slot
        assert audio is not None
        assert slot is not None
        start = slot
        frames = self._aac_frames
        samples: list[_fmp4.Sample] = []
        silence = 0
        taken = 0
        while slot + _HALF_FRAME < end:
            if taken < len(frames):
                frame_time, frame = frames[taken]
                if frame_time < slot - _HALF_FRAME:  # late: its slot is past
                    taken += 1
                    continue
                if frame_time <= slot + _HALF_FRAME:
                    samples.append(_fmp4.Sample(frame, FRAME_SAMPLES))
                    taken += 1
                else:  # the audio jumps ahead: silence until it
                    samples.append(_fmp4.Sample(silent_frame(), FRAME_SAMPLES))
                    silence += 1
                slot += FRAME_SAMPLES
                continue
            # no frame in hand: the encoder is a little behind (they join the next part),
            # or there is no audio, which the video must not wait for
            if (
                samples
                and silence < len(samples)
                and end - slot <= self._part_ticks * (SAMPLE_RATE / VIDEO_CLOCK)
            ):
                break
            samples.append(_fmp4.Sample(silent_frame(), FRAME_SAMPLES))
            silence += 1
            slot += FRAME_SAMPLES
        del frames[:taken]
        if not samples:
            return
        self._audio_slot = slot
        audio.add_part(start, samples, (slot - start) / SAMPLE_RATE, True)

    def _close_segment(self) -> None:
        made = [rendition.close_segment() for rendition in self.renditions]
        complete = [segment for segment in made if segment is not None]
        if not complete:
            self._discontinuity = self._discontinuity or any(
                s is not None and s.discontinuity for s in made
            )
            return
        duration = complete[0].duration
        if duration > 0:
            bits = 8 * sum(len(segment.data or b"") for segment in complete)
            self._peak_bps = max(self._peak_bps, round(bits / duration))
        self._dirty = True

    def _ask_keyframe(self, arrived: float) -> None:
        if self._request_keyframe is not None and arrived - self._last_request >= (
            self.settings.part_s
        ):
            self._last_request = arrived
            self._request_keyframe()

    # -- the playlists ------------------------------------------------------------------

    def _publish(self, *, force: bool = False) -> None:
        if not (self._dirty or force):
            return
        self._dirty = False
        for rendition in self.renditions:
            rendition.publish()
        waiters, self._waiters = self._waiters, []
        self._prune_at = _PRUNE_WAITERS
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    @property
    def dateranges(self) -> DateRanges:
        """The stream's commerce events as ``EXT-X-DATERANGE`` tags: the video rendition's
        (fed by the packaging from the stored timeline)."""
        return self.video.dateranges

    def attach(self, sink: SegmentSink) -> None:
        """Tell ``sink`` of every rendition's init segments and complete segments (the
        replay's recording of this run); call before the first frame."""
        for rendition in self.renditions:
            rendition.attach(sink)

    def multivariant(self) -> Playlist | None:
        """The multivariant playlist (what ``index.m3u8`` answers): the video rendition,
        its codecs, resolution and peak bit rate, and the audio rendition as the group
        it plays with; None before the first part."""
        video = self.video.track
        if not isinstance(video, _fmp4.VideoTrack) or self.video.playlist() is None:
            return None
        bandwidth = self._peak_bps
        if not bandwidth:  # no complete segment yet: the parts so far
            segment = self.video.open
            duration = segment.duration if segment is not None else 0.0
            if segment is not None and duration > 0:
                parts = [r.open.parts for r in self.renditions if r.open is not None]
                bits = 8 * sum(len(part.data) for listed in parts for part in listed)
                bandwidth = round(bits / duration)
        bandwidth = max(1, math.ceil(bandwidth / _BANDWIDTH_STEP)) * _BANDWIDTH_STEP
        key = (video, bandwidth)
        if self._multivariant is not None and self._multivariant[0] == key:
            return self._multivariant[1]
        lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
        codecs = video.codec
        group = ""
        audio = self.audio
        if audio is not None and isinstance(audio.track, _fmp4.AudioTrack):
            codecs += f",{audio.track.codec}"
            group = f',AUDIO="{AUDIO_GROUP}"'
            lines.append(
                f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP}",NAME="audio",DEFAULT=YES,'
                f'AUTOSELECT=YES,CHANNELS="{audio.track.channels}",URI="{audio.playlist_name}"'
            )
        lines.append(
            f'#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS="{codecs}",'
            f"RESOLUTION={video.width}x{video.height}{group}"
        )
        lines.append(self.video.playlist_name)
        playlist = Playlist.of("\n".join(lines) + "\n")
        self._multivariant = (key, playlist)
        return playlist

    @property
    def target_duration(self) -> int:
        """The longest of the renditions' ``EXT-X-TARGETDURATION``."""
        return max(rendition.target_duration for rendition in self.renditions)

    # -- read by the HTTP handlers ------------------------------------------------------

    def rendition(self, playlist_name: str) -> Rendition | None:
        """The rendition whose media playlist is ``playlist_name``, if any."""
        for rendition in self.renditions:
            if rendition.playlist_name == playlist_name:
                return rendition
        return None

    def rendition_of(self, name: str) -> Rendition | None:
        """The rendition a file (init segment, segment, part) belongs to, by its name."""
        audio = self.audio
        if name.startswith("audio-"):
            return audio
        return self.video

    def file(self, name: str) -> bytes | None:
        """An init segment, segment or part by name, None if there is none (any more)."""
        rendition = self.rendition_of(name)
        return rendition.file(name) if rendition is not None else None

    def next_change(self) -> asyncio.Future[None]:
        """A future of the caller's own, resolved when the playlists change next (a part
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
