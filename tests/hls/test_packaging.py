"""The packaging follows the node's streams, told by the media hub: a publisher's first
picture starts the playlists, its drop and return continues them after a discontinuity
(with silence in the audio rendition if the new publisher sends none, or in a new run
with an audio rendition if the new one brings audio to a video-only run), the stream's
end ends them, and a VP8 stream is encoded once to H.264."""

from __future__ import annotations

import io

import av
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from playwright.async_api import async_playwright

from livecast.hls.keys import PACKAGING
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, Client, bearer
from tests.hls.playlists import complete_segments, media_playlist, playlist_text, renditions
from tests.ingest.conftest import SellerStream, eventually
from tests.ingest.peers import CounterTrack, new_pc, publish, read_counter


async def test_the_playlist_starts_with_the_publishers_first_picture(
    client: Client, stream: SellerStream
) -> None:
    pc = new_pc()
    pc.addTransceiver(CounterTrack(), direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    resp = await client.post(
        f"/whip/{stream.id}",
        data=pc.localDescription.sdp,
        headers={**bearer(stream.seller_token), "Content-Type": "application/sdp"},
    )
    try:
        assert resp.status == 201, await resp.text()
        # packaged from the moment the publisher is accepted, before any media can flow
        assert client.app[PACKAGING].packager(stream.id) is not None
        await pc.setRemoteDescription(RTCSessionDescription(await resp.text(), "answer"))
        lines = await complete_segments(client, stream.id, 1)
    finally:
        await pc.close()
    assert "#EXT-X-MEDIA-SEQUENCE:0" in lines
    init = next(line for line in lines if line.startswith("#EXT-X-MAP:")).split('"')[1]
    first = next(line for line in lines if line.startswith("seg-"))
    data = b""
    for name in (init, first):
        resp = await client.get(f"/hls/{stream.id}/{name}")
        assert resp.status == 200
        data += await resp.read()
    with av.open(io.BytesIO(data), "r") as container:
        frame = next(container.decode(video=0))
        assert read_counter(frame) == 0


async def test_drop_and_return_continues_the_playlist_after_a_discontinuity(
    client: Client, stream: SellerStream
) -> None:
    first = await publish(client, stream.id, stream.seller_token)
    try:
        lines = await complete_segments(client, stream.id, 2)
    finally:
        await first.close()
    before = [line for line in lines if line.startswith("seg-")]
    second = await publish(client, stream.id, stream.seller_token, start=1000)
    try:

        async def continued() -> bool:
            text = await playlist_text(client, stream.id)
            if "#EXT-X-DISCONTINUITY\n" not in text:
                return False
            after = text.split("#EXT-X-DISCONTINUITY\n", 1)[1]
            return after.count("\nseg-") >= 1

        await eventually(continued, within=20.0)
        text = await playlist_text(client, stream.id)
    finally:
        await second.close()
    lines = text.splitlines()
    segments = [line for line in lines if line.startswith("seg-")]
    # the same playlist, numbered on: the first publisher's segments are still listed
    assert before[0] in segments
    run = before[0].split("-")[1]
    assert all(name.split("-")[1] == run for name in segments)
    numbers = [int(name.split("-")[2].split(".")[0]) for name in segments]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert lines.count("#EXT-X-DISCONTINUITY") == 1
    # the audio rendition the same way
    audio = (await playlist_text(client, stream.id, rendition="audio")).splitlines()
    assert audio.count("#EXT-X-DISCONTINUITY") == 1
    assert f"audio-{before[0]}" in audio


async def _renditions(client: Client, stream_id: str) -> dict[str, str]:
    resp = await client.get(f"/hls/{stream_id}/index.m3u8")
    assert resp.status == 200
    return renditions(await resp.text())


async def test_a_returning_publisher_without_audio_continues_with_silence(
    client: Client, stream: SellerStream
) -> None:
    first = await publish(client, stream.id, stream.seller_token)
    try:
        await complete_segments(client, stream.id, 1, "audio")
        names = await _renditions(client, stream.id)
    finally:
        await first.close()
    second = await publish(client, stream.id, stream.seller_token, start=1000, audio=False)
    try:

        async def continued() -> bool:
            text = await playlist_text(client, stream.id, rendition="audio")
            after = text.split("#EXT-X-DISCONTINUITY\n", 1)
            return len(after) == 2 and after[1].count("\naudio-seg-") >= 2

        await eventually(continued, within=20.0)
        text = await playlist_text(client, stream.id, rendition="audio")
    finally:
        await second.close()
    # the same run and renditions: players go on
    assert await _renditions(client, stream.id) == names
    after = text.split("#EXT-X-DISCONTINUITY\n", 1)[1].splitlines()
    init = next(line for line in text.splitlines() if line.startswith("#EXT-X-MAP:")).split('"')[1]
    data = await (await client.get(f"/hls/{stream.id}/{init}")).read()
    for name in (line for line in after if line.startswith("audio-seg-")):
        data += await (await client.get(f"/hls/{stream.id}/{name}")).read()
    with av.open(io.BytesIO(data), "r") as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert samples >= 48_000  # two segments of silence


async def test_a_returning_publisher_that_brings_audio_starts_a_new_run(
    client: Client, stream: SellerStream
) -> None:
    first = await publish(client, stream.id, stream.seller_token, audio=False)
    try:
        lines = await complete_segments(client, stream.id, 1)
        names = await _renditions(client, stream.id)
    finally:
        await first.close()
    assert set(names) == {"video"}  # no audio, no audio group
    old_part = next(line for line in lines if line.startswith("#EXT-X-PART:")).split('"')[1]
    second = await publish(client, stream.id, stream.seller_token, start=1000)
    try:

        async def with_audio() -> bool:
            return "audio" in await _renditions(client, stream.id)

        await eventually(with_audio, within=20.0)
        new_names = await _renditions(client, stream.id)
        audio_lines = await complete_segments(client, stream.id, 1, "audio")
    finally:
        await second.close()
    run = new_names["video"].removeprefix("video-").removesuffix(".m3u8")
    assert new_names == {"video": f"video-{run}.m3u8", "audio": f"audio-{run}.m3u8"}
    assert new_names["video"] != names["video"]  # new names: nothing a cache holds
    # the old run ended, and is still there for the players that were on it
    old = await client.get(f"/hls/{stream.id}/{names['video']}")
    assert old.status == 200
    assert (await old.text()).endswith("#EXT-X-ENDLIST\n")
    assert (await client.get(f"/hls/{stream.id}/{old_part}")).status == 200
    init = next(line for line in audio_lines if line.startswith("#EXT-X-MAP:")).split('"')[1]
    segment = next(line for line in audio_lines if line.startswith("audio-seg-"))
    data = b""
    for name in (init, segment):
        data += await (await client.get(f"/hls/{stream.id}/{name}")).read()
    with av.open(io.BytesIO(data), "r") as container:
        assert sum(frame.samples for frame in container.decode(audio=0)) > 0


async def test_the_streams_end_ends_the_playlist(client: Client, stream: SellerStream) -> None:
    sender = await publish(client, stream.id, stream.seller_token)
    try:
        await complete_segments(client, stream.id, 1)
        resp = await client.post(
            f"/api/streams/{stream.id}/end", headers=bearer(stream.seller_token)
        )
        assert resp.status == 200, await resp.text()

        # ended as the stream's media left: the hub told the packaging
        assert (await playlist_text(client, stream.id)).endswith("#EXT-X-ENDLIST\n")
    finally:
        await sender.close()
    text = await playlist_text(client, stream.id)
    assert "#EXT-X-PRELOAD-HINT" not in text
    # a blocking request for what will never come answers at once with the ended list
    last = [line for line in text.splitlines() if line.startswith("seg-")][-1]
    msn = int(last.split("-")[2].split(".")[0]) + 1
    resp = await client.get(f"{await media_playlist(client, stream.id)}?_HLS_msn={msn}&_HLS_part=0")
    assert resp.status == 200
    assert await resp.text() == text
    assert (await playlist_text(client, stream.id, rendition="audio")).endswith("#EXT-X-ENDLIST\n")


async def test_a_vp8_publisher_is_encoded_once_to_h264_and_plays(
    client: Client, stream: SellerStream
) -> None:
    sender = await publish(client, stream.id, stream.seller_token, codec="video/VP8")
    try:
        lines = await complete_segments(client, stream.id, 2)
    finally:
        await sender.close()
    init = next(line for line in lines if line.startswith("#EXT-X-MAP:")).split('"')[1]
    data = b""
    for name in [init, *(line for line in lines if line.startswith("seg-"))]:
        resp = await client.get(f"/hls/{stream.id}/{name}")
        assert resp.status == 200
        data += await resp.read()
    counters = []
    with av.open(io.BytesIO(data), "r") as container:
        assert container.streams.video[0].codec_context.name == "h264"
        for frame in container.decode(video=0):
            counters.append(read_counter(frame))
    assert len(counters) >= 30
    assert counters == sorted(counters)


async def test_a_blocking_request_gives_up_while_the_publisher_is_away(
    client: Client, stream: SellerStream
) -> None:
    sender = await publish(client, stream.id, stream.seller_token)
    try:
        await complete_segments(client, stream.id, 1)
    finally:
        await sender.close()
    packager = client.app[PACKAGING].packager(stream.id)
    assert packager is not None
    msn, index = packager.video.next_part()
    path = await media_playlist(client, stream.id)
    resp = await client.get(f"{path}?_HLS_msn={msn}&_HLS_part={index + 1}")
    # bounded by three target durations: then 503, not to be cached, try again soon
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "hls_unavailable"
    assert resp.headers["Retry-After"] == "1"
    assert resp.headers["Cache-Control"] == "no-store"


async def test_the_watch_page_goes_on_into_the_new_run_with_sound(
    client: Client, stream: SellerStream
) -> None:
    """Chromium, the watch page on LL-HLS (hls.js): a video-only publisher, then one
    with audio (a new run): the page plays out the ended run, reads ``index.m3u8``
    again and plays the new run, both renditions."""
    first = await publish(client, stream.id, stream.seller_token, audio=False)
    requested: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            await complete_segments(client, stream.id, 1)
            page = await browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            await page.goto(str(client.make_url(f"/watch/{stream.id}?hls=1")))
            await page.wait_for_function(_PLAYING.format(frames=10), timeout=30_000)
            old_run = client.app[PACKAGING].streams[stream.id].packager.run
            await first.close()
            second = await publish(client, stream.id, stream.seller_token, start=1000)
            try:
                await eventually(lambda: _new_run(client, stream.id, old_run), within=20.0)
                new_run = client.app[PACKAGING].streams[stream.id].packager.run
                audio = f"/hls/{stream.id}/audio-{new_run}.m3u8"
                try:
                    await eventually(lambda: _asked(requested, audio), within=30.0)
                except AssertionError as exc:
                    state = await page.evaluate("() => ({...document.body.dataset})")
                    raise AssertionError(f"{state} {requested[-8:]}") from exc
                frames = await page.evaluate(_FRAMES)
                await page.wait_for_function(_PLAYING.format(frames=frames + 15), timeout=20_000)
            finally:
                await second.close()
        finally:
            await browser.close()
    assert any(f"/hls/{stream.id}/video-{old_run}.m3u8?_HLS_msn=" in url for url in requested)
    assert any(f"/hls/{stream.id}/video-{new_run}.m3u8?_HLS_msn=" in url for url in requested)
    assert any(f"/hls/{stream.id}/audio-part-{new_run}-" in url for url in requested)


_FRAMES = "() => document.querySelector('#video').getVideoPlaybackQuality().totalVideoFrames"
_PLAYING = (
    "() => document.body.dataset.video === 'playing'"
    " && document.querySelector('#video').getVideoPlaybackQuality().totalVideoFrames > {frames}"
)


async def _new_run(client: Client, stream_id: str, old_run: str) -> bool:
    packaged = client.app[PACKAGING].streams.get(stream_id)
    return packaged is not None and packaged.packager.run != old_run


async def _asked(requested: list[str], path: str) -> bool:
    return any(path in url for url in requested)
