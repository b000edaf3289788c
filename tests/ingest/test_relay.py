"""The relay with real peers: what the publisher draws is what every viewer decodes."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from livecast.ingest.keys import MEDIA
from livecast.ingest.relay import MediaSource, RelayTuning, ViewerTrack
from tests.conftest import Client
from tests.ingest.conftest import SellerStream, eventually
from tests.ingest.peers import FixedGopTrack, in_order, publish, view


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


@pytest.mark.parametrize(("codec", "name"), [("video/VP8", "vp8"), ("video/H264", "h264")])
async def test_an_early_viewer_gets_whatever_codec_the_publisher_picks(
    client: Client, stream: SellerStream, codec: str, name: str
) -> None:
    viewer = await view(client, stream.id)  # before anyone publishes
    try:
        await eventually(lambda: viewer.pc.connectionState == "connected", within=10)
        publisher = await publish(client, stream.id, stream.seller_token, codec=codec, audio=False)
        try:
            counters = await viewer.frames(10, within=10)
            assert in_order(counters)
            # the publisher's first frame is its first keyframe
            assert viewer.arrivals[0] - publisher.video.sent_at[0] < 1.0
            assert viewer.pc.connectionState == "connected"
            status = await (await client.get(f"/api/streams/{stream.id}/media")).json()
            assert (status["video_codec"], status["viewers"]) == (name, 1)
        finally:
            await publisher.close()
    finally:
        await viewer.close()


# -- the source and its viewers, without peers ---------------------------------------

KEY, DELTA = b"\x10" + bytes(50), b"\x11" + bytes(50)  # VP8 frame tags: bit 0 clear = key


def _source(frame_buffer: int = 8, **tuning: float) -> tuple[MediaSource, list[float]]:
    requests: list[float] = []
    source = MediaSource("video", RelayTuning(frame_buffer=frame_buffer, **tuning))  # type: ignore[arg-type]
    source.attach("vp8", lambda: requests.append(asyncio.get_running_loop().time()))
    return source, requests


async def test_viewer_starts_at_a_keyframe_and_a_slow_one_skips_to_the_next() -> None:
    source, requests = _source(keyframe_min_interval_s=0.0, gop_cache_s=0.0)
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
    source, requests = _source(keyframe_min_interval_s=0.2, gop_cache_s=0.0)
    viewers = [ViewerTrack(source) for _ in range(50)]
    assert len(requests) == 1  # fifty joins, one request now ...
    await asyncio.sleep(0.3)
    assert len(requests) == 2  # ... and one merged follow-up, not fifty
    assert all(v.waiting_keyframe for v in viewers)


async def test_a_waiting_viewer_asks_again_while_no_keyframe_comes() -> None:
    """The publisher lost (or ignored) the join request: the viewer keeps asking."""
    source, requests = _source(keyframe_min_interval_s=0.0, keyframe_retry_s=0.05, gop_cache_s=0.0)
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
    source, requests = _source(keyframe_min_interval_s=0.0)
    source.push(KEY, 0)
    source.push(DELTA, 3000)
    burst = ViewerTrack(source)
    assert not requests  # the cached GOP is enough for an ordinary viewer
    fresh = ViewerTrack(source, join_burst=False)
    assert requests  # a fresh one asks for a new keyframe
    assert (await burst.recv()).keyframe
    source.push(DELTA, 6000)
    source.push(KEY, 9000)
    assert (await fresh.recv()).timestamp == 9000


async def test_a_joiner_starts_from_the_gop_cache_and_catches_up() -> None:
    """The encoder sends a keyframe every 40 frames and ignores requests: a viewer who
    joins 30 frames in gets the cached GOP at once, packed just before live."""
    source, requests = _source(frame_buffer=8)  # the GOP outgrows the ring
    for index in range(30):
        source.push(KEY if index == 0 else DELTA, index * 3000)
    viewer = ViewerTrack(source)
    assert not requests
    assert not viewer.waiting_keyframe
    burst = [await viewer.recv() for _ in range(30)]
    assert burst[0].keyframe
    assert not any(f.keyframe for f in burst[1:])
    stamps = [f.timestamp for f in burst]
    assert stamps[-1] == 29 * 3000  # the newest frame keeps its own timestamp ...
    assert all(b - a == 90 for a, b in itertools.pairwise(stamps))  # ... the rest 1 ms apart
    # the shared packets, only the timestamps are the joiner's own
    assert all(f.payloads is source.frame(i).payloads for i, f in enumerate(burst))  # type: ignore[union-attr]
    source.push(DELTA, 30 * 3000)
    live = await viewer.recv()
    assert live.timestamp == 30 * 3000  # then the shared frames, on the live timeline
    assert live is source.frame(30)
    assert viewer.skips == 0


async def test_a_gop_past_the_bounds_is_not_cached() -> None:
    source, requests = _source(keyframe_min_interval_s=0.0, gop_cache_bytes=40 * 51)
    for index in range(41):
        source.push(KEY if index == 0 else DELTA, index * 3000)
    assert source.gop_cached == 0
    viewer = ViewerTrack(source)  # nothing to start from: it asks for a keyframe
    assert requests
    assert viewer.waiting_keyframe
    source.push(KEY, 41 * 3000)
    assert source.gop_cached == 1
    assert (await viewer.recv()).timestamp == 41 * 3000


async def test_a_viewer_switches_codec_at_a_new_publishers_keyframe() -> None:
    source = MediaSource("video", RelayTuning())
    switched: list[str] = []

    def switch(codec: str) -> bool:
        switched.append(codec)
        return codec == "vp8"

    early = ViewerTrack(source, codec="h264", switch_codec=switch)
    stuck = ViewerTrack(source, codec="h264", switch_codec=lambda codec: False)
    source.attach("vp8", None)
    source.push(DELTA, 0)  # nothing decodes before the first keyframe
    source.push(KEY, 3000)
    frame = await early.recv()
    assert (frame.codec, frame.timestamp, switched) == ("vp8", 3000, ["vp8"])
    source.push(DELTA, 6000)
    assert (await early.recv()).timestamp == 6000
    pending = asyncio.ensure_future(stuck.recv())  # it cannot take VP8: it gets nothing
    await asyncio.sleep(0.05)
    assert not pending.done()
    pending.cancel()


async def test_a_joiner_never_waits_for_an_encoder_that_ignores_keyframe_requests(
    client: Client, stream: SellerStream
) -> None:
    """A keyframe every 4 s and no other, whatever the relay asks: a viewer joining
    1.5 s into the GOP starts from the relay's GOP cache, then plays live."""
    track = FixedGopTrack(gop=120, frames=360)
    publisher = await publish(client, stream.id, stream.seller_token, video=track, audio=False)
    try:
        source = client.app[MEDIA].streams[stream.id].sources["video"]
        await eventually(lambda: source.frames_in >= 45, within=10)
        loop = asyncio.get_running_loop()
        viewer = await view(client, stream.id)
        try:
            joined_at = track.counter
            await eventually(lambda: viewer.pc.connectionState == "connected", within=10)
            connected_at = loop.time()
            await viewer.frames(1, within=5)
            first_frame_s = viewer.arrivals[0] - connected_at
            assert viewer.counters[0] == 0  # the GOP's keyframe, 1.5 s old
            assert first_frame_s < 1.0, first_frame_s  # the next keyframe is 2.5 s away
            # the burst is packed 1 ms apart, then the timeline runs at 30 fps again
            await viewer.until(lambda: viewer.counters[-1] >= joined_at + 45, within=5)
            assert in_order(viewer.counters)
            steps = dict(zip(viewer.counters[1:], itertools.pairwise(viewer.pts), strict=True))
            assert steps[5][1] - steps[5][0] == 90
            last = viewer.counters[-1]
            assert steps[last][1] - steps[last][0] == 3000 * (last - viewer.counters[-2])
            # and the viewer is live: a frame is decoded soon after it was sent
            recent = [
                at - track.sent_at[counter]
                for counter, at in zip(viewer.counters, viewer.arrivals, strict=True)
                if at - viewer.arrivals[0] > 1.0
            ]
            assert recent
            assert sorted(recent)[len(recent) // 2] < 0.15, recent
        finally:
            await viewer.close()
    finally:
        await publisher.close()
