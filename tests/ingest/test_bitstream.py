"""Picture sizes read from encoded keyframes, as the recorder needs them for its tracks."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest

from livecast.ingest._bitstream import h264_parameter_sets, h264_picture_size, vp8_picture_size


def _keyframe(encoder: str, width: int, height: int, options: dict[str, str]) -> bytes:
    context = av.CodecContext.create(encoder, "w")
    assert isinstance(context, av.VideoCodecContext)
    context.width, context.height = width, height
    context.pix_fmt = "yuv420p"
    context.time_base = Fraction(1, 90_000)
    context.options = options
    frame = av.VideoFrame(width, height, "yuv420p")
    frame.pts = 0
    return b"".join(bytes(p) for p in [*context.encode(frame), *context.encode(None)])


SIZES = [(160, 96), (176, 100), (642, 362), (1280, 720)]


@pytest.mark.parametrize("profile", ["baseline", "high"])
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_h264_size_comes_from_the_sps(profile: str, width: int, height: int) -> None:
    data = _keyframe("libx264", width, height, {"profile": profile, "tune": "zerolatency"})
    sets = h264_parameter_sets(data)
    assert sets is not None
    assert h264_picture_size(sets[0]) == (width, height)


def test_h264_frame_without_parameter_sets_is_not_a_start() -> None:
    data = _keyframe("libx264", 160, 96, {"tune": "zerolatency"})
    slices = b"".join(
        b"\x00\x00\x00\x01" + unit
        for unit in data.split(b"\x00\x00\x01")[1:]
        if unit and unit[0] & 0x1F not in (7, 8)
    )
    assert h264_parameter_sets(slices) is None
    with pytest.raises(ValueError, match="SPS"):
        h264_picture_size(b"\x67\x42")


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_vp8_size_comes_from_the_keyframe_header(width: int, height: int) -> None:
    assert vp8_picture_size(_keyframe("libvpx", width, height, {})) == (width, height)
    assert vp8_picture_size(b"\x01" * 20) is None  # an interframe
