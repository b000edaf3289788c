"""Third-party WHIP publishers: the media they play, and the OBS-like libdatachannel one.

The publisher scripts live in the source checkout's ``tests/ingest/interop/`` (the
interop tests run them too): ``obs-whip-publish.mjs`` (libdatachannel through
``node-datachannel``, set up as OBS's WHIP output is) and ``gst_whip_publish.py``
(GStreamer's ``webrtcbin``). The Node one plays a *media file*: records of one encoded
frame each, in DTS order::

    kind      1 byte   1 video (an H.264 Annex B access unit), 2 audio (one Opus packet)
    dts_us    8 bytes  big endian, microseconds from the start of the file
    length    4 bytes  big endian
    payload   length bytes

:func:`write_media_file` writes one from encoded frames; :func:`encode_h264` and
:func:`encode_opus` make them the way a seller's encoder would (H.264 constrained
baseline, no B-frames, a keyframe every 2 s, 20 ms Opus frames).
"""

from __future__ import annotations

import array
import fractions
import math
import shutil
import struct
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import av

__all__ = [
    "INTEROP_DIR",
    "NODE_PUBLISHER",
    "encode_h264",
    "encode_opus",
    "install_node_publisher",
    "write_media_file",
]

INTEROP_DIR = Path(__file__).resolve().parents[2] / "tests" / "ingest" / "interop"
NODE_PUBLISHER = INTEROP_DIR / "obs-whip-publish.mjs"

_VIDEO, _AUDIO = 1, 2
_RECORD = struct.Struct(">BQI")
OPUS_FRAME_US = 20_000


def encode_h264(
    frames: Iterable[av.VideoFrame],
    *,
    width: int,
    height: int,
    fps: int = 30,
    keyframe_interval_s: float = 2.0,
    bitrate: int = 800_000,
) -> list[bytes]:
    """One Annex B access unit per frame, as OBS's x264 with profile baseline, no
    B-frames and a fixed keyframe interval sends them (SPS/PPS before every IDR)."""
    encoder: Any = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, fps)
    encoder.framerate = fractions.Fraction(fps, 1)
    encoder.bit_rate = bitrate
    gop = round(keyframe_interval_s * fps)
    encoder.gop_size = gop
    encoder.profile = "Baseline"
    encoder.options = {
        "preset": "veryfast",
        "tune": "zerolatency",
        "bf": "0",
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
    }
    units: list[bytes] = []
    for index, frame in enumerate(frames):
        if frame.width != width or frame.height != height or frame.format.name != "yuv420p":
            frame = frame.reformat(width=width, height=height, format="yuv420p")
        frame.pts = index
        units.extend(bytes(packet) for packet in encoder.encode(frame))
    units.extend(bytes(packet) for packet in encoder.encode(None))
    return units


def encode_opus(seconds: float) -> list[bytes]:
    """``seconds`` of a 440 Hz tone as 20 ms stereo Opus packets."""
    encoder: Any = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = 48_000
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.bit_rate = 64_000
    samples = array.array("h")
    for i in range(960):
        value = int(8000 * math.sin(2 * math.pi * 440 * i / 48_000))
        samples.extend((value, value))
    chunk = samples.tobytes()
    packets: list[bytes] = []
    for index in range(round(seconds * 50)):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.sample_rate = 48_000
        frame.planes[0].update(chunk)
        frame.pts = index * 960
        packets.extend(bytes(p) for p in encoder.encode(frame))
    packets.extend(bytes(p) for p in encoder.encode(None))
    return packets


def write_media_file(
    path: Path, video: Sequence[bytes], audio: Sequence[bytes], *, fps: int = 30
) -> None:
    """Interleave ``video`` (one access unit per frame at ``fps``) and ``audio`` (20 ms
    Opus packets) by DTS into the publisher's media file at ``path``."""
    records = [(round(i * 1_000_000 / fps), _VIDEO, unit) for i, unit in enumerate(video)]
    records += [(i * OPUS_FRAME_US, _AUDIO, packet) for i, packet in enumerate(audio)]
    records.sort(key=lambda record: (record[0], record[1]))
    with path.open("wb") as out:
        for dts_us, kind, payload in records:
            out.write(_RECORD.pack(kind, dts_us, len(payload)))
            out.write(payload)


def install_node_publisher() -> Path:
    """Install the Node publisher's pinned packages (``npm ci``) unless they already
    are; the ``node`` binary to run it with. RuntimeError if Node or npm is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError(
            "the libdatachannel publisher needs Node.js and npm (.ci/run installs them)"
        )
    lock = INTEROP_DIR / "package-lock.json"
    installed = INTEROP_DIR / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=INTEROP_DIR, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"npm ci failed in {INTEROP_DIR}: {result.stderr[-2000:]}")
    return Path(node)
