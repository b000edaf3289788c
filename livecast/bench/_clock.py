"""The wall clock, painted into video by a publisher and read back in the browser.

Each frame's top two thirds is a grid of 8 x 4 large blocks, black or white: 24 bits of
the unix time in milliseconds (modulo 2**24, about 4.6 hours) and an 8-bit check, so a
block that compression smeared across the threshold is a rejected sample, never a wrong
one. The bottom third is a sliding gradient, so the encoder has motion to code as it
would for a camera. Blocks of 80 x 60 pixels at 640 x 360 survive any bitrate a stream
is sent at; the page reads them from a 64 x 36 canvas, each block averaged over a few
pixels around its centre.

:class:`ClockTrack` paints the time when a frame is due and encodes it at once with
libx264 set up as a seller's encoder is (constrained baseline, no B-frames, zero
latency, a keyframe every 2 s, and one more when a viewer or the packager asks), so the
time in a picture is its capture time and encoding is part of what is measured.
:data:`READER_JS` is the page's side: it draws the ``<video>`` into a canvas on every
frame the browser presents (``requestVideoFrameCallback``; animation frames where that is
missing) and keeps ``wall clock at display - painted time`` per distinct painted time.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any, Final

import av
from aiortc.mediastreams import MediaStreamTrack

__all__ = ["HEIGHT", "READER_JS", "WIDTH", "ClockTrack", "paint_clock", "read_clock"]

WIDTH, HEIGHT, FPS = 640, 360, 30
_COLS, _ROWS = 8, 4
_BLOCK_W, _BLOCK_H = WIDTH // _COLS, (HEIGHT * 2 // 3) // _ROWS
_VALUE_BITS: Final = 24
_MODULUS: Final = 1 << _VALUE_BITS
_WHITE, _BLACK = bytes([235]) * _BLOCK_W, bytes([16]) * _BLOCK_W
_GRADIENT = bytes(32 + x * 192 // WIDTH for x in range(WIDTH))
_CHROMA = bytes([128]) * (WIDTH * HEIGHT // 4)
_VIDEO_CLOCK: Final = 90_000


def _check(value: int) -> int:
    return (value ^ value >> 8 ^ value >> 16 ^ 0xA5) & 0xFF


def _bits(milliseconds: int) -> int:
    value = milliseconds % _MODULUS
    return value | _check(value) << _VALUE_BITS


def paint_clock(milliseconds: int, frame_index: int) -> Any:
    """A 640 x 360 yuv420p frame showing ``milliseconds`` (the unix time)."""
    bits = _bits(milliseconds)
    rows = []
    for row in range(_ROWS):
        line = b"".join(
            _WHITE if bits >> (row * _COLS + col) & 1 else _BLACK for col in range(_COLS)
        )
        rows.append(line * _BLOCK_H)
    shift = (frame_index * 8) % WIDTH
    rows.append((_GRADIENT[shift:] + _GRADIENT[:shift]) * (HEIGHT - _ROWS * _BLOCK_H))
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    frame.planes[0].update(b"".join(rows))
    frame.planes[1].update(_CHROMA)
    frame.planes[2].update(_CHROMA)
    return frame


def read_clock(frame: Any) -> int | None:
    """The time painted into a decoded ``frame`` (modulo 2**24 ms), None if the check
    fails; what :data:`READER_JS` does, for Python-side tests and decoders."""
    plane = frame.reformat(width=WIDTH, height=HEIGHT, format="yuv420p").planes[0]
    data, stride = bytes(plane), plane.line_size
    bits = 0
    for bit in range(_COLS * _ROWS):
        row, col = divmod(bit, _COLS)
        x, y = col * _BLOCK_W + _BLOCK_W // 2, row * _BLOCK_H + _BLOCK_H // 2
        if data[y * stride + x] > 128:
            bits |= 1 << bit
    value = bits & (_MODULUS - 1)
    return value if bits >> _VALUE_BITS == _check(value) else None


def _new_encoder(bitrate: int) -> Any:
    gop = 2 * FPS
    encoder: Any = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.framerate = fractions.Fraction(FPS, 1)
    encoder.bit_rate = bitrate
    encoder.gop_size = gop
    encoder.profile = "Baseline"
    encoder.options = {
        "preset": "veryfast",
        "tune": "zerolatency",
        "bf": "0",
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
    }
    return encoder


class ClockTrack(MediaStreamTrack):
    """30 fps H.264 of the wall clock, encoded live as each frame is due."""

    kind = "video"

    def __init__(self, bitrate: int) -> None:
        super().__init__()
        self._encoder = _new_encoder(bitrate)
        self._index = 0
        self._start: float | None = None
        self._keyframe_wanted = False
        self._pending: list[Any] = []

    def request_keyframe(self) -> None:
        """The next frame is encoded as a keyframe (a viewer's PLI, the packager's ask)."""
        self._keyframe_wanted = True

    async def recv(self) -> Any:
        loop = asyncio.get_running_loop()
        while not self._pending:
            if self._start is None:
                self._start = loop.time()
            delay = self._start + self._index / FPS - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = paint_clock(round(time.time() * 1000), self._index)
            frame.pts = self._index
            if self._keyframe_wanted:
                self._keyframe_wanted = False
                frame.pict_type = av.video.frame.PictureType.I
            self._pending.extend(self._encoder.encode(frame))
            self._index += 1
        packet = self._pending.pop(0)
        packet.pts = packet.pts * (_VIDEO_CLOCK // FPS)
        packet.time_base = fractions.Fraction(1, _VIDEO_CLOCK)
        return packet


READER_JS: Final = """
(video) => {
  const COLS = 8, ROWS = 4, BITS = 24, MODULUS = 2 ** BITS;
  const canvas = document.createElement('canvas');
  canvas.width = 64;
  canvas.height = 36;
  const context = canvas.getContext('2d', { willReadFrequently: true });
  const glass = {
    method: 'requestVideoFrameCallback' in video ? 'requestVideoFrameCallback' : 'animationFrame',
    latencies: [],
    rejected: 0,
    last: -1,
    reset() {
      glass.latencies = [];
      glass.rejected = 0;
    },
    report: () => ({ latencies: glass.latencies, rejected: glass.rejected }),
  };
  const check = (v) => (v ^ (v >>> 8) ^ (v >>> 16) ^ 0xa5) & 0xff;
  function read() {
    context.drawImage(video, 0, 0, 64, 36);
    const pixels = context.getImageData(0, 0, 64, 24).data;
    let value = 0, sum = 0;
    for (let bit = 0; bit < COLS * ROWS; bit++) {
      const row = Math.floor(bit / COLS), col = bit % COLS;
      let luma = 0;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -2; dx <= 1; dx++) {
          luma += pixels[((row * 6 + 3 + dy) * 64 + col * 8 + 4 + dx) * 4 + 1];
        }
      }
      if (luma / 12 > 128) {
        if (bit < BITS) value += 2 ** bit;
        else sum |= 1 << (bit - BITS);
      }
    }
    return sum === check(value) ? value : null;
  }
  function sample(displayedAt) {
    if (video.videoWidth === 0 || video.readyState < 2) return;
    const value = read();
    if (value === null) {
      glass.rejected += 1;
      return;
    }
    if (value === glass.last) return;  // the same picture, presented again
    glass.last = value;
    // signed: a picture shown within a few ms of its painting may read a hair below zero
    let latency = (Math.round(displayedAt) - value) % MODULUS;
    if (latency > MODULUS / 2) latency -= MODULUS;
    else if (latency < -MODULUS / 2) latency += MODULUS;
    if (glass.latencies.length < 100000) glass.latencies.push(latency);
  }
  if (glass.method === 'requestVideoFrameCallback') {
    // When the picture shows, on the system clock (Date.now, the clock the publisher
    // paints), not on performance.timeOrigin, which may be a few ms off it.
    const onFrame = (_now, metadata) => {
      sample(Date.now() + (metadata.expectedDisplayTime - performance.now()));
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  } else {
    const onFrame = () => {
      sample(Date.now());
      requestAnimationFrame(onFrame);
    };
    requestAnimationFrame(onFrame);
  }
  window.__glass = glass;
  return glass.method;
}
"""
