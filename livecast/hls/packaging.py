"""Which streams are packaged here: a :class:`~livecast.hls.packager.Packager` per stream
whose media this node holds, fed by the relay's sources.

The packaging follows the media hub, which calls it
(:meth:`~livecast.ingest.hub.MediaHub.on_media_change`): when a publisher is accepted
here (the stream's origin) on an H.264 stream (or a VP8 one, encoded once to H.264 by
:mod:`livecast.hls._transcode` when ``hls.transcode_vp8``), the stream gets a packager,
fed through ``MediaSource.packager_tee`` (one call per frame, on the relay's timeline)
from the publisher's first frame on (its Opus encoded to AAC in a thread of the
packager's); a new publisher (the source's ``epoch`` moves) tells the packager to
continue after a discontinuity.

The run has an audio rendition when its first publisher sends audio. A returning
publisher without audio continues the run (its audio rendition carries silence, so
players keep playing); one that brings audio to a video-only run starts a new run (new
URLs, and a multivariant playlist with the audio group): players already on the old run
see its media playlists end (``EXT-X-ENDLIST``) and load ``index.m3u8`` again, which a
player cannot avoid, since an audio rendition cannot be added to a multivariant playlist
it has read. The old run stays answerable (``Packaged.previous``) until the stream is
forgotten. A stream whose media left this
node, or whose origin claim this node lost or let go of, has its playlist ended
(``EXT-X-ENDLIST``) and is forgotten ``_LINGER_S`` later, so players and caches see the end.

Only the origin packages: a node that pulls a stream for its WebRTC viewers (an edge)
does not package it again; it forwards ``/hls/`` requests to the origin
(:mod:`livecast.hls.forward` says why).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from livecast.config import HlsSettings
from livecast.hls._transcode import Vp8ToH264
from livecast.hls.packager import Packager, PackagerSettings, SegmentSink
from livecast.ingest.hub import MediaHub
from livecast.ingest.media import StreamMedia
from livecast.ingest.relay import MediaSource
from livecast.streams.registry import Stream

__all__ = ["Packaged", "Packaging"]

log = logging.getLogger(__name__)

_LINGER_S: Final = 30.0
_JOIN_TIMEOUT_S: Final = 10.0


class Recording(SegmentSink, Protocol):
    """A packaging run's recording (the replay writer): told of its segments, closed
    when the run ends."""

    def close(self) -> None: ...


@dataclass(slots=True)
class Packaged:
    """A stream packaged here: its packager and the sources feeding it."""

    packager: Packager
    media: StreamMedia
    epoch: int  # of the video source, and the audio's, when the packager last looked
    audio_epoch: int
    transcoder: Vp8ToH264 | None = None  # a VP8 stream's one encoder to H.264
    previous: Packager | None = None  # the run a returning publisher's audio ended
    ended_at: float | None = None
    forget: asyncio.TimerHandle | None = None  # once ended: when it is dropped
    # the stream's record as last read (visibility, seller), when, and the read under
    # way that every request arriving meanwhile awaits (one Redis read, not one each)
    stream: Stream | None = None
    stream_read_at: float = 0.0
    stream_reading: asyncio.Future[Stream | None] | None = None
    recording: Recording | None = None


class Packaging:
    """This node's packagers, one per stream it holds the media of; owned by the app."""

    def __init__(
        self,
        settings: HlsSettings,
        hub: MediaHub,
        ended: Callable[[str, float], None] | None = None,
        record: Callable[[str, str], Recording] | None = None,
    ) -> None:
        """``ended(stream_id, linger_s)`` is told of each playlist ended while the node
        runs (the stream's media left, or another node took it over), which is kept
        for ``linger_s``."""
        self._settings = PackagerSettings(
            part_s=settings.part_duration_s,
            segment_s=settings.segment_duration_s,
            window=settings.window_segments,
        )
        self._hub = hub
        self._codecs = {"h264", "vp8"} if settings.transcode_vp8 else {"h264"}
        self.streams: dict[str, Packaged] = {}
        # what runs encoder threads (VP8 to H.264, Opus to AAC), not yet joined
        self._threads: list[Vp8ToH264 | Packager] = []
        self._unfollow: Callable[[], None] | None = None
        self._ended = ended
        self._record = record  # a recording of each run (stream id, run id), if any

    def packager(self, stream_id: str) -> Packager | None:
        packaged = self.streams.get(stream_id)
        return packaged.packager if packaged is not None else None

    def start(self) -> None:
        """Follow the hub's streams from now on; :meth:`close` stops."""
        self._unfollow = self._hub.on_media_change(self.follow)
        for stream_id in list(self._hub.streams):
            self.follow(stream_id)

    def follow(self, stream_id: str) -> None:
        """The stream's media here changed hands: end its playlist if this node no longer
        holds it, start one if a publisher came to a stream not packaged here."""
        packaged = self.streams.get(stream_id)
        if (
            packaged is not None
            and packaged.ended_at is None
            and not self._holds(stream_id, packaged.media)
        ):
            self._end(stream_id, packaged)
            if self._ended is not None:
                self._ended(stream_id, _LINGER_S)
        media = self._hub.streams.get(stream_id)
        if (
            media is not None
            and media.publisher is not None
            and self._holds(stream_id, media)
            and media.sources["video"].codec in self._codecs
            and (packaged is None or packaged.ended_at is not None)
        ):
            self._start(stream_id, media)
        self._threads = [t for t in self._threads if not t.join(0)]

    def _holds(self, stream_id: str, media: StreamMedia) -> bool:
        """Whether ``media`` is still the stream's here, and this node its origin (with
        its publisher, or waiting for it to come back)."""
        return self._hub.streams.get(stream_id) is media and stream_id in self._hub.origins.claimed

    def _start(self, stream_id: str, media: StreamMedia) -> None:
        video, audio = media.sources["video"], media.sources["audio"]
        packaged = Packaged(
            self._packager(stream_id, audio=audio.codec == "opus"),
            media,
            video.epoch,
            audio.epoch,
        )
        self._record_run(stream_id, packaged)

        def take_video(data: bytes, timestamp: int, keyframe: bool, arrived: float) -> None:
            transcoder = packaged.transcoder
            if video.epoch != packaged.epoch:
                packaged.epoch = video.epoch
                with_audio = audio.epoch != packaged.audio_epoch and audio.codec == "opus"
                packaged.audio_epoch = audio.epoch
                if with_audio and packaged.packager.audio is None:
                    self._new_run(stream_id, packaged)
                if transcoder is not None:
                    transcoder.publisher_changed()  # after the frames it still holds
                else:
                    packaged.packager.publisher_changed()
            if video.codec == "h264":
                packaged.packager.push_video(data, timestamp, keyframe, arrived)
            elif video.codec in self._codecs:  # VP8: encoded once to H.264
                if transcoder is None:
                    transcoder = packaged.transcoder = Vp8ToH264(
                        encoded,
                        encoded_changed,
                        video.request_keyframe,
                        stream_id,
                    )
                    self._threads.append(transcoder)
                transcoder.push(data, timestamp, keyframe, arrived)

        def encoded(data: bytes, timestamp: int, keyframe: bool, arrived: float) -> None:
            packaged.packager.push_video(data, timestamp, keyframe, arrived)

        def encoded_changed() -> None:
            packaged.packager.publisher_changed()

        def take_audio(data: bytes, timestamp: int, keyframe: bool, arrived: float) -> None:
            packaged.packager.push_audio(data, timestamp, keyframe, arrived)

        video.packager_tee = take_video
        audio.packager_tee = take_audio
        lingering = self.streams.get(stream_id)
        if lingering is not None and lingering.forget is not None:
            lingering.forget.cancel()
        self.streams[stream_id] = packaged
        if video.frames_in:  # started on media already flowing: a segment needs a keyframe
            video.request_keyframe()
        log.info("stream %s: packaging LL-HLS (run %s)", stream_id, packaged.packager.run)

    def _packager(self, stream_id: str, *, audio: bool) -> Packager:
        """A new run's packager for the stream, its keyframe requests sent to whatever
        feeds it (the publisher, or the VP8 stream's encoder)."""

        def request_keyframe() -> None:
            packaged = self.streams.get(stream_id)
            if packaged is None:
                return
            video = packaged.media.sources["video"]
            if packaged.transcoder is not None and video.codec == "vp8":
                packaged.transcoder.force_keyframe()
            else:
                video.request_keyframe()

        packager = Packager(
            self._settings, audio=audio, request_keyframe=request_keyframe, audio_thread=True
        )
        self._threads.append(packager)
        return packager

    def _record_run(self, stream_id: str, packaged: Packaged) -> None:
        """Record the stream's current run for its replay (each run its own recording),
        if replays are kept; the previous run's recording is closed."""
        if self._record is None:
            return
        if packaged.recording is not None:
            packaged.recording.close()
        packaged.recording = self._record(stream_id, packaged.packager.run)
        packaged.packager.attach(packaged.recording)

    def _new_run(self, stream_id: str, packaged: Packaged) -> None:
        """A returning publisher brought audio to a video-only run: end it, and go on
        in a new run with an audio rendition (a new multivariant playlist)."""
        old = packaged.packager
        old.finish()
        packaged.previous = old
        packaged.packager = self._packager(stream_id, audio=True)
        self._record_run(stream_id, packaged)
        log.info(
            "stream %s: audio came with the new publisher: LL-HLS run %s after %s",
            stream_id,
            packaged.packager.run,
            old.run,
        )

    def _end(self, stream_id: str, packaged: Packaged) -> None:
        for source in packaged.media.sources.values():
            _untee(source)
        if packaged.transcoder is not None:
            packaged.transcoder.close()
        packaged.packager.finish()
        if packaged.recording is not None:
            packaged.recording.close()
        packaged.ended_at = time.monotonic()
        packaged.forget = asyncio.get_running_loop().call_later(
            _LINGER_S, self._forget, stream_id, packaged
        )

    def _forget(self, stream_id: str, packaged: Packaged) -> None:
        if self.streams.get(stream_id) is packaged:
            del self.streams[stream_id]
        self._threads = [t for t in self._threads if not t.join(0)]

    async def close(self) -> None:
        """Stop following the hub, end every playlist and join every encoder thread
        (app shutdown)."""
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None
        for stream_id, packaged in self.streams.items():
            if packaged.ended_at is None:
                self._end(stream_id, packaged)
            if packaged.forget is not None:
                packaged.forget.cancel()
        self.streams.clear()
        threads, self._threads = self._threads, []
        for thread in threads:
            if not await asyncio.to_thread(thread.join, _JOIN_TIMEOUT_S):
                log.error("an HLS encoder thread did not stop")


def _untee(source: MediaSource) -> None:
    source.packager_tee = None
