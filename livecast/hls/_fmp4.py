"""The few ISO BMFF boxes fragmented MP4 for HLS needs, written by hand (ISO/IEC 14496-12).

CMAF track files (ISO/IEC 23000-19): each file carries one track, video or audio, and
each track is its own HLS rendition. An init segment (``ftyp`` + ``moov`` with the one
``trak`` and ``mvex``) and fragments (``moof`` + ``mdat``, one ``traf``), one fragment
per partial segment. Video is H.264 in ``avc1`` (ISO/IEC 14496-15: parameter sets in the ``avcC``
record, samples length-prefixed); audio is AAC-LC in ``mp4a``. There are no B-frames in
what WebRTC publishers send, so decode time is presentation time and no composition
offsets are written.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "AudioTrack",
    "Sample",
    "VideoTrack",
    "annex_b_to_avcc",
    "fragment",
    "init_segment",
]

VIDEO_TRACK_ID: Final = 1
AUDIO_TRACK_ID: Final = 2
_MATRIX: Final = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
# sample_flags (14496-12 8.8.3.1): a sync sample depends on nothing; others do
_SYNC_FLAGS: Final = 0x02000000
_NON_SYNC_FLAGS: Final = 0x01010000
# NAL unit types kept out of samples: SPS, PPS (in avcC) and access unit delimiters
_OUT_OF_BAND: Final = frozenset({7, 8, 9})


@dataclass(frozen=True, slots=True)
class VideoTrack:
    sps: bytes
    pps: bytes
    width: int
    height: int
    timescale: int = 90_000

    @property
    def codec(self) -> str:
        """The RFC 6381 codec string (``CODECS`` in the multivariant playlist)."""
        return f"avc1.{self.sps[1]:02x}{self.sps[2]:02x}{self.sps[3]:02x}"


@dataclass(frozen=True, slots=True)
class AudioTrack:
    audio_specific_config: bytes  # AAC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1)
    sample_rate: int
    channels: int
    codec: str = "mp4a.40.2"  # AAC-LC


@dataclass(frozen=True, slots=True)
class Sample:
    data: bytes
    duration: int  # in the track's timescale
    sync: bool = True


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _descriptor(tag: int, *payload: bytes) -> bytes:
    body = b"".join(payload)
    if len(body) > 0x7F:
        raise ValueError("descriptor too long")
    return bytes((tag, len(body))) + body


def annex_b_to_avcc(units: Sequence[bytes]) -> bytes:
    """An access unit's NAL units, 4-byte length-prefixed, without parameter sets or AUDs."""
    return b"".join(
        struct.pack(">I", len(unit)) + unit
        for unit in units
        if unit and unit[0] & 0x1F not in _OUT_OF_BAND
    )


def _avc1(track: VideoTrack) -> bytes:
    sps, pps = track.sps, track.pps
    avcc = _box(
        b"avcC",
        bytes((1, sps[1], sps[2], sps[3], 0xFF, 0xE1)),
        struct.pack(">H", len(sps)),
        sps,
        b"\x01",
        struct.pack(">H", len(pps)),
        pps,
    )
    return _box(
        b"avc1",
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),  # pre_defined, reserved
        struct.pack(">HH", track.width, track.height),
        struct.pack(">II", 0x00480000, 0x00480000),  # 72 dpi
        bytes(4),
        struct.pack(">H", 1),  # frame_count
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x18, -1),
        avcc,
    )


def _mp4a(track: AudioTrack) -> bytes:
    decoder_config = _descriptor(
        0x04,
        bytes((0x40, 0x15)),  # MPEG-4 audio; audio stream, upstream 0, reserved 1
        bytes(3),  # bufferSizeDB
        struct.pack(">II", 0, 0),  # maxBitrate, avgBitrate (unknown)
        _descriptor(0x05, track.audio_specific_config),
    )
    es = _descriptor(0x03, struct.pack(">HB", 0, 0), decoder_config, _descriptor(0x06, b"\x02"))
    return _box(
        b"mp4a",
        bytes(6),
        struct.pack(">H", 1),
        bytes(8),
        struct.pack(">HH", track.channels, 16),
        bytes(4),
        struct.pack(">I", track.sample_rate << 16),
        _full_box(b"esds", 0, 0, es),
    )


