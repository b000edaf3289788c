"""The relay with real peers: what the publisher draws is what every viewer decodes."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from livecast.ingest.keys import MEDIA
from livecast.ingest.relay import MediaSource, RelayTuning, ViewerTrack
from tests.conftest import Client
from tests.ingest.conftest import SellerStream
from tests.ingest.peers import in_order, publish, view


@pytest.mark.parametrize(("codec", "name"), [("video/H264", "h264"), ("video/VP8", "vp8")])
async def test_publisher_reaches_every_viewer_in_order(
    client: Client, stream: SellerStream, codec: str, name: str
) -> None:
    publisher = await publish(client, stream.id, stream.seller_token, codec=codec)
    viewers = await asyncio.gather(*(view(client, stream.id) for _ in range(3)))
    try:
        for viewer in viewers:
            assert viewer.video_codec == name
        results = await asyncio.gather(*(v.frames(30) for v in viewers))
        await asyncio.gather(*(v.audio(20) for v in viewers))
        for counters in results:
            assert in_order(counters), counters
            # consecutive frames: the relay neither drops nor reorders on loopback
            steps = [b - a for a, b in itertools.pairwise(counters)]
            assert max(steps) <= 2, counters
            assert counters[-1] < publisher.video.counter
        hub = client.app[MEDIA]
        assert hub.viewer_count(stream.id) == 3
    finally:
        await asyncio.gather(*(v.close() for v in viewers))
        await publisher.close()


# -- the source and its viewers, without peers ---------------------------------------

KEY, DELTA = b"\x10" + bytes(50), b"\x11" + bytes(50)  # VP8 frame tags: bit 0 clear = key


def _source(frame_buffer: int = 8, **tuning: float) -> tuple[MediaSource, list[float]]:
    requests: list[float] = []
    source = MediaSource("video", RelayTuning(frame_buffer=frame_buffer, **tuning))  # type: ignore[arg-type]
    source.attach("vp8", lambda: requests.append(asyncio.get_running_loop().time()))
    return source, requests


async def test_viewer_starts_at_a_keyframe_and_a_slow_one_skips_to_the_next() -> None:
    source, requests = _source(keyframe_min_interval_s=0.0, join_burst_frames=0)
    viewer = ViewerTrack(source)
    assert requests  # joining asked the publisher for a keyframe
    for ts in range(3):
        source.push(DELTA, ts * 3000)
    source.push(KEY, 3 * 3000)
    first = await viewer.recv()
    assert first.keyframe
    # the viewer stalls while 20 frames pass through a buffer of 8
    for ts in range(4, 24):
        source.push(KEY if ts == 20 else DELTA, ts * 3000)
    frame = await viewer.recv()
    assert frame.keyframe
    assert frame.timestamp == 20 * 3000  # skipped, not queued
    assert viewer.skips == 1
    assert len(source._ring) == 8


async def test_keyframe_requests_are_merged_across_viewers() -> None:
    source, requests = _source(keyframe_min_interval_s=0.2, join_burst_frames=0)
    viewers = [ViewerTrack(source) for _ in range(50)]
    assert len(requests) == 1  # fifty joins, one request now ...
    await asyncio.sleep(0.3)
    assert len(requests) == 2  # ... and one merged follow-up, not fifty
    assert all(v.waiting_keyframe for v in viewers)


async def test_a_waiting_viewer_asks_again_while_no_keyframe_comes() -> None:
    """The publisher lost (or ignored) the join request: the viewer keeps asking."""
    source, requests = _source(
        keyframe_min_interval_s=0.0, keyframe_retry_s=0.05, join_burst_frames=0
    )
    viewer = ViewerTrack(source)
    first = asyncio.ensure_future(viewer.recv())
    for ts in range(1, 6):
        await asyncio.sleep(0.06)
        source.push(DELTA, ts * 3000)
        await asyncio.sleep(0)
    assert len(requests) >= 4  # the join request, then again each retry interval
    assert not first.done()  # no delta frame reached the viewer
    source.push(KEY, 6 * 3000)
    frame = await asyncio.wait_for(first, 1)
    assert frame.keyframe
    assert frame.timestamp == 6 * 3000


async def test_timeline_continues_across_publishers() -> None:
    source, _ = _source()
    viewer = ViewerTrack(source)
    source.push(KEY, 1_000_000)
    source.push(DELTA, 1_003_000)
    stamps = [(await viewer.recv()).timestamp, (await viewer.recv()).timestamp]
    source.detach()
    source.attach("vp8", None)  # the publisher returns with its own clock
    source.push(KEY, 5)
    source.push(DELTA, 3005)
    stamps += [(await viewer.recv()).timestamp, (await viewer.recv()).timestamp]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 4
    assert stamps[3] - stamps[2] == 3000


async def test_a_fresh_viewer_skips_the_catch_up_burst() -> None:
    source, requests = _source(keyframe_min_interval_s=0.0, join_burst_frames=8)
    source.push(KEY, 0)
    source.push(DELTA, 3000)
    burst = ViewerTrack(source)
    assert not requests  # a recent keyframe is enough for an ordinary viewer
    fresh = ViewerTrack(source, join_burst=False)
    assert requests  # a fresh one asks for a new keyframe
    assert (await burst.recv()).timestamp == 0
    source.push(DELTA, 6000)
    source.push(KEY, 9000)
    assert (await fresh.recv()).timestamp == 9000
