"""Which streams are packaged here: a :class:`~livecast.hls.packager.Packager` per stream
whose media this node holds, fed by the relay's sources.

Every ``_SYNC_S`` the media hub's streams are looked at: an H.264 stream (or a VP8
one, encoded once to H.264 by :mod:`livecast.hls._transcode` when ``hls.transcode_vp8``)
with a publisher here gets a packager, fed through ``MediaSource.packager_tee``
(one call per frame, on the relay's timeline); a new publisher (the source's ``epoch``
moves) tells the packager to continue after a discontinuity. A stream whose media left
this node (or that another node took over as its origin) has its playlist ended
(``EXT-X-ENDLIST``) and is forgotten ``_LINGER_S`` later, so players and caches see the end.

Only the origin packages: a node that pulls a stream for its WebRTC viewers (an edge)
does not package it again; it forwards ``/hls/`` requests to the origin
(:mod:`livecast.hls.forward` says why).

Looking (rather than being called by the hub) keeps the relay's side to one attribute;
a packager misses at most ``_SYNC_S`` of a new stream, and asks for a keyframe at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Final

from livecast.config import HlsSettings
from livecast.hls._transcode import Vp8ToH264
from livecast.hls.packager import Packager, PackagerSettings
from livecast.ingest.hub import MediaHub
from livecast.ingest.media import StreamMedia
from livecast.ingest.relay import MediaSource

__all__ = ["Packaged", "Packaging"]

log = logging.getLogger(__name__)

_SYNC_S: Final = 0.1
_LINGER_S: Final = 30.0
_JOIN_TIMEOUT_S: Final = 10.0


@dataclass(slots=True)
class Packaged:
    """A stream packaged here: its packager and the sources feeding it."""

    packager: Packager
    media: StreamMedia
    epoch: int
    transcoder: Vp8ToH264 | None = None  # a VP8 stream's one encoder to H.264
    ended_at: float | None = None
    public: bool = False  # known public: players need no token check
    public_checked_at: float = 0.0


class Packaging:
    """This node's packagers, one per stream it holds the media of; owned by the app."""

    def __init__(self, settings: HlsSettings, hub: MediaHub) -> None:
        self._settings = PackagerSettings(
            part_s=settings.part_duration_s,
            segment_s=settings.segment_duration_s,
            window=settings.window_segments,
        )
        self._hub = hub
        self._codecs = {"h264", "vp8"} if settings.transcode_vp8 else {"h264"}
        self.streams: dict[str, Packaged] = {}
        self._transcoders: list[Vp8ToH264] = []  # not yet joined

    def packager(self, stream_id: str) -> Packager | None:
        packaged = self.streams.get(stream_id)
        return packaged.packager if packaged is not None else None

    async def run(self) -> None:
        while True:
            try:
                self.sync()
            except Exception:
                log.exception("HLS packaging could not follow the streams")
            await asyncio.sleep(_SYNC_S)

    def sync(self) -> None:
        """Start packaging new streams, end the ones whose media left."""
        now = time.monotonic()
        hub_streams = self._hub.streams
        for stream_id, media in hub_streams.items():
            packaged = self.streams.get(stream_id)
            if packaged is not None and packaged.media is not media:
                self._end(packaged, now)
                packaged = None
            # only the origin packages: an edge's pull is not packaged again (other
            # nodes forward /hls/ requests to the origin: livecast.hls.forward)
            feeding = media.publisher is not None
            video = media.sources["video"]
            idle = packaged is None or packaged.ended_at is not None
            if idle and feeding and video.codec in self._codecs:
                self._start(stream_id, media)
        for stream_id, packaged in list(self.streams.items()):
            if packaged.ended_at is None and not self._holds(stream_id, packaged.media):
                self._end(packaged, now)
            elif packaged.ended_at is not None and now - packaged.ended_at > _LINGER_S:
                del self.streams[stream_id]
        self._transcoders = [t for t in self._transcoders if not t.join(0)]

    def _holds(self, stream_id: str, media: StreamMedia) -> bool:
        """Whether ``media`` is still the stream's here, with its publisher, or with the
        stream's origin claim (waiting for it to come back)."""
        return self._hub.streams.get(stream_id) is media and (
            media.publisher is not None or stream_id in self._hub.origins.claimed
        )

    def _start(self, stream_id: str, media: StreamMedia) -> None:
        video, audio = media.sources["video"], media.sources["audio"]

        def request_keyframe() -> None:
            if packaged.transcoder is not None and video.codec == "vp8":
                packaged.transcoder.force_keyframe()
            else:
                video.request_keyframe()

        packager = Packager(
            self._settings, audio=audio.codec == "opus", request_keyframe=request_keyframe
        )
        packaged = Packaged(packager, media, video.epoch)

        def take_video(data: bytes, timestamp: int, keyframe: bool, arrived: float) -> None:
            transcoder = packaged.transcoder
            if video.epoch != packaged.epoch:
                packaged.epoch = video.epoch
                if transcoder is not None:
                    transcoder.publisher_changed()  # after the frames it still holds
                else:
                    packager.publisher_changed()
            if video.codec == "h264":
                packager.push_video(data, timestamp, keyframe, arrived)
            elif video.codec in self._codecs:  # VP8: encoded once to H.264
                if transcoder is None:
                    transcoder = packaged.transcoder = Vp8ToH264(
                        packager.push_video,
                        packager.publisher_changed,
                        video.request_keyframe,
                        stream_id,
                    )
                    self._transcoders.append(transcoder)
                transcoder.push(data, timestamp, keyframe, arrived)

        video.packager_tee = take_video
        audio.packager_tee = packager.push_audio
        self.streams[stream_id] = packaged
        video.request_keyframe()
        log.info("stream %s: packaging LL-HLS (run %s)", stream_id, packager.run)

    def _end(self, packaged: Packaged, now: float) -> None:
        for source in packaged.media.sources.values():
            _untee(source)
        if packaged.transcoder is not None:
            packaged.transcoder.close()
        packaged.packager.finish()
        packaged.ended_at = now

    async def close(self) -> None:
        """End every playlist and join every encoder thread (app shutdown)."""
        now = time.monotonic()
        for packaged in self.streams.values():
            if packaged.ended_at is None:
                self._end(packaged, now)
        self.streams.clear()
        transcoders, self._transcoders = self._transcoders, []
        for transcoder in transcoders:
            if not await asyncio.to_thread(transcoder.join, _JOIN_TIMEOUT_S):
                log.error("an HLS VP8 encoder thread did not stop")


def _untee(source: MediaSource) -> None:
    source.packager_tee = None
