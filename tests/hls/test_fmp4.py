"""The hand-written ISO BMFF boxes: sizes that nest, sample tables that point at the
right bytes of ``mdat``, and an init segment FFmpeg reads the tracks from."""

from __future__ import annotations

import io
import struct

import av

from livecast.hls import _fmp4
from livecast.hls._aac import AacEncoder

Box = tuple[bytes, bytes]  # (type, payload)
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"dinf"}

SPS = bytes.fromhex("6742c01e8c8d40a0fd00f0884535")
PPS = bytes.fromhex("68ce3c80")


def boxes(data: bytes) -> list[Box]:
    """Top-level boxes; every size must add up exactly."""
    out = []
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        assert size >= 8
        assert pos + size <= len(data)
        out.append((kind, data[pos + 8 : pos + size]))
        pos += size
    assert pos == len(data)
    return out


def find(data: bytes, path: list[bytes]) -> list[bytes]:
    """Payloads of the boxes at ``path`` (container boxes descended)."""
    found = []
    for kind, payload in boxes(data):
        if kind == path[0]:
            if len(path) == 1:
                found.append(payload)
            elif kind in _CONTAINERS:
                found.extend(find(payload, path[1:]))
    return found


def test_fragment_sample_tables_point_at_their_bytes_in_mdat() -> None:
    video = [
        _fmp4.Sample(b"\x00\x00\x00\x02\x65\x88", 3000, True),
        _fmp4.Sample(b"\x00\x00\x00\x03\x41\x9a\x01", 3003, False),
    ]
    audio = [_fmp4.Sample(b"\x21\x10\x04", 1024), _fmp4.Sample(b"\x21\x10\x05\x06", 1024)]
    for track_id, samples, base in (
        (_fmp4.VIDEO_TRACK_ID, video, 450_000),
        (_fmp4.AUDIO_TRACK_ID, audio, 240_000),
    ):
        data = _fmp4.fragment(7, track_id, base, samples)
        top = boxes(data)
        assert [kind for kind, _ in top] == [b"moof", b"mdat"]
        moof_size = 8 + len(top[0][1])
        assert struct.unpack(">I", find(data, [b"moof", b"mfhd"])[0][4:])[0] == 7
        trafs = find(data, [b"moof", b"traf"])
        assert len(trafs) == 1  # CMAF: one track per file
        traf = trafs[0]
        assert struct.unpack(">I", find(traf, [b"tfhd"])[0][4:8])[0] == track_id
        tfdt = find(traf, [b"tfdt"])[0]
        assert tfdt[0] == 1  # 64-bit decode time
        assert struct.unpack(">Q", tfdt[4:])[0] == base
        trun = find(traf, [b"trun"])[0]
        flags = int.from_bytes(trun[1:4], "big")
        count, offset = struct.unpack(">Ii", trun[4:12])
        assert count == len(samples)
        per = 12 if flags & 0x400 else 8
        pos = offset
        for i, sample in enumerate(samples):
            entry = trun[12 + i * per : 12 + (i + 1) * per]
            duration, size = struct.unpack(">II", entry[:8])
            assert (duration, size) == (sample.duration, len(sample.data))
            if per == 12:
                sync = struct.unpack(">I", entry[8:])[0] & 0x10000 == 0
                assert sync == sample.sync
            # data_offset is from the start of moof: the bytes there are the sample's
            assert data[pos : pos + size] == sample.data
            assert pos >= moof_size + 8
            pos += size
        assert len(data) == moof_size + 8 + sum(len(s.data) for s in samples)


def test_init_segments_declare_one_track_each_ffmpeg_reads() -> None:
    aac = AacEncoder()
    video_init = _fmp4.init_segment(_fmp4.VideoTrack(SPS, PPS, 320, 240))
    audio_init = _fmp4.init_segment(_fmp4.AudioTrack(aac.audio_specific_config, 48_000, 2))
    for init in (video_init, audio_init):
        assert [kind for kind, _ in boxes(init)] == [b"ftyp", b"moov"]
        assert b"cmfc" in boxes(init)[0][1]
        assert len(find(init, [b"moov", b"trak"])) == 1
        assert len(find(init, [b"moov", b"mvex", b"trex"])) == 1
    avcc = find(video_init, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"])[0]
    assert SPS in avcc
    assert PPS in avcc
    assert _fmp4.VideoTrack(SPS, PPS, 320, 240).codec == "avc1.42c01e"
    with av.open(io.BytesIO(video_init), "r") as container:
        assert len(container.streams) == 1
        video = container.streams.video[0].codec_context
        assert (video.name, video.width, video.height) == ("h264", 320, 240)
    with av.open(io.BytesIO(audio_init), "r") as container:
        assert len(container.streams) == 1
        audio = container.streams.audio[0].codec_context
        assert (audio.name, audio.sample_rate, audio.channels) == ("aac", 48_000, 2)


def test_annex_b_becomes_length_prefixed_without_parameter_sets() -> None:
    idr = b"\x65\x88\x84\x00"
    sample = _fmp4.annex_b_to_avcc([b"\x09\xf0", SPS, PPS, idr])
    assert sample == struct.pack(">I", len(idr)) + idr