def _trak(track_id: int, timescale: int, handler: bytes, entry: bytes, size: bytes) -> bytes:
    video = handler == b"vide"
    tkhd = _full_box(
        b"tkhd",
        0,
        3,  # enabled, in movie
        struct.pack(">IIII", 0, 0, track_id, 0),
        struct.pack(">I", 0),  # duration: fragmented
        bytes(8),
        struct.pack(">hhhh", 0, 0, 0 if video else 0x0100, 0),
        _MATRIX,
        size,
    )
    mdhd = _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, 0x55C4, 0))
    name = b"VideoHandler\x00" if video else b"SoundHandler\x00"
    hdlr = _full_box(b"hdlr", 0, 0, struct.pack(">I", 0), handler, bytes(12), name)
    media_header = (
        _full_box(b"vmhd", 0, 1, bytes(8)) if video else _full_box(b"smhd", 0, 0, bytes(4))
    )
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1)))
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), entry),
        _full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        _full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        _full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        _full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    minf = _box(b"minf", media_header, dinf, stbl)
    return _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))


def init_segment(track: VideoTrack | AudioTrack) -> bytes:
    """``ftyp`` + ``moov`` of one CMAF track: H.264 video (id 1) or AAC audio (id 2)."""
    ftyp = _box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6", b"cmfc", b"mp41")
    if isinstance(track, VideoTrack):
        track_id = VIDEO_TRACK_ID
        trak = _trak(
            track_id,
            track.timescale,
            b"vide",
            _avc1(track),
            struct.pack(">II", track.width << 16, track.height << 16),
        )
    else:
        track_id = AUDIO_TRACK_ID
        trak = _trak(track_id, track.sample_rate, b"soun", _mp4a(track), struct.pack(">II", 0, 0))
    mvhd = _full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, 1000, 0),
        struct.pack(">IH", 0x00010000, 0x0100),
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", track_id + 1),
    )
    trex = _full_box(b"trex", 0, 0, struct.pack(">IIIII", track_id, 1, 0, 0, 0))
    return ftyp + _box(b"moov", mvhd, trak, _box(b"mvex", trex))


def _traf(track_id: int, base_time: int, samples: Sequence[Sample], data_offset: int) -> bytes:
    video = track_id == VIDEO_TRACK_ID
    flags = 0x000301 | (0x000400 if video else 0)  # data offset, durations, sizes(, flags)
    entries = b"".join(
        struct.pack(">III", s.duration, len(s.data), _SYNC_FLAGS if s.sync else _NON_SYNC_FLAGS)
        if video
        else struct.pack(">II", s.duration, len(s.data))
        for s in samples
    )
    return _box(
        b"traf",
        _full_box(b"tfhd", 0, 0x020000, struct.pack(">I", track_id)),  # default-base-is-moof
        _full_box(b"tfdt", 1, 0, struct.pack(">Q", base_time)),
        _full_box(b"trun", 0, flags, struct.pack(">Ii", len(samples), data_offset), entries),
    )


def fragment(sequence: int, track_id: int, base_time: int, samples: Sequence[Sample]) -> bytes:
    """One ``moof`` + ``mdat`` of one track: its samples from decode time ``base_time``
    (in the track's timescale)."""
    mfhd = _full_box(b"mfhd", 0, 0, struct.pack(">I", sequence))
    size = len(_box(b"moof", mfhd, _traf(track_id, base_time, samples, 0)))
    traf = _traf(track_id, base_time, samples, size + 8)  # the samples start past mdat's header
    return _box(b"moof", mfhd, traf) + _box(b"mdat", b"".join(s.data for s in samples))
