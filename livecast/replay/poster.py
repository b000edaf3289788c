"""A replay's poster: its first keyframe as a JPEG (blocking: run it in a thread)."""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Final

import av
from av.video.codeccontext import VideoCodecContext

__all__ = ["POSTER", "poster_jpeg"]

POSTER: Final = "poster.jpg"
_MAX_WIDTH: Final = 640


def poster_jpeg(init: bytes, segment: bytes) -> bytes | None:
    """The first video frame of ``init`` + ``segment`` (fMP4; a segment starts at a
    keyframe) as a JPEG at most 640 pixels wide; None if nothing decodes."""
    try:
        with av.open(io.BytesIO(init + segment), "r") as container:
            if not container.streams.video:
                return None
            frame = next(container.decode(video=0), None)
    except (av.FFmpegError, StopIteration):
        return None
    if frame is None:
        return None
    width, height = frame.width, frame.height
    if width > _MAX_WIDTH:
        width, height = _MAX_WIDTH, max(2, round(height * _MAX_WIDTH / width / 2) * 2)
    encoder = av.CodecContext.create("mjpeg", "w")
    assert isinstance(encoder, VideoCodecContext)
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.open()
    picture = frame.reformat(width=width, height=height, format="yuvj420p")
    picture.pts = None
    data = b"".join(bytes(p) for p in encoder.encode(picture))
    data += b"".join(bytes(p) for p in encoder.encode(None))
    return data or None
