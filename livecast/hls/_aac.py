"""Opus in, AAC-LC out: the one audio transcode a stream gets for HLS.

Safari and iOS play AAC in fMP4 natively and Opus not everywhere, so each packaged
stream decodes its publisher's Opus once and encodes AAC once (FFmpeg's native ``aac``
encoder through PyAV), however many players there are. AAC frames are 1024 samples at
48 kHz; their decode times are counted from the first Opus frame's, and re-anchored
when the Opus timeline jumps (a gap, a publisher that came back) by more than
``_RESYNC_SAMPLES``.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Final

import av
from av.audio.codeccontext import AudioCodecContext

__all__ = ["AacEncoder", "AacFrame"]

log = logging.getLogger(__name__)

SAMPLE_RATE: Final = 48_000
CHANNELS: Final = 2
FRAME_SAMPLES: Final = 1024
_RESYNC_SAMPLES: Final = SAMPLE_RATE // 10
_BIT_RATE: Final = 96_000

AacFrame = tuple[int, bytes]  # (decode time at 48 kHz, raw AAC frame)


class AacEncoder:
    """Decodes Opus frames and encodes them to AAC, one instance per stream."""

    def __init__(self) -> None:
        self._decoder = av.CodecContext.create("opus", "r")
        encoder = av.CodecContext.create("aac", "w")
        assert isinstance(encoder, AudioCodecContext)
        encoder.sample_rate = SAMPLE_RATE
        encoder.layout = "stereo"
        encoder.format = "fltp"
        encoder.bit_rate = _BIT_RATE
        encoder.time_base = Fraction(1, SAMPLE_RATE)
        encoder.open()
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
