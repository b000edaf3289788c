"""/hls/... over real HTTP, fed by a real WHIP publisher (an aiortc peer sending H.264
and Opus): the multivariant playlist and the video and audio renditions (CMAF: one track
each), blocking reload, the files and their caching, bad requests, private streams, and
that both tracks decode, also through FFmpeg's HLS demuxer."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator

import av
import pytest
from playwright.async_api import async_playwright

from livecast.appkeys import REDIS
from livecast.auth import Role
from livecast.hls.keys import PACKAGING
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, Client, MakeToken, bearer
from tests.hls.playlists import (
    block_on_the_hinted_part,
    complete_segments,
    media_playlist,
    newer_playlist,
    playlist_text,
    renditions,
    segments,
)
from tests.ingest.conftest import MakeNode, SellerStream, eventually
from tests.ingest.peers import Publisher, publish, read_counter


@pytest.fixture
async def publisher(client: Client, stream: SellerStream) -> AsyncIterator[Publisher]:
    sender = await publish(client, stream.id, stream.seller_token)
    yield sender
    await sender.close()


async def test_a_whip_publisher_plays_as_ll_hls(
    client: Client, stream: SellerStream, publisher: Publisher
) -> None:
    resp = await client.get(f"/hls/{stream.id}/index.m3u8")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert resp.headers["Cache-Control"] == "public, max-age=1"
    multivariant = await resp.text()
    lines = multivariant.splitlines()
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in lines
    run = client.app[PACKAGING].streams[stream.id].packager.run
    assert renditions(multivariant) == {"video": f"video-{run}.m3u8", "audio": f"audio-{run}.m3u8"}
    media = next(line for line in lines if line.startswith("#EXT-X-MEDIA:"))
    assert 'TYPE=AUDIO,GROUP-ID="audio"' in media
    assert "DEFAULT=YES,AUTOSELECT=YES" in media
    stream_inf = next(line for line in lines if line.startswith("#EXT-X-STREAM-INF:"))
    assert re.search(r'CODECS="avc1\.[0-9a-f]{6},mp4a\.40\.2"', stream_inf), stream_inf
    assert "RESOLUTION=160x96" in stream_inf
    assert 'AUDIO="audio"' in stream_inf
    assert int(re.findall(r"BANDWIDTH=(\d+)", stream_inf)[0]) > 0
    again = await client.get(
        f"/hls/{stream.id}/index.m3u8", headers={"If-None-Match": resp.headers["ETag"]}
    )
    assert again.status == 304
    # each rendition is one CMAF track: H.264 alone, AAC alone, and both decode
    counters: list[int] = []
    samples = 0
    for kind in ("video", "audio"):
        lines = await complete_segments(client, stream.id, 3, kind)
        init = next(line for line in lines if line.startswith("#EXT-X-MAP:")).split('"')[1]
        listed = [line for line in lines if line.startswith(("seg-", "audio-seg-"))]
        data = b""
        for name in [init, *listed]:
            assert name.startswith("audio-") == (kind == "audio")
            resp = await client.get(f"/hls/{stream.id}/{name}")
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert resp.headers["Content-Type"] == "video/mp4"
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            again = await client.get(
                f"/hls/{stream.id}/{name}", headers={"If-None-Match": resp.headers["ETag"]}
            )
            assert again.status == 304
            data += await resp.read()
        with av.open(io.BytesIO(data), "r") as container:
            names = [s.codec_context.name for s in container.streams]
            assert names == (["h264"] if kind == "video" else ["aac"])
            for frame in container.decode(*container.streams):
                if isinstance(frame, av.VideoFrame):
                    counters.append(read_counter(frame))
                else:
                    assert isinstance(frame, av.AudioFrame)
                    samples += frame.samples
    # three segments of the publisher's picture, in order, with their sound
    assert len(counters) >= 3 * 20
    assert counters == sorted(counters)
    assert samples >= 48_000
    metrics = await (await client.get("/metrics")).text()
    assert "\nlivecast_hls_streams 1.0\n" in metrics


async def test_the_renditions_segments_and_parts_line_up(
    client: Client, stream: SellerStream, publisher: Publisher
) -> None:
    """The same segment numbers, program date times and part counts in both media
    playlists; every audio part independent."""
    await complete_segments(client, stream.id, 2, "audio")
    video = await playlist_text(client, stream.id, rendition="video")
    audio = await playlist_text(client, stream.id, rendition="audio")

    def complete(text: str) -> dict[int, tuple[str, int]]:
        dates = [line for line in text.splitlines() if line.startswith("#EXT-X-PROGRAM")]
        return {
            msn: (date, len(parts))
            for (msn, parts, done), date in zip(segments(text), dates, strict=True)
            if done
        }

    in_video, in_audio = complete(video), complete(audio)
    common = set(in_video) & set(in_audio)
    assert len(common) >= 1
    for msn in common:
        assert in_video[msn][0] == in_audio[msn][0]  # EXT-X-PROGRAM-DATE-TIME
        if in_video[msn][1] and in_audio[msn][1]:  # both still list their parts
            assert in_video[msn][1] == in_audio[msn][1]
    parts = [line for line in audio.splitlines() if line.startswith("#EXT-X-PART:")]
    assert parts
    assert all(line.endswith(",INDEPENDENT=YES") for line in parts)


async def test_blocking_reload_answers_when_the_hinted_part_appears(
    client: Client, stream: SellerStream, publisher: Publisher
) -> None:
    await complete_segments(client, stream.id, 1)
    reload = await block_on_the_hinted_part(client, stream.id)
    # the same request again gets the same bytes, however many parts came since
    await eventually(lambda: newer_playlist(client, reload.path, reload.body))
    same = await client.get(f"{reload.path}{reload.query}")
    assert await same.text() == reload.body
    assert same.headers["ETag"] == reload.response.headers["ETag"]
    # the request for the hinted part was answered once it was made
    part = await reload.hinted
    assert part.status == 200
    assert len(await part.read()) > 0


@pytest.mark.parametrize(
    "query",
    ["?_HLS_msn=abc", "?_HLS_msn=-1", "?_HLS_part=1", "?_HLS_msn=1.5", "?_HLS_msn=99999"],
)
async def test_nonsense_blocking_values_are_400_at_once(
    client: Client, stream: SellerStream, publisher: Publisher, query: str
) -> None:
    await complete_segments(client, stream.id, 1)
    for kind in ("video", "audio"):
        resp = await client.get(f"{await media_playlist(client, stream.id, kind)}{query}")
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert error["code"] == "invalid_hls_request"
        assert error["message"]


async def test_unknown_streams_and_files_are_404(
    client: Client, stream: SellerStream, publisher: Publisher
) -> None:
    resp = await client.get("/hls/nosuchstream/index.m3u8")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "hls_not_found"
    await complete_segments(client, stream.id, 1)
    for name in (
        "video-deadbeef.m3u8",
        "audio-deadbeef.m3u8?_HLS_msn=1",
        "audio-part-deadbeef-0.m4s",
        "audio-init-deadbeef-0.mp4",
        "subtitles-deadbeef.m3u8",
        "passwd",
        "seg-00000000-0.m4s",
        "part-deadbeef-0.m4s",
        "part-deadbeef-0-0.m4s",
        "../index.m3u8",
    ):
        resp = await client.get(f"/hls/{stream.id}/{name}")
        assert resp.status == 404, name


async def test_a_private_stream_needs_a_token_that_may_watch_it(
    client: Client, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER, sub="seller-7")
    resp = await client.post(
        "/api/streams", json={"title": "Members only", "public": False}, headers=bearer(seller)
    )
    stream_id = (await resp.json())["id"]
    sender = await publish(client, stream_id, seller)
    try:
        member = bearer(make_token(Role.VIEWER, streams={stream_id}))

        async def playing() -> bool:
            resp = await client.get(f"/hls/{stream_id}/index.m3u8", headers=member)
            return resp.status == 200

        await eventually(playing, within=20.0)
        anonymous = await client.get(f"/hls/{stream_id}/index.m3u8")
        assert anonymous.status == 401
        stranger = bearer(make_token(Role.VIEWER))
        resp = await client.get(f"/hls/{stream_id}/index.m3u8", headers=stranger)
        assert resp.status == 403
        # every rendition URL the multivariant leads to is checked the same way
        for kind in ("video", "audio"):
            path = await media_playlist(client, stream_id, kind, headers=member)
            resp = await client.get(path, headers=member)
            assert resp.status == 200
            part = next(
                line for line in (await resp.text()).splitlines() if line.startswith("#EXT-X-PART:")
            ).split('"')[1]
            for name in (path.rsplit("/", 1)[1], part):
                assert (await client.get(f"/hls/{stream_id}/{name}")).status == 401
                resp = await client.get(f"/hls/{stream_id}/{name}", headers=stranger)
                assert resp.status == 403
                resp = await client.get(f"/hls/{stream_id}/{name}", headers=member)
                assert resp.status == 200
    finally:
        await sender.close()


async def test_ffmpeg_hls_demuxer_plays_the_playlist(
    client: Client, stream: SellerStream, publisher: Publisher
) -> None:
    await complete_segments(client, stream.id, 2)
    url = str(client.make_url(f"/hls/{stream.id}/index.m3u8"))

    def play(frames: int) -> tuple[list[int], int]:
        counters: list[int] = []
        samples = 0
        with av.open(url, "r", timeout=10.0) as container:
            # the demuxer follows the multivariant playlist to both renditions
            kinds = sorted(s.codec_context.name for s in container.streams)
            assert kinds == ["aac", "h264"], kinds
            for frame in container.decode(*container.streams):
                if isinstance(frame, av.VideoFrame):
                    counters.append(read_counter(frame))
                    if len(counters) >= frames:
                        break
                elif isinstance(frame, av.AudioFrame):
                    samples += frame.samples
        return counters, samples

    counters, samples = await asyncio.to_thread(play, 45)
    assert len(counters) == 45
    assert counters == sorted(counters)
    assert samples > 0


async def test_a_stream_made_private_stops_playing_anonymously(
    client: Client, stream: SellerStream, publisher: Publisher
) -> None:
    await complete_segments(client, stream.id, 1)
    resp = await client.patch(
        f"/api/streams/{stream.id}", json={"public": False}, headers=bearer(stream.seller_token)
    )
    assert resp.status == 200, await resp.text()

    async def refused() -> bool:
        return (await client.get(f"/hls/{stream.id}/index.m3u8")).status == 401

    await eventually(refused, within=10.0)
    resp = await client.get(f"/hls/{stream.id}/index.m3u8", headers=bearer(stream.seller_token))
    assert resp.status == 200


async def test_players_arriving_together_when_the_visibility_check_is_due_read_redis_once(
    client: Client, stream: SellerStream, publisher: Publisher
) -> None:
    await complete_segments(client, stream.id, 1)
    packaged = client.app[PACKAGING].streams[stream.id]
    redis = client.app[REDIS]

    async def reads() -> int:
        stats = await redis.info("commandstats")
        return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))

    async def together() -> None:
        answers = await asyncio.gather(
            *(client.get(f"/hls/{stream.id}/index.m3u8") for _ in range(100))
        )
        assert [a.status for a in answers] == [200] * 100

    await together()  # the connections, kept alive, so the next hundred arrive at once
    before = await reads()
    packaged.stream_read_at = 0.0  # the recheck falls due
    await together()
    # one read for the hundred (a few more may be other work of the node's)
    assert await reads() - before < 10


async def test_a_preflight_lets_players_on_any_origin_send_a_token(client: Client) -> None:
    for path in ("/hls/anystream/index.m3u8", "/hls/anystream/signed/1/sig/part-00000000-3.m4s"):
        resp = await client.options(
            path,
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization,if-none-match",
            },
        )
        assert resp.status == 204, path
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        allowed = {
            h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")
        }
        assert {"authorization", "if-none-match"} <= set(allowed)
        assert "GET" in resp.headers["Access-Control-Allow-Methods"]
        assert int(resp.headers["Access-Control-Max-Age"]) > 0


async def test_a_page_on_another_origin_plays_a_private_stream_with_a_token(
    client: Client, make_node: MakeNode, make_token: MakeToken
) -> None:
    """Chromium itself: a fetch with ``Authorization`` from another origin is preflighted,
    and only goes out if the preflight allows it."""
    seller = make_token(Role.SELLER, sub="seller-7")
    resp = await client.post(
        "/api/streams", json={"title": "Members only", "public": False}, headers=bearer(seller)
    )
    stream_id = (await resp.json())["id"]
    sender = await publish(client, stream_id, seller)
    member = make_token(Role.VIEWER, streams={stream_id})
    try:
        await eventually(
            lambda: _status(client, f"/hls/{stream_id}/index.m3u8", bearer(member), 200),
            within=20.0,
        )
        other = await make_node()  # another port: another origin to the browser
        url = str(client.make_url(f"/hls/{stream_id}/index.m3u8"))
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(str(other.make_url("/healthz")))
                answer = await page.evaluate(
                    """async ([url, token]) => {
                        const headers = {Authorization: `Bearer ${token}`};
                        const resp = await fetch(url, {headers});
                        return [resp.status, resp.headers.get("ETag"), await resp.text()];
                    }""",
                    [url, member],
                )
            finally:
                await browser.close()
    finally:
        await sender.close()
    status, etag, text = answer
    assert status == 200
    assert etag  # exposed to the page
    assert text.startswith("#EXTM3U")


async def _status(client: Client, path: str, headers: dict[str, str], status: int) -> bool:
    return (await client.get(path, headers=headers)).status == status
