"""A replay's renditions as VOD: the video, the audio where it matches the video, and
the multivariant playlist that plays them together.

The writer records the video (rendition ``main``) in the replay's directory and the
audio in ``audio/`` beside it, each with its own ``segments.jsonl``. A replay (and so
each slice of it: a clip, a receipt) is served as three playlists::

    index.m3u8   multivariant: EXT-X-MEDIA:TYPE=AUDIO (when there is audio) and one
                 EXT-X-STREAM-INF (CODECS and RESOLUTION from the init segments,
                 BANDWIDTH / AVERAGE-BANDWIDTH from the segments' sizes and durations)
    video.m3u8   the video's VOD media playlist
    audio.m3u8   the audio's, cut at the same segments

**The audio rule.** The audio plays only if it matches the video segment for segment:
as many segments, each with the PDT of its video segment (the packager cuts both
tracks at the same boundaries). Otherwise (a run without audio before or after one
with it, a segment lost) the replay is video-only, whole: one audio rendition has to
cover the whole video, and a player cannot line up tracks that do not share their
boundaries. The audio's discontinuities are the video's.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import msgspec

from livecast.replay._init import AudioInfo, VideoInfo, audio_info, video_info
from livecast.replay.manifest import SegmentEntry, VodPlaylist, read_manifest, render_vod

__all__ = [
    "AUDIO_DIR",
    "AUDIO_GROUP",
    "AUDIO_PLAYLIST",
    "MULTIVARIANT",
    "PLAYLISTS",
    "VIDEO_PLAYLIST",
    "Recording",
    "VodSet",
    "audio_matches",
    "read_recording",
    "render_set",
]

AUDIO_DIR: Final = "audio"  # the audio rendition's subdirectory (its writer name)
AUDIO_GROUP: Final = "audio"
MULTIVARIANT: Final = "index.m3u8"
VIDEO_PLAYLIST: Final = "video.m3u8"
AUDIO_PLAYLIST: Final = "audio.m3u8"
PLAYLISTS: Final = (MULTIVARIANT, VIDEO_PLAYLIST, AUDIO_PLAYLIST)
_PDT_TOLERANCE_S: Final = 0.002  # PDTs are kept to the millisecond
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Recording:
    """A replay's segments: the video's, and the audio's aligned with them (or None)."""

    video: list[SegmentEntry]
    audio: list[SegmentEntry] | None
    video_info: VideoInfo | None
    audio_info: AudioInfo | None


@dataclass(frozen=True, slots=True)
class VodSet:
    multivariant: VodPlaylist
    video: VodPlaylist
    audio: VodPlaylist | None

    @property
    def duration_s(self) -> float:
        return self.video.duration_s

    def get(self, name: str) -> VodPlaylist | None:
        """The playlist served as ``name`` (one of :data:`PLAYLISTS`), if there is one."""
        if name == MULTIVARIANT:
            return self.multivariant
        if name == VIDEO_PLAYLIST:
            return self.video
        return self.audio if name == AUDIO_PLAYLIST else None


def audio_matches(video: list[SegmentEntry], audio: list[SegmentEntry]) -> bool:
    """Whether ``audio`` plays with ``video``: as many segments, with the same PDTs."""
    return len(audio) == len(video) > 0 and all(
        abs(a.pdt - v.pdt) <= _PDT_TOLERANCE_S for a, v in zip(audio, video, strict=True)
    )


def read_recording(directory: Path) -> Recording | None:
    """The replay recorded in ``directory`` (None if it has no video segment), with the
    sizes of segments written before sizes were kept read from their files."""
    video = _sized(directory, read_manifest(directory))
    if not video:
        return None
    found: VideoInfo | None = None
    for init in dict.fromkeys(e.init for e in video):  # the largest picture of the runs
        info = _read_init(directory / init, video_info)
        if info is not None and (found is None or _area(info) > _area(found)):
            found = info
    audio_directory = directory / AUDIO_DIR
    audio = _sized(audio_directory, read_manifest(audio_directory))
    if not audio_matches(video, audio):
        return Recording(video, None, found, None)
    sound = _read_init(audio_directory / audio[0].init, audio_info)
    if sound is None:
        return Recording(video, None, found, None)
    aligned = [  # the video's discontinuities (a run's first audio segment is not marked)
        msgspec.structs.replace(a, discontinuity=v.discontinuity)
        for a, v in zip(audio, video, strict=True)
    ]
    return Recording(video, aligned, found, sound)


