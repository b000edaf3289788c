"""The passthrough relay: one publisher's encoded frames, fanned out to every viewer.

A :class:`MediaSource` holds one track of one stream (its video, or its audio). The
publisher's receiver pushes each reassembled encoded frame into it once; the source
packetizes it once (H.264 FU-A/STAP-A, VP8 descriptors, Opus as is), gives it a
timestamp on the source's own continuous timeline, and stores it in a ring of
``frame_buffer`` frames. Each viewer's :class:`ViewerTrack` is only a cursor into that
ring: ``recv()`` returns the shared :class:`EncodedFrame` object, and the viewer's
sender adds its own sequence numbers, SSRC and timestamp origin, encrypts and sends.
Per viewer and frame there is no copy, no encode and no queue.
A recorder, when recording is on, is handed each frame too (``MediaSource.tee``), on
the same timeline (:mod:`livecast.ingest.recorder`).

A video source also keeps a GOP cache: the frames since the last keyframe (the same
objects the ring holds), as long as they stay within ``gop_cache_s`` and
``gop_cache_bytes``. A joining viewer starts from it at once, whatever the encoder does
with keyframe requests (OBS and FFmpeg ignore them): the cached frames go out as one
burst, their timestamps packed 1 ms apart just before the newest one's, so the viewer's
decoder runs through them and its jitter buffer plays the newest at once instead of
replaying the GOP in real time; from then on the viewer gets the shared frames, live.
Only a joiner with nothing cached (no keyframe yet, or a GOP past the bounds) asks the
publisher for a keyframe and waits.

Invariants:

* a video viewer gets nothing until a keyframe, and from then on frames in order;
* a viewer's timestamps only grow (the catch-up burst ends on the newest frame's own);
* a viewer that falls out of the ring and the GOP cache skips to the next keyframe
  (video) or to the newest frame (audio); memory never grows with a slow viewer;
* keyframe requests go up to the publisher at most every ``keyframe_min_interval``,
  however many viewers ask; a viewer still waiting asks again every ``keyframe_retry``;
* when the publisher changes (drop and return), the timeline continues: timestamps
  for viewers stay monotonic across publishers, advanced by the wall time in between;
  a viewer whose sender negotiated several codecs is switched to the new publisher's
  at its first keyframe (``switch_codec``).

Past one process: aiortc encrypts and sends on the event loop, so one process relays
what one core can send (``livecast bench relay``). More viewers of one stream are served
by more processes or nodes, each pulling the stream once over WHEP from the stream's
origin (the node holding the publisher) and relaying it locally: an edge's pull is a
WHEP viewer on the origin and, on the edge, a publisher feeding a :class:`MediaSource`
through the same frame tap, with keyframe requests forwarded up the chain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiortc import MediaStreamTrack
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamError

from livecast.ingest.fanout import FanOut

__all__ = ["EncodedFrame", "FrameTee", "MediaSource", "RelayTuning", "ViewerTrack", "is_keyframe"]

log = logging.getLogger(__name__)

_U32: Final = 0xFFFFFFFF

# (encoded frame, timestamp on the source's timeline, keyframe, monotonic arrival time)
FrameTee = Callable[[bytes, int, bool, float], None]

# Timestamp step between the frames of a joiner's catch-up burst: 1 ms of a 90 kHz clock.
_CATCH_UP_STEP = 90


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether an encoded frame can be decoded on its own.

    VP8: bit 0 of the frame tag is 0 (RFC 6386 9.1). H.264 (Annex B, as aiortc
    reassembles it): the frame carries an IDR slice (NAL type 5).
    """
    if codec == "vp8":
        return bool(data) and not data[0] & 0x01
    if codec == "h264":
        pos = data.find(b"\x00\x00\x01")
        while pos != -1 and pos + 3 < len(data):
            nal_type = data[pos + 3] & 0x1F
            if nal_type == 5:
                return True
            if nal_type == 1:
                return False
            pos = data.find(b"\x00\x00\x01", pos + 3)
        return False
    return True


class EncodedFrame:
    """One frame, packetized once and shared by every viewer's sender."""

    __slots__ = ("codec", "keyframe", "payloads", "runs", "size", "timestamp")

    def __init__(
        self, payloads: list[bytes], timestamp: int, keyframe: bool, codec: str, size: int
    ) -> None:
        self.payloads = payloads
        self.timestamp = timestamp
        self.keyframe = keyframe
        self.codec = codec
        self.size = size  # bytes of payload, all packets together
        # where the runs of packets sent in one call end (livecast.ingest.fanout), once known
        self.runs: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class RelayTuning:
    frame_buffer: int = 64
    keyframe_min_interval_s: float = 0.2
    keyframe_retry_s: float = 0.5
    gop_cache_s: float = 10.0
    gop_cache_bytes: int = 8_000_000


