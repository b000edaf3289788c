"""The frame tap: whole frames leave as soon as they are complete, once, in order."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from livecast.ingest._aiortc import _FrameTap


def _packet(seq: int, timestamp: int, data: bytes, marker: bool) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=timestamp, ssrc=1234)
    packet.marker = int(marker)
    packet._data = data  # type: ignore[attr-defined]
    return packet


def _tap() -> tuple[_FrameTap, list[tuple[bytes, int]]]:
    frames: list[tuple[bytes, int]] = []
    tap = _FrameTap(capacity=64, prefetch=0, is_video=True, sink=lambda d, t: frames.append((d, t)))
    return tap, frames


def test_a_frame_leaves_at_its_marker_packet() -> None:
    tap, frames = _tap()
    tap.add(_packet(10, 3000, b"a", marker=False))
    tap.add(_packet(11, 3000, b"b", marker=False))
    assert frames == []
    tap.add(_packet(12, 3000, b"c", marker=True))
    assert frames == [(b"abc", 3000)]  # without waiting for the next frame
    tap.add(_packet(13, 6000, b"d", marker=True))
    assert frames == [(b"abc", 3000), (b"d", 6000)]
    assert tap.media_ssrc == 1234


def test_reordered_packets_still_make_each_frame_once_in_order() -> None:
    tap, frames = _tap()
    tap.add(_packet(10, 3000, b"a", marker=False))
    tap.add(_packet(12, 3000, b"c", marker=True))  # 11 is late
    assert frames == []
    tap.add(_packet(11, 3000, b"b", marker=False))
    tap.add(_packet(13, 6000, b"d", marker=True))
    tap.add(_packet(14, 9000, b"e", marker=True))
    assert frames == [(b"abc", 3000), (b"d", 6000), (b"e", 9000)]
