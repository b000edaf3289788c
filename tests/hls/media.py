"""Real encoded media for the HLS tests: H.264 access units from libx264 and Opus
frames from libopus (through PyAV), timed the way the relay hands them on."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
from av.audio.codeccontext import AudioCodecContext
from av.video.codeccontext import VideoCodecContext

from tests.ingest.peers import HEIGHT, WIDTH, draw_counter

FPS = 30
VIDEO_TICKS = 90_000 // FPS
OPUS_SAMPLES = 960


@dataclass(frozen=True)
class Frame:
    data: bytes
    timestamp: int  # on the relay's timeline (90 kHz video, 48 kHz audio)
    keyframe: bool
    at: float  # seconds from the start, when it "arrives"


def h264_frames(
    count: int, *, gop: int = 15, start_ts: int = 1000, size: tuple[int, int] = (WIDTH, HEIGHT)
) -> list[Frame]:
    """``count`` frames at 30 fps of ``size`` showing their counter, a keyframe every ``gop``."""
    encoder = av.CodecContext.create("libx264", "w")
    assert isinstance(encoder, VideoCodecContext)
    encoder.width, encoder.height = size
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, FPS)
    encoder.gop_size = gop
    encoder.options = {"profile": "baseline", "tune": "zerolatency", "bf": "0"}
    encoder.open()
    frames: list[Frame] = []
    for n in range(count):
        picture = draw_counter(n)
        if size != (WIDTH, HEIGHT):
            picture = picture.reformat(width=size[0], height=size[1])
        picture.pts = n
        for packet in encoder.encode(picture):
            index = len(frames)
            frames.append(
                Frame(
                    bytes(packet),
                    (start_ts + index * VIDEO_TICKS) & 0xFFFFFFFF,
                    packet.is_keyframe,
                    index / FPS,
                )
            )
    for packet in encoder.encode(None):
        index = len(frames)
        frames.append(
            Frame(bytes(packet), start_ts + index * VIDEO_TICKS, packet.is_keyframe, index / FPS)
        )
    return frames


def opus_frames(seconds: float, *, start_ts: int = 7) -> list[Frame]:
    """Opus frames of 20 ms of a quiet tone, for ``seconds``."""
    encoder = av.CodecContext.create("libopus", "w")
    assert isinstance(encoder, AudioCodecContext)
    encoder.sample_rate = 48_000
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.time_base = Fraction(1, 48_000)
    encoder.open()
    frames: list[Frame] = []
    count = round(seconds * 48_000 / OPUS_SAMPLES)
    for n in range(count):
        chunk = av.AudioFrame(format="s16", layout="stereo", samples=OPUS_SAMPLES)
        chunk.sample_rate = 48_000
        chunk.pts = n * OPUS_SAMPLES
        tone = bytes((n * 7 + i) % 64 for i in range(chunk.planes[0].buffer_size))
        chunk.planes[0].update(tone)
        for packet in encoder.encode(chunk):
            index = len(frames)
            frames.append(Frame(bytes(packet), start_ts + index * OPUS_SAMPLES, True, index * 0.02))
    return frames