class MediaSource:
    """One track of one stream: what every viewer of that track reads from."""

    def __init__(self, kind: str, tuning: RelayTuning) -> None:
        self.kind = kind
        self._video = kind == "video"
        self.codec: str | None = None  # "h264", "vp8", "opus" once a publisher negotiated
        self.clock_rate = 90_000 if kind == "video" else 48_000
        self._tuning = tuning
        self._capacity = tuning.frame_buffer
        self._mask = tuning.frame_buffer - 1
        self._ring: list[EncodedFrame | None] = [None] * tuning.frame_buffer
        self.head = 0  # index the next frame gets; frames [head - capacity, head) are kept
        self.last_keyframe = -1
        self.frames_in = 0
        self.last_frame_at = 0.0  # monotonic
        self.epoch = 0  # bumped per publisher: viewers then wait for its first keyframe
        self._waiters: list[asyncio.Future[None]] = []
        self._picture_id = 0
        # GOP cache (video): frames [_gop_start, head), since the last keyframe, within
        # the bounds; empty when there is no keyframe yet or the GOP outgrew them
        self._gop: list[EncodedFrame] = []
        self._gop_start = -1
        self._gop_bytes = 0
        self._gop_since = 0.0
        # timeline: out = in + offset (mod 2**32); re-anchored when the publisher changes
        self._offset = 0
        self._last_out: int | None = None
        self._reanchor = True
        # keyframe requests
        self._request_upstream: Callable[[], None] | None = None
        self._last_request = -1e9
        self._pending_request: asyncio.TimerHandle | None = None
        self.keyframe_requests_sent = 0
        # the viewers whose packets the relay writes itself (livecast.ingest.fanout)
        self.fanout = FanOut()
        # also given every frame, on the source's timeline (the recorder); None: nothing
        self.tee: FrameTee | None = None
        # also given every frame, on the same timeline: the LL-HLS packager (livecast.hls)
        self.packager_tee: FrameTee | None = None

    # -- publisher side -------------------------------------------------------------

    def attach(self, codec: str, request_keyframe: Callable[[], None] | None) -> None:
        """A (new) publisher feeds this source; its first frame continues the timeline."""
        if self.codec is not None and codec != self.codec:
            log.info("%s source changes codec %s -> %s", self.kind, self.codec, codec)
            self.last_keyframe = -1
        self.codec = codec
        self._request_upstream = request_keyframe
        self._reanchor = True
        self.epoch += 1
        self._drop_gop()  # the new publisher's frames start over at its first keyframe

    def detach(self) -> None:
        """The publisher left; viewers keep their cursors and wait for the next one."""
        self._request_upstream = None
        if self._pending_request is not None:
            self._pending_request.cancel()
            self._pending_request = None

    def push(self, data: bytes, timestamp: int) -> None:
        """Take one reassembled encoded frame from the publisher (on the event loop)."""
        codec = self.codec
        if codec is None or not data:
            return
        now = time.monotonic()
        if self._reanchor:
            self._reanchor = False
            if self._last_out is None:
                self._offset = 0
            else:
                gap = max(int((now - self.last_frame_at) * self.clock_rate), 1)
                self._offset = (self._last_out + gap - timestamp) & _U32
        out = (timestamp + self._offset) & _U32
        self._last_out = out
        self.last_frame_at = now
        if codec == "h264":
            keyframe = is_keyframe(codec, data)
            payloads = H264Encoder._packetize(H264Encoder._split_bitstream(data))
        elif codec == "vp8":
            keyframe = is_keyframe(codec, data)
            payloads = Vp8Encoder._packetize(data, self._picture_id)
            self._picture_id = (self._picture_id + 1) & 0x7FFF
        else:
            keyframe = True
            payloads = [data]
        index = self.head
        frame = self._ring[index & self._mask] = EncodedFrame(
            payloads, out, keyframe, codec, sum(map(len, payloads))
        )
        if keyframe:
            self.last_keyframe = index
        if self._video:
            if keyframe:
                self._gop = [frame]
                self._gop_start = index
                self._gop_bytes = len(data)
                self._gop_since = now
            elif self._gop:
                self._gop_bytes += len(data)
                self._gop.append(frame)
            if self._gop and (
                self._gop_bytes > self._tuning.gop_cache_bytes
                or now - self._gop_since >= self._tuning.gop_cache_s
            ):
                self._drop_gop()
        self.head = index + 1
        self.frames_in += 1
        if self.fanout.writers:
            self.fanout.send(frame, index)
        tee = self.tee
        if tee is not None:
            tee(data, out, keyframe, now)
        packager_tee = self.packager_tee
        if packager_tee is not None:
            packager_tee(data, out, keyframe, now)
        self._wake()

    def _drop_gop(self) -> None:
        self._gop = []
        self._gop_start = -1
        self._gop_bytes = 0

    @property
    def gop_cached(self) -> int:
        """Frames a joiner would be sent at once (0: it waits for a keyframe)."""
        return len(self._gop)

    def _wake(self) -> None:
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # -- viewer side ----------------------------------------------------------------

    def frame(self, index: int) -> EncodedFrame | None:
        """The frame at ``index`` if it is still kept (in the ring or the GOP cache)."""
        head = self.head
        if index >= head:
            return None
        if index >= head - self._capacity:
            return self._ring[index & self._mask]
        start = self._gop_start
        if 0 <= start <= index:
            return self._gop[index - start]
        return None

    def wait_frame(self) -> asyncio.Future[None]:
        """A future resolved by the next push.

        One per waiting viewer: a shared future would be cancelled for everyone when one
        viewer's sender stops while awaiting it.
        """
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def join_index(self) -> int | None:
        """Where a new video viewer may start without a keyframe request: the GOP
        cache's keyframe, if one is cached."""
        return self._gop_start if self._gop else None

    def next_keyframe(self, start: int) -> int | None:
        """The first kept keyframe at or after ``start``."""
        if self.last_keyframe < start:
            return None
        index = max(start, self.head - self._capacity)
        while index < self.head:
            frame = self._ring[index & self._mask]
            if frame is not None and frame.keyframe:
                return index
            index += 1
        return None

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, merged with other requests in the interval."""
        if self._request_upstream is None or self._pending_request is not None:
            return
        loop = asyncio.get_running_loop()
        due = self._last_request + self._tuning.keyframe_min_interval_s
        now = loop.time()
        if now >= due:
            self._send_request(now)
        else:
            self._pending_request = loop.call_at(due, self._send_delayed)

    def _send_delayed(self) -> None:
        self._pending_request = None
        self._send_request(asyncio.get_running_loop().time())

    def _send_request(self, now: float) -> None:
        request = self._request_upstream
        if request is None:
            return
        self._last_request = now
        self.keyframe_requests_sent += 1
        request()

    def close(self) -> None:
        self.detach()
        self._wake()


class ViewerTrack(MediaStreamTrack):
    """What one viewer's sender reads: a cursor into a :class:`MediaSource`.

    ``recv()`` returns :class:`EncodedFrame` objects, which the sender's packer turns
    into RTP without encoding (see ``_aiortc.install_packer``).
    """

    def __init__(
        self,
        source: MediaSource,
        *,
        join_burst: bool = True,
        codec: str | None = None,
        switch_codec: Callable[[str], bool] | None = None,
    ) -> None:
        """``join_burst=False``: never start from the GOP cache, only at a new keyframe.
        ``codec``: what the sender sends at first (None: whatever comes);
        ``switch_codec(codec)`` makes it send another one it negotiated, or answers False.
        """
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._video = source.kind == "video"
        self._cursor = source.head
        self._epoch = source.epoch
        self._waiting_keyframe = self._video
        self._starting = False  # the next frame starts a picture: check its codec
        self._codec = codec
        self._switch_codec = switch_codec
        self._last_request = -1e9
        # catch-up burst: frames before _catch_up_end get timestamps packed before
        # _catch_up_ts, the timestamp of frame _catch_up_end - 1
        self._catch_up_end = 0
        self._catch_up_ts = 0
        self.frames_sent = 0
        self.skips = 0
        self._direct = False  # the fan-out sends the frames (send_directly)
        self._pulled = False  # recv() gave frames
        self._parked: asyncio.Future[None] | None = None
        if self._video:
            start = source.join_index() if join_burst else None
            newest = source.frame(source.head - 1)
            if start is not None and newest is not None:
                self._cursor = start
                self._waiting_keyframe = False
                self._starting = True
                self._catch_up_end = source.head
                self._catch_up_ts = newest.timestamp
            else:
                self.request_keyframe()

    @property
    def source(self) -> MediaSource:
        return self._source

    @property
    def waiting_keyframe(self) -> bool:
        return self._waiting_keyframe

    def request_keyframe(self) -> None:
        """This viewer needs a keyframe (it joined, lost a picture, or fell behind)."""
        self._last_request = time.monotonic()
        self._source.request_keyframe()

    def _takes(self, frame: EncodedFrame) -> bool:
        """Whether the sender can send ``frame``'s codec, switching to it if need be."""
        if self._codec is None or frame.codec == self._codec:
            return True
        if self._switch_codec is None or not self._switch_codec(frame.codec):
            return False
        log.info("%s viewer switches %s -> %s", self.kind, self._codec, frame.codec)
        self._codec = frame.codec
        return True

    # -- where the frames go ------------------------------------------------------------

    def send_directly(self) -> bool:
        """From now on the relay's fan-out sends this viewer's frames
        (:mod:`livecast.ingest.fanout`), pulling them with :meth:`poll` and
        :meth:`takes_next`; ``recv()`` then gives nothing and returns only once the track
        ends. False if ``recv()`` already gave frames (they went out another way)."""
        if self._pulled:
            return False
        self._direct = True
        return True

    def stop(self) -> None:
        super().stop()
        if self._parked is not None and not self._parked.done():
            self._parked.set_result(None)

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        if self._direct:
            if self.readyState == "live":
                self._parked = asyncio.get_running_loop().create_future()
                await self._parked
            raise MediaStreamError
        while True:
            frame = self.poll()
            if frame is not None:
                self._pulled = True
                return frame
            await self._source.wait_frame()

    def takes_next(self, index: int) -> bool:
        """Whether the frame just pushed at ``index`` is simply this viewer's next one
        (the steady state of a viewer that is live); if so the cursor moves past it.
        Otherwise :meth:`poll` applies the rules (a keyframe to wait for, a catch-up
        burst, a new publisher)."""
        if (
            self._cursor == index
            and not self._waiting_keyframe
            and not self._starting
            and self._epoch == self._source.epoch
            and index >= self._catch_up_end
        ):
            self._cursor = index + 1
            self.frames_sent += 1
            return True
        return False

    def fall_behind(self) -> None:
        """The viewer cannot take frames now (its socket is backed up): skip to the
        next keyframe (video) or the newest frame (audio), as one that fell out of the
        ring does."""
        self.skips += 1
        self._catch_up_end = 0
        self._cursor = self._source.head
        if self._video and not self._waiting_keyframe:
            self._waiting_keyframe = True
            self.request_keyframe()

    def poll(self) -> EncodedFrame | None:
        """The viewer's next frame if there is one now, else None."""
        source = self._source
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            cursor = self._cursor
            if cursor >= source.head:
                return None
            if self._epoch != source.epoch:
                # a new publisher: its stream starts over at a keyframe, and
                # nothing before that keyframe decodes against what came before
                self._epoch = source.epoch
                self._catch_up_end = 0
                if self._video and not self._waiting_keyframe:
                    self._waiting_keyframe = True
                    self.request_keyframe()
            if self._waiting_keyframe:
                start = source.next_keyframe(cursor)
                if start is None:
                    self._cursor = source.head
                    if time.monotonic() - self._last_request >= (source._tuning.keyframe_retry_s):
                        self.request_keyframe()
                else:
                    self._cursor = start
                    self._waiting_keyframe = False
                    self._starting = True
                continue
            frame = source.frame(cursor)
            if frame is None:  # fell out of the ring: skip ahead
                self.skips += 1
                self._catch_up_end = 0
                if self._video:
                    self._waiting_keyframe = True
                    self.request_keyframe()
                else:
                    self._cursor = source.head - 1
                continue
            self._cursor = cursor + 1
            if self._starting:
                self._starting = False
                if not self._takes(frame):  # the hub closes a viewer in that case
                    self._waiting_keyframe = True
                    continue
            self.frames_sent += 1
            if cursor < self._catch_up_end:
                behind = self._catch_up_end - 1 - cursor
                timestamp = (self._catch_up_ts - behind * _CATCH_UP_STEP) & _U32
                burst = EncodedFrame(
                    frame.payloads, timestamp, frame.keyframe, frame.codec, frame.size
                )
                burst.runs = frame.runs
                return burst
            return frame
