"""Init segments read back: the codec string, picture size and channel count the
multivariant playlist of a replay names, from the bytes the packager wrote."""

from __future__ import annotations

from livecast.hls import _fmp4
from livecast.replay._init import AudioInfo, VideoInfo, audio_info, video_info


def test_an_h264_init_segment_gives_its_codec_and_picture_size() -> None:
    for sps, size in [
        (bytes((0x67, 0x42, 0xC0, 0x1E, 0x95)), (160, 96)),  # Constrained Baseline 3.0
        (bytes((0x67, 0x64, 0x00, 0x1F, 0xAC)), (1280, 720)),  # High 3.1
    ]:
        track = _fmp4.VideoTrack(sps, b"\x68\xce", *size)
        assert video_info(_fmp4.init_segment(track)) == VideoInfo(track.codec, *size)
        assert audio_info(_fmp4.init_segment(track)) is None


def test_an_aac_init_segment_gives_its_object_type_and_channels() -> None:
    for config, channels, codec in [
        (bytes((0x11, 0x90)), 2, "mp4a.40.2"),  # AAC-LC, 48 kHz, stereo
        (bytes((0x2B, 0x88)), 1, "mp4a.40.5"),  # HE-AAC
        (bytes((0xF8, 0x20, 0x40)), 2, "mp4a.40.33"),  # an escaped object type
    ]:
        track = _fmp4.AudioTrack(config, 48_000, channels)
        assert audio_info(_fmp4.init_segment(track)) == AudioInfo(codec, channels)
        assert video_info(_fmp4.init_segment(track)) is None


def test_what_is_not_an_init_segment_gives_nothing() -> None:
    whole = _fmp4.init_segment(_fmp4.AudioTrack(bytes((0x11, 0x90)), 48_000, 2))
    for data in (b"", b"\x00\x00\x00\x08free", whole[:40], whole[:-30], b"\xff" * 64):
        assert audio_info(data) is None
        assert video_info(data) is None
