"""A replay's list of segments on disk, and the VOD playlist made from it.

The writer (:mod:`livecast.replay.writer`) appends one JSON line per segment to
``segments.jsonl`` in the replay's directory, after the segment's file is written, so a
reader never sees a segment whose bytes are not there yet::

    {"name": "seg-1a2b3c4d-0.m4s", "init": "init-1a2b3c4d-0.mp4", "duration": 2.0,
     "pdt": 1796000000.123, "discontinuity": false, "size": 48213}

``pdt`` is the unix time of the segment's first frame (its ``EXT-X-PROGRAM-DATE-TIME``);
``discontinuity`` marks a publisher's return, or a new packaging run of the stream;
``size`` is the file's length in bytes (0 in manifests written before it was kept).
The audio rendition has a manifest of its own, in ``audio/`` (:mod:`livecast.replay.variants`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

__all__ = ["MANIFEST", "SegmentEntry", "VodPlaylist", "read_manifest", "render_vod"]

MANIFEST: Final = "segments.jsonl"


class SegmentEntry(msgspec.Struct, frozen=True):
    name: str
    init: str
    duration: float
    pdt: float
    discontinuity: bool = False
    size: int = 0


_decode = msgspec.json.Decoder(SegmentEntry).decode


def read_manifest(directory: Path) -> list[SegmentEntry]:
    """The segments listed in ``directory`` (none if there is no manifest); a torn last
    line (a crash while it was written) is left out."""
    try:
        raw = (directory / MANIFEST).read_bytes()
    except FileNotFoundError:
        return []
    entries = []
    for line in raw.splitlines():
        try:
            entries.append(_decode(line))
        except msgspec.DecodeError:
            break
    return entries


@dataclass(frozen=True, slots=True)
class VodPlaylist:
    body: bytes
    etag: str
    duration_s: float


def render_vod(entries: list[SegmentEntry], prefix: str = "") -> VodPlaylist:
    """The VOD media playlist (RFC 8216bis) of ``entries``: ``EXT-X-PLAYLIST-TYPE:VOD``,
    ``EXT-X-MAP`` wherever the init segment changes, ``EXT-X-DISCONTINUITY`` where the
    media does, ``EXT-X-PROGRAM-DATE-TIME`` on every segment, ``EXT-X-ENDLIST``; each
    file's URI is ``prefix`` + its name."""
    target = max((e.duration for e in entries), default=1.0)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:6",
        f"#EXT-X-TARGETDURATION:{max(1, math.ceil(round(target, 5)))}",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    init = ""
    for index, entry in enumerate(entries):
        if entry.discontinuity and index:
            lines.append("#EXT-X-DISCONTINUITY")
        if entry.init != init:
            init = entry.init
            lines.append(f'#EXT-X-MAP:URI="{prefix}{init}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_rfc3339(entry.pdt)}")
        lines.append(f"#EXTINF:{entry.duration:.5f},")
        lines.append(prefix + entry.name)
    lines.append("#EXT-X-ENDLIST")
    body = ("\n".join(lines) + "\n").encode()
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    return VodPlaylist(body, etag, round(sum(e.duration for e in entries), 3))


def _rfc3339(unix: float) -> str:
    moment = dt.datetime.fromtimestamp(unix, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
