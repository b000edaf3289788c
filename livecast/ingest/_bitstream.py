"""What the recorder reads from encoded frames without decoding them: an H.264
keyframe's parameter sets (SPS/PPS) and picture size, a VP8 keyframe's picture size."""

from __future__ import annotations

__all__ = ["h264_parameter_sets", "h264_picture_size", "vp8_picture_size"]

_START = b"\x00\x00\x01"
# profile_idc values whose SPS carries chroma format, bit depths and scaling lists
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def _nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B access unit, without start codes."""
    units = []
    pos = data.find(_START)
    while pos != -1:
        start = pos + 3
        pos = data.find(_START, start)
        end = len(data) if pos == -1 else pos
        while end > start and data[end - 1] == 0:  # the zero of a 4-byte start code
            end -= 1
        if end > start:
            units.append(data[start:end])
    return units


def h264_parameter_sets(data: bytes) -> tuple[bytes, bytes] | None:
    """The first SPS and PPS (NAL types 7 and 8) of an Annex B frame, if it has both."""
    sps = pps = None
    for unit in _nal_units(data):
        nal_type = unit[0] & 0x1F
        if nal_type == 7 and sps is None:
            sps = unit
        elif nal_type == 8 and pps is None:
            pps = unit
    return None if sps is None or pps is None else (sps, pps)


class _Bits:
    """An RBSP read bit by bit, with exp-Golomb codes (H.264 7.2, 9.1)."""

    def __init__(self, unit: bytes) -> None:
        # drop emulation prevention bytes (00 00 03 -> 00 00)
        self._data = unit.replace(b"\x00\x00\x03", b"\x00\x00")
        self._pos = 0

    def bit(self) -> int:
        byte = self._data[self._pos >> 3]  # IndexError past the end: a broken SPS
        value = (byte >> (7 - (self._pos & 7))) & 1
        self._pos += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while not self.bit():
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


def h264_picture_size(sps: bytes) -> tuple[int, int]:
    """Width and height (after cropping) an SPS NAL unit describes (H.264 7.3.2.1.1).

    Raises ``ValueError`` if the SPS cannot be read.
    """
    try:
        bits = _Bits(sps[1:])
        profile_idc = bits.bits(8)
        bits.bits(16)  # constraint flags, level_idc
        bits.ue()  # seq_parameter_set_id
        chroma_format_idc = 1
        if profile_idc in _HIGH_PROFILES:
            chroma_format_idc = bits.ue()
            if chroma_format_idc == 3:
                bits.bit()  # separate_colour_plane_flag
            bits.ue()  # bit_depth_luma_minus8
            bits.ue()  # bit_depth_chroma_minus8
            bits.bit()  # qpprime_y_zero_transform_bypass_flag
            if bits.bit():  # seq_scaling_matrix_present_flag
                for index in range(8 if chroma_format_idc != 3 else 12):
                    if bits.bit():
                        _skip_scaling_list(bits, 16 if index < 6 else 64)
        bits.ue()  # log2_max_frame_num_minus4
        poc_type = bits.ue()
        if poc_type == 0:
            bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
        elif poc_type == 1:
            bits.bit()  # delta_pic_order_always_zero_flag
            bits.se()  # offset_for_non_ref_pic
            bits.se()  # offset_for_top_to_bottom_field
            for _ in range(bits.ue()):
                bits.se()
        bits.ue()  # max_num_ref_frames
        bits.bit()  # gaps_in_frame_num_value_allowed_flag
        width_mbs = bits.ue() + 1
        height_units = bits.ue() + 1
        frame_mbs_only = bits.bit()
        if not frame_mbs_only:
            bits.bit()  # mb_adaptive_frame_field_flag
        bits.bit()  # direct_8x8_inference_flag
        crop = (0, 0, 0, 0)
        if bits.bit():  # frame_cropping_flag
            crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue())
    except IndexError:
        raise ValueError("truncated SPS") from None
    crop_x = 2 if chroma_format_idc in (1, 2) else 1
    crop_y = (2 if chroma_format_idc == 1 else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise ValueError(f"SPS gives a {width}x{height} picture")
    return width, height


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale or last


def vp8_picture_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height in a VP8 keyframe's header (RFC 6386 9.1), if it is one."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None