def _area(info: VideoInfo) -> int:
    return info.width * info.height


def _sized(directory: Path, entries: list[SegmentEntry]) -> list[SegmentEntry]:
    sized = []
    for entry in entries:
        if not entry.size:
            try:
                size = (directory / entry.name).stat().st_size
            except OSError:
                size = 0
            entry = msgspec.structs.replace(entry, size=size)
        sized.append(entry)
    return sized


def _read_init(path: Path, parse: Callable[[bytes], _T | None]) -> _T | None:
    try:
        return parse(path.read_bytes())
    except OSError:
        return None


def render_set(
    recording: Recording,
    first: int = 0,
    stop: int | None = None,
    *,
    prefix: str = "",
    audio_prefix: str | None = None,
) -> VodSet:
    """The playlists of the recording's segments ``first:stop`` (both tracks cut the
    same): media URIs are ``prefix`` + the file's name (``audio_prefix`` for the audio's,
    ``prefix`` unless given); the multivariant's URIs are relative (``video.m3u8``)."""
    video = recording.video[first:stop]
    audio = recording.audio[first:stop] if recording.audio is not None else None
    video_playlist = render_vod(video, prefix)
    audio_playlist = None
    if audio is not None and recording.audio_info is not None:
        audio_prefix = prefix if audio_prefix is None else audio_prefix
        audio_playlist = render_vod(audio, audio_prefix)
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    attributes = _bandwidths(video, audio if audio_playlist is not None else None)
    codecs = []
    if recording.video_info is not None:
        codecs.append(recording.video_info.codec)
    if audio_playlist is not None and recording.audio_info is not None:
        codecs.append(recording.audio_info.codec)
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP}",NAME="audio",DEFAULT=YES,'
            f'AUTOSELECT=YES,CHANNELS="{recording.audio_info.channels}",URI="{AUDIO_PLAYLIST}"'
        )
    if codecs:
        attributes += f',CODECS="{",".join(codecs)}"'
    if recording.video_info is not None:
        attributes += f",RESOLUTION={recording.video_info.width}x{recording.video_info.height}"
    if audio_playlist is not None:
        attributes += f',AUDIO="{AUDIO_GROUP}"'
    lines += [f"#EXT-X-STREAM-INF:{attributes}", VIDEO_PLAYLIST]
    body = ("\n".join(lines) + "\n").encode()
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    multivariant = VodPlaylist(body, etag, video_playlist.duration_s)
    return VodSet(multivariant, video_playlist, audio_playlist)


def _bandwidths(video: list[SegmentEntry], audio: list[SegmentEntry] | None) -> str:
    """``BANDWIDTH`` (the peak segment bit rate of both tracks together, segments under
    half the longest left out: a run's cut-short last one says little) and
    ``AVERAGE-BANDWIDTH``, in bit/s."""
    sizes = [v.size for v in video]
    if audio is not None:
        sizes = [s + a.size for s, a in zip(sizes, audio, strict=True)]
    longest = max((v.duration for v in video), default=0.0)
    rates = [
        8 * size / v.duration
        for size, v in zip(sizes, video, strict=True)
        if v.duration > 0 and v.duration >= longest / 2
    ]
    total = sum(v.duration for v in video)
    average = math.ceil(8 * sum(sizes) / total) if total > 0 else 0
    peak = max(math.ceil(max(rates, default=0.0)), average, 1)
    return f"BANDWIDTH={peak},AVERAGE-BANDWIDTH={max(average, 1)}"
