"""Opus in, AAC-LC out: the one audio transcode a stream gets for HLS.

Safari and iOS play AAC in fMP4 natively and Opus not everywhere, so each packaged
stream decodes its publisher's Opus once and encodes AAC once (FFmpeg's native ``aac``
encoder through PyAV), however many players there are. AAC frames are 1024 samples at
48 kHz; their decode times are counted from the first Opus frame's, and re-anchored
when the Opus timeline jumps (a gap, a publisher that came back) by more than
``_RESYNC_SAMPLES``.

Encoding takes about half a millisecond per 20 ms Opus frame: on the event loop that
is ~2.5% of a core per stream, in the way of every HTTP answer. :class:`AacThread` runs
a stream's encoder in a thread of its own instead (PyAV lets go of the GIL inside the
codec and resampler calls, so it runs beside the loop), fed in order through a queue,
its frames handed back to the loop in order with their decode times.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Final

import av
from av.audio.codeccontext import AudioCodecContext

__all__ = ["AacEncoder", "AacFrame", "AacThread", "silent_frame"]

log = logging.getLogger(__name__)

SAMPLE_RATE: Final = 48_000
CHANNELS: Final = 2
FRAME_SAMPLES: Final = 1024
_RESYNC_SAMPLES: Final = SAMPLE_RATE // 10
_BIT_RATE: Final = 96_000
# Opus frames a worker may fall behind by (5 s of 20 ms frames); past it, frames are
# dropped (the encoder re-anchors after the gap)
_QUEUE_FRAMES: Final = 250
_STOP: Final = b""

AacFrame = tuple[int, bytes]  # (decode time at 48 kHz, raw AAC frame)


def _encoder() -> AudioCodecContext:
    encoder = av.CodecContext.create("aac", "w")
    assert isinstance(encoder, AudioCodecContext)
    encoder.sample_rate = SAMPLE_RATE
    encoder.layout = "stereo"
    encoder.format = "fltp"
    encoder.bit_rate = _BIT_RATE
    encoder.time_base = Fraction(1, SAMPLE_RATE)
    encoder.open()
    return encoder


@functools.cache
def silent_frame() -> bytes:
    """One AAC frame of silence, of the same configuration as :class:`AacEncoder`'s: what
    an audio rendition carries while the publisher sends no audio (made once)."""
    encoder = _encoder()
    packets: list[bytes] = []
    for n in range(8):
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=FRAME_SAMPLES)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = n * FRAME_SAMPLES
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        packets.extend(bytes(p) for p in encoder.encode(frame))
    return packets[-1]  # past the encoder's priming: steady silence


class AacEncoder:
    """Decodes Opus frames and encodes them to AAC, one instance per stream."""

    def __init__(self) -> None:
        self._decoder = av.CodecContext.create("opus", "r")
        encoder = _encoder()
        self._encoder = encoder
        self._resampler = av.AudioResampler(
            format="fltp", layout="stereo", rate=SAMPLE_RATE, frame_size=FRAME_SAMPLES
        )
        self.audio_specific_config = bytes(encoder.extradata or b"")
        self._fed_until: int | None = None  # time (48 kHz) just past the last sample fed
        self._next_out = 0  # decode time of the next AAC frame out

    def encode(self, opus: bytes, time: int) -> list[AacFrame]:
        """AAC frames completed by one Opus frame that starts at ``time`` (48 kHz)."""
        if self._fed_until is None:
            self._fed_until = self._next_out = time
        elif abs(time - self._fed_until) > _RESYNC_SAMPLES:
            self._next_out = max(self._next_out + time - self._fed_until, self._next_out)
            self._fed_until = time
        out: list[AacFrame] = []
        try:
            decoded = self._decoder.decode(av.Packet(opus))
        except av.FFmpegError as exc:
            log.debug("undecodable Opus frame dropped: %s", exc)
            return out
        for frame in decoded:
            self._fed_until += frame.samples
            for chunk in self._resampler.resample(frame):
                for packet in self._encoder.encode(chunk):
                    out.append((self._next_out, bytes(packet)))
                    self._next_out += FRAME_SAMPLES
        return out


class AacThread:
    """One stream's :class:`AacEncoder` in a thread of its own: :meth:`push` on the event
    loop, and ``deliver(frames)`` called back on the loop with the AAC frames each Opus
    frame completed, in the order the Opus frames were pushed."""

    def __init__(self, deliver: Callable[[list[AacFrame]], None], name: str) -> None:
        self._encoder = AacEncoder()
        self.audio_specific_config = self._encoder.audio_specific_config
        self._deliver = deliver
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[tuple[bytes, int]] = queue.SimpleQueue()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"hls-aac-{name}", daemon=True)
        self._thread.start()

    def push(self, opus: bytes, time: int) -> None:
        """Encode one Opus frame that starts at ``time`` (48 kHz)."""
        if not opus:
            return
        if self._queue.qsize() >= _QUEUE_FRAMES:
            if not self.dropped:
                log.warning("the AAC encoder fell %d frames behind; dropping", _QUEUE_FRAMES)
            self.dropped += 1
            return
        self._queue.put((opus, time))

    def close(self) -> None:
        """Stop after the frames already pushed (they are still delivered)."""
        self._queue.put((_STOP, 0))

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        encoder = self._encoder
        while True:
            opus, time = self._queue.get()
            if opus == _STOP:
                break
            frames = encoder.encode(opus, time)
            if frames:
                try:
                    self._loop.call_soon_threadsafe(self._deliver, frames)
                except RuntimeError:  # the loop is closed: nobody listens any more
                    break
