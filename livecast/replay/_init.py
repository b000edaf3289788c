"""What a replay's init segments say about their track: the RFC 6381 codec string, the
picture size or the channel count (``CODECS``, ``RESOLUTION`` and ``CHANNELS`` in the
multivariant playlist). A few ISO BMFF boxes read by hand (ISO/IEC 14496-12, -14, -15).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["AudioInfo", "VideoInfo", "audio_info", "video_info"]

_SAMPLE_ENTRY = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd")
_VISUAL_ENTRY_SIZE = 78  # VisualSampleEntry's fields before its boxes
_AUDIO_ENTRY_SIZE = 28  # AudioSampleEntry's fields before its boxes


@dataclass(frozen=True, slots=True)
class VideoInfo:
    codec: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class AudioInfo:
    codec: str
    channels: int


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Each box in ``data[start:end]``: its type, where its payload starts and its end."""
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1 and at + 16 <= end:
            size, header = struct.unpack_from(">Q", data, at + 8)[0], 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            return
        yield kind, at + header, at + size
        at += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for found, payload, box_end in _boxes(data, start, end):
        if found == kind:
            return payload, box_end
    return None


def _sample_entry(data: bytes) -> tuple[bytes, int, int] | None:
    """The first sample entry of the init segment's track: its type, payload, end."""
    span: tuple[int, int] | None = (0, len(data))
    for kind in _SAMPLE_ENTRY:
        if span is None:
            return None
        span = _child(data, span[0], span[1], kind)
    if span is None:
        return None
    return next(_boxes(data, span[0] + 8, span[1]), None)  # past version, flags, count


def video_info(data: bytes) -> VideoInfo | None:
    """An H.264 (``avc1``/``avc3``) init segment's codec and picture size; None otherwise."""
    entry = _sample_entry(data)
    if entry is None or entry[0] not in (b"avc1", b"avc3"):
        return None
    kind, payload, end = entry
    if payload + _VISUAL_ENTRY_SIZE > end:
        return None
    width, height = struct.unpack_from(">HH", data, payload + 24)
    avcc = _child(data, payload + _VISUAL_ENTRY_SIZE, end, b"avcC")
    if avcc is None or avcc[0] + 4 > avcc[1]:
        return None
    profile, compatibility, level = data[avcc[0] + 1 : avcc[0] + 4]
    codec = f"{kind.decode()}.{profile:02x}{compatibility:02x}{level:02x}"
    return VideoInfo(codec, width, height)


def audio_info(data: bytes) -> AudioInfo | None:
    """An AAC (``mp4a``) init segment's codec (``mp4a.40.<object type>``) and channel
    count; None otherwise."""
    entry = _sample_entry(data)
    if entry is None or entry[0] != b"mp4a":
        return None
    _, payload, end = entry
    if payload + _AUDIO_ENTRY_SIZE > end:
        return None
    (channels,) = struct.unpack_from(">H", data, payload + 16)
    esds = _child(data, payload + _AUDIO_ENTRY_SIZE, end, b"esds")
    if esds is None:
        return None
    try:
        codec = _esds_codec(data[esds[0] + 4 : esds[1]])
    except IndexError:
        return None
    return AudioInfo(codec, channels)


def _descriptor(data: bytes, at: int) -> tuple[int, int, int]:
    """The descriptor at ``at`` (ISO/IEC 14496-1 8.3.3): its tag, payload start, end."""
    tag, at, size = data[at], at + 1, 0
    for _ in range(4):
        byte, at = data[at], at + 1
        size = size << 7 | byte & 0x7F
        if not byte & 0x80:
            break
    return tag, at, at + size


def _esds_codec(data: bytes) -> str:
    tag, at, _ = _descriptor(data, 0)
    if tag != 0x03:
        raise IndexError("no ES descriptor")
    flags = data[at + 2]
    at += 3
    if flags & 0x80:  # streamDependenceFlag
        at += 2
    if flags & 0x40:  # URL_Flag
        at += 1 + data[at]
    if flags & 0x20:  # OCRstreamFlag
        at += 2
    tag, at, _ = _descriptor(data, at)
    if tag != 0x04:
        raise IndexError("no decoder config")
    object_type = data[at]
    if object_type != 0x40:  # not MPEG-4 audio
        return f"mp4a.{object_type:02x}"
    tag, at, _ = _descriptor(data, at + 13)
    if tag != 0x05:
        return "mp4a.40.2"
    audio_object_type = data[at] >> 3
    if audio_object_type == 31:  # escape: 6 more bits
        audio_object_type = 32 + ((data[at] & 0x07) << 3 | data[at + 1] >> 5)
    return f"mp4a.40.{audio_object_type}"
