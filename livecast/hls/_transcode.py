"""VP8 in, H.264 out: the one video transcode a VP8 stream gets for HLS.

HLS players take H.264, so a stream whose publisher sends VP8 (browsers often do) is
decoded and encoded to H.264 once, however many players there are, in a worker thread
of its own so the relay's event loop never waits for it. The encoder (libx264,
ultrafast, zero latency, baseline, no B-frames) makes a keyframe when the packager asks
for one (a segment is due) and at every publisher change; each H.264 access unit keeps
its VP8 frame's timestamp and arrival time, and is handed to the packager on the loop.

A worker that falls ``_QUEUE_FRAMES`` behind drops frames up to the next VP8 keyframe
(what it decodes must start at one) and asks the publisher for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Final

import av
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType

__all__ = ["Vp8ToH264"]

log = logging.getLogger(__name__)

_QUEUE_FRAMES: Final = 60
_SIGNED: Final = 1 << 31
_U32: Final = 0xFFFFFFFF
_CHANGED: Final = -1  # queue marker: a new publisher's frames follow
_STOP: Final = -2

VideoSink = Callable[[bytes, int, bool, float], None]
_Item = tuple[int, bytes, int, float]  # (kind or 0, frame, timestamp, arrival)


class Vp8ToH264:
    """One stream's VP8-to-H.264 encoder, fed on the event loop, run in a thread."""

    def __init__(
        self,
        sink: VideoSink,
        on_publisher_changed: Callable[[], None],
        request_upstream_keyframe: Callable[[], None],
        name: str,
    ) -> None:
        self._sink = sink
        self._on_publisher_changed = on_publisher_changed
        self._request_upstream_keyframe = request_upstream_keyframe
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._skip_to_keyframe = False
        self._force_keyframe = True
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"hls-vp8-{name}", daemon=True)
        self._thread.start()

    # -- event loop side ---------------------------------------------------------------

    def push(self, data: bytes, timestamp: int, keyframe: bool, arrived: float) -> None:
        if self._skip_to_keyframe:
            if not keyframe:
                self.dropped += 1
                return
            self._skip_to_keyframe = False
        if self._queue.qsize() >= _QUEUE_FRAMES:
            self.dropped += 1
            self._skip_to_keyframe = True
            self._request_upstream_keyframe()
            return
        self.frames_in += 1
        self._queue.put((0, data, timestamp, arrived))

    def publisher_changed(self) -> None:
        """Said in order with the frames: the packager hears it after the old ones."""
        self._queue.put((_CHANGED, b"", 0, 0.0))

    def force_keyframe(self) -> None:
        """The next frame out is a keyframe (the packager's segment is due)."""
        self._force_keyframe = True

    def close(self) -> None:
        self._queue.put((_STOP, b"", 0, 0.0))

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- worker thread -----------------------------------------------------------------

    def _deliver(self, data: bytes, timestamp: int, keyframe: bool, arrived: float) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
            self._loop.call_soon_threadsafe(self._sink, data, timestamp, keyframe, arrived)

    def _run(self) -> None:
        decoder = av.CodecContext.create("vp8", "r")
        encoder: VideoCodecContext | None = None
        size = (0, 0)
        last_ts: int | None = None
        pts = 0
        while True:
            kind, data, timestamp, arrived = self._queue.get()
            if kind == _STOP:
                break
            if kind == _CHANGED:
                self._force_keyframe = True
                try:
                    self._loop.call_soon_threadsafe(self._on_publisher_changed)
                except RuntimeError:
                    break
                continue
            try:
                pictures = decoder.decode(av.Packet(data))
            except av.FFmpegError as exc:
                log.debug("undecodable VP8 frame dropped: %s", exc)
                continue
            for picture in pictures:
                assert isinstance(picture, av.VideoFrame)
                if encoder is None or size != (picture.width, picture.height):
                    size = (picture.width, picture.height)
                    encoder = _h264_encoder(*size)
                    self._force_keyframe = True
                if last_ts is not None:
                    pts += max(((timestamp - last_ts + _SIGNED) & _U32) - _SIGNED, 1)
                last_ts = timestamp
                picture = picture.reformat(encoder.width, encoder.height, "yuv420p")
                picture.pts = pts
                picture.time_base = encoder.time_base
                if self._force_keyframe:
                    self._force_keyframe = False
                    picture.pict_type = PictureType.I
                else:
                    picture.pict_type = PictureType.NONE
                try:
                    packets = encoder.encode(picture)
                except av.FFmpegError:
                    log.exception("H.264 encoding failed; the next frame starts over")
                    encoder = None
                    continue
                for packet in packets:
                    self.frames_out += 1
                    self._deliver(bytes(packet), timestamp, packet.is_keyframe, arrived)


def _h264_encoder(width: int, height: int) -> VideoCodecContext:
    encoder = av.CodecContext.create("libx264", "w")
    assert isinstance(encoder, VideoCodecContext)
    encoder.width = width - width % 2
    encoder.height = height - height % 2
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 90_000)
    encoder.gop_size = 600  # keyframes come when asked for
    encoder.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "profile": "baseline",
        "bf": "0",
        "forced-idr": "1",
    }
    encoder.open()
    return encoder
