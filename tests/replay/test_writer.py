"""The replay writer fed by a real packager (libx264 + libopus frames): every init segment
and segment on disk, the manifest with durations, PDT and discontinuities, the record in
Redis, the poster, and a VOD playlist that FFmpeg's HLS demuxer plays end to end."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import av
import redis.asyncio as aioredis

from livecast.config import ReplaySettings
from livecast.node import Node
from livecast.redisdb import KeySpace
from livecast.replay.manifest import read_manifest
from livecast.replay.store import Replays
from livecast.replay.variants import read_recording, render_set
from livecast.streams.registry import StreamRegistry, StreamState
from tests.ingest.peers import read_counter
from tests.replay.media import record_run


def make_replays(
    redis: aioredis.Redis, prefix: str, root: Path, *, retention_days: float = 30.0
) -> tuple[Replays, StreamRegistry]:
    keys = KeySpace(prefix)
    streams = StreamRegistry(redis, keys)
    node = Node.new("http://127.0.0.1:9")
    return Replays(
        redis, keys, ReplaySettings(retention_days=retention_days), root, node, streams
    ), streams


def decode_hls(playlist: Path | str) -> tuple[list[int], int, float]:
    """Video counters, audio samples and the duration FFmpeg's HLS demuxer reports."""
    counters: list[int] = []
    samples = 0
    with av.open(str(playlist), "r", format="hls") as container:
        duration = (container.duration or 0) / 1_000_000
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                counters.append(read_counter(frame))
            else:
                assert isinstance(frame, av.AudioFrame)
                samples += frame.samples
    return counters, samples, duration


async def test_two_runs_are_written_with_a_discontinuity_and_play_as_vod(
    redis_client: aioredis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    replays, streams = make_replays(redis_client, key_prefix, tmp_path)
    stream = await streams.create(
        title="Drop",
        description="",
        seller_id="s1",
        seller_name="Ana",
        scheduled_start_ms=None,
        featured_skus=[],
    )
    await streams.transition(stream.id, StreamState.LIVE)
    first = await record_run(replays, stream.id, 3.2, base=100.0)
    second = await record_run(replays, stream.id, 2.2, base=110.0)
    directory = tmp_path / stream.id
    entries = read_manifest(directory)
    counts = [run.video.segments[-1].msn + 1 for run in (first, second)]
    made = [
        f"seg-{run.run}-{n}.m4s"
        for run, c in zip((first, second), counts, strict=True)
        for n in range(c)
    ]
    assert [e.name for e in entries] == made  # every segment, past any window, in order
    assert counts[0] == 4
    assert len(first.video.segments) == 2
    assert [e.discontinuity for e in entries] == [False] * counts[0] + [True] + [False] * (
        counts[1] - 1
    )
    last_of_runs = {counts[0] - 1, len(entries) - 1}  # cut short by the end
    for index, entry in enumerate(entries):
        assert (directory / entry.name).stat().st_size > 0
        assert (directory / entry.init).is_file()
        assert 0.9 <= entry.duration <= 1.1 or index in last_of_runs
    # the PDT of the second run follows its arrival times, ten seconds on
    assert entries[counts[0]].pdt - entries[0].pdt > 9.5

    record = await replays.get(stream.id)
    assert record is not None
    assert record.segments == len(entries)
    assert abs(record.duration_s - sum(e.duration for e in entries)) < 0.01
    assert record.poster
    assert record.open == 0
    assert not record.ended
    # wall-clock moments map onto the replay across the gap between the runs
    second_start = entries[counts[0]]
    assert len(record.spans) == 2
    assert abs(record.position(second_start.pdt + 0.5) - (record.spans[1][1] + 0.5)) < 0.01
    with av.open(io.BytesIO((directory / "poster.jpg").read_bytes()), "r") as poster:
        picture = next(poster.decode(video=0))
        assert (picture.width, picture.height) == (320, 240) or picture.width <= 640

    # the audio, in its own directory, matches the video segment for segment
    audio = read_manifest(directory / "audio")
    assert [a.name for a in audio] == [f"audio-{e.name}" for e in entries]
    assert [a.pdt for a in audio] == [e.pdt for e in entries]
    assert all((directory / "audio" / a.name).stat().st_size == a.size > 0 for a in audio)
    recording = read_recording(directory)
    assert recording is not None
    assert recording.audio is not None
    assert [a.discontinuity for a in recording.audio] == [e.discontinuity for e in entries]
    playlists = render_set(recording, audio_prefix="audio/")
    assert playlists.audio is not None
    for text in (playlists.video.body.decode(), playlists.audio.body.decode()):
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in text
        assert text.rstrip().endswith("#EXT-X-ENDLIST")
        assert text.count("#EXT-X-DISCONTINUITY\n") == 1
        assert text.count("#EXT-X-MAP:") == 2
        assert text.count("#EXT-X-PROGRAM-DATE-TIME:") == len(entries)
    for name in ("index.m3u8", "video.m3u8", "audio.m3u8"):
        playlist = playlists.get(name)
        assert playlist is not None
        (directory / name).write_bytes(playlist.body)
    counters, samples, duration = await asyncio.to_thread(decode_hls, directory / "index.m3u8")
    frames = [round(30 * sum(e.duration for e in entries[: counts[0]]))]
    frames.append(round(30 * sum(e.duration for e in entries[counts[0] :])))
    assert counters[: frames[0]] == list(range(frames[0]))
    # After the discontinuity the second run's timestamps start again from zero, and
    # FFmpeg's HLS demuxer skips up to half a second there; the rest plays, in order.
    rest = counters[frames[0] :]
    assert rest == list(range(frames[1] - len(rest), frames[1]))
    assert len(rest) >= frames[1] - 15
    assert samples > 0.8 * 48_000 * record.duration_s
    assert abs(duration - record.duration_s) < 0.2

    # the end transition lists it
    ended = await streams.transition(stream.id, StreamState.ENDED)
    await replays.stream_ended(ended, StreamState.LIVE)
    listed = await replays.recent(10)
    assert [r.stream_id for r in listed] == [stream.id]
    assert listed[0].ended


async def test_a_run_that_finishes_after_the_end_lists_the_replay(
    redis_client: aioredis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    """The end transition came first (no segment recorded yet): the writer lists it."""
    replays, streams = make_replays(redis_client, key_prefix, tmp_path)
    stream = await streams.create(
        title="Quick",
        description="",
        seller_id="s1",
        seller_name="Ana",
        scheduled_start_ms=None,
        featured_skus=[],
    )
    await streams.transition(stream.id, StreamState.LIVE)
    ended = await streams.transition(stream.id, StreamState.ENDED)
    await replays.stream_ended(ended, StreamState.LIVE)  # nothing recorded: nothing listed
    assert await replays.recent(10) == []
    await record_run(replays, stream.id, 1.2)
    assert [r.stream_id for r in await replays.recent(10)] == [stream.id]
