"""A replay's VOD playlists from real recordings (a real packager into a real writer):
with matching audio a multivariant of both tracks (codecs, picture size and bit rate
from the files) that FFmpeg's HLS demuxer follows to decode both; video-only when the
audio does not match the video segment for segment."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import redis.asyncio as aioredis

from livecast.replay.manifest import MANIFEST
from livecast.replay.store import Replays
from livecast.replay.variants import VodSet, read_recording, render_set
from tests.replay.media import record_run
from tests.replay.test_writer import decode_hls, make_replays


async def _recorded(
    redis: aioredis.Redis, prefix: str, root: Path, *runs: bool
) -> tuple[Replays, str, list[str]]:
    """A stream recorded in one run per item of ``runs`` (with audio or not), 2.2 s each;
    the replays, its id, and each run's live CODECS."""
    replays, streams = make_replays(redis, prefix, root)
    stream = await streams.create(
        title="Knits",
        description="",
        seller_id="s1",
        seller_name="Ana",
        scheduled_start_ms=None,
        featured_skus=[],
    )
    codecs = []
    for index, audio in enumerate(runs):
        packager = await record_run(replays, stream.id, 2.2, base=100.0 + 10 * index, audio=audio)
        live = packager.multivariant()
        assert live is not None
        codecs.append(_stream_inf(live.body.decode())["CODECS"])
    return replays, stream.id, codecs


def _stream_inf(multivariant: str) -> dict[str, str]:
    [line] = [x for x in multivariant.splitlines() if x.startswith("#EXT-X-STREAM-INF:")]
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', line)}


def _written(directory: Path) -> VodSet:
    """The replay's playlists, written beside its files, to be played from disk."""
    recording = read_recording(directory)
    assert recording is not None
    playlists = render_set(recording, audio_prefix="audio/")
    for name in ("index.m3u8", "video.m3u8", "audio.m3u8"):
        playlist = playlists.get(name)
        if playlist is not None:
            (directory / name).write_bytes(playlist.body)
    return playlists


async def test_matching_audio_makes_a_multivariant_of_both_tracks(
    redis_client: aioredis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    _, stream_id, [codecs] = await _recorded(redis_client, key_prefix, tmp_path, True)
    directory = tmp_path / stream_id
    playlists = _written(directory)
    text = playlists.multivariant.body.decode()
    assert text.splitlines()[-1] == "video.m3u8"
    assert (
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio",DEFAULT=YES,AUTOSELECT=YES,'
        'CHANNELS="2",URI="audio.m3u8"'
    ) in text
    inf = _stream_inf(text)
    assert inf["CODECS"] == codecs  # what the live multivariant said
    assert inf["AUDIO"] == "audio"
    assert inf["RESOLUTION"] == "160x96"
    # the bit rates of both tracks' files
    recording = read_recording(directory)
    assert recording is not None
    assert recording.audio is not None
    sizes = [
        (directory / v.name).stat().st_size + (directory / "audio" / a.name).stat().st_size
        for v, a in zip(recording.video, recording.audio, strict=True)
    ]
    seconds = sum(v.duration for v in recording.video)
    assert int(inf["AVERAGE-BANDWIDTH"]) == -(-8 * sum(sizes) // seconds)
    peak = max(8 * s / v.duration for s, v in zip(sizes, recording.video, strict=True))
    assert int(inf["AVERAGE-BANDWIDTH"]) <= int(inf["BANDWIDTH"]) <= peak + 1
    counters, samples, duration = await asyncio.to_thread(decode_hls, directory / "index.m3u8")
    assert counters == list(range(66))
    assert samples > 0.8 * 48_000 * seconds
    assert abs(duration - seconds) < 0.2


async def test_a_replay_without_audio_is_a_multivariant_of_its_video(
    redis_client: aioredis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    _, stream_id, [codecs] = await _recorded(redis_client, key_prefix, tmp_path, False)
    directory = tmp_path / stream_id
    playlists = _written(directory)
    assert playlists.audio is None
    text = playlists.multivariant.body.decode()
    assert "#EXT-X-MEDIA" not in text
    inf = _stream_inf(text)
    assert inf["CODECS"] == codecs
    assert inf["CODECS"].startswith("avc1.")
    assert "," not in inf["CODECS"]
    assert "AUDIO" not in inf
    counters, samples, _ = await asyncio.to_thread(decode_hls, directory / "index.m3u8")
    assert counters == list(range(66))
    assert samples == 0


async def test_audio_that_started_in_a_later_run_leaves_the_replay_video_only(
    redis_client: aioredis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    _, stream_id, _ = await _recorded(redis_client, key_prefix, tmp_path, False, True)
    directory = tmp_path / stream_id
    assert (directory / "audio" / MANIFEST).is_file()  # the second run's audio is there
    recording = read_recording(directory)
    assert recording is not None
    assert recording.audio is None
    assert len(recording.video) == 6
    playlists = _written(directory)
    assert playlists.audio is None
    assert "#EXT-X-MEDIA" not in playlists.multivariant.body.decode()
    counters, samples, _ = await asyncio.to_thread(decode_hls, directory / "index.m3u8")
    assert samples == 0
    assert counters[:66] == list(range(66))


async def test_audio_missing_a_segment_leaves_the_replay_video_only(
    redis_client: aioredis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    _, stream_id, _ = await _recorded(redis_client, key_prefix, tmp_path, True, True)
    directory = tmp_path / stream_id
    recording = read_recording(directory)
    assert recording is not None
    assert recording.audio is not None
    # both runs' audio, its discontinuity where the video's is
    assert [a.discontinuity for a in recording.audio] == [False] * 3 + [True] + [False] * 2
    manifest = directory / "audio" / MANIFEST
    lines = manifest.read_bytes().splitlines(keepends=True)
    manifest.write_bytes(b"".join(lines[:2] + lines[3:]))  # a segment lost
    recording = read_recording(directory)
    assert recording is not None
    assert recording.audio is None
    assert render_set(recording).audio is None
