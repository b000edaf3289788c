"""Several nodes on one Redis: a stream published on node A plays as LL-HLS through node
B, which forwards to A (the one packager): the same bytes, blocking reload included,
private streams by token or signed URL; when A dies or stops, B answers a JSON error;
when the stream moves to B, A forwards there; when it ends, every node shows the end.
Real WHIP publishers (aiortc), real HTTP between the nodes."""

from __future__ import annotations

import io

import av
import redis.asyncio as aioredis

from livecast.appkeys import KEYS
from livecast.auth import Role
from livecast.hls.keys import PACKAGING
from livecast.ingest.keys import MEDIA
from tests.conftest import Client, MakeToken, bearer
from tests.hls.playlists import (
    block_on_the_hinted_part,
    complete_segments,
    media_playlist,
    newer_playlist,
    playlist_text,
    renditions,
)
from tests.ingest.conftest import MakeNode, SellerStream, eventually, kill_node
from tests.ingest.peers import publish, read_counter


async def cut_off(node: Client) -> None:
    """Leave ``node`` as a killed process leaves it: no heartbeat (its origin record
    expires after ``webrtc.origin_ttl_s``), its port closed, its connections dropped."""
    await kill_node(node)
    runner = node.server.runner
    assert runner is not None
    assert runner.server is not None
    for site in list(runner.sites):
        await site.stop()
    await runner.server.shutdown(0.1)


async def test_a_stream_published_on_one_node_plays_through_another(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b = await make_node(), await make_node()
    sender = await publish(node_a, stream.id, stream.seller_token)
    try:
        await complete_segments(node_b, stream.id, 2, "audio")
        # only the origin packages; B holds no media of the stream's own
        assert stream.id in node_a.app[PACKAGING].streams
        assert stream.id not in node_b.app[PACKAGING].streams
        multivariant = await node_b.get(f"/hls/{stream.id}/index.m3u8")
        direct = await node_a.get(f"/hls/{stream.id}/index.m3u8")
        assert await multivariant.read() == await direct.read()
        assert multivariant.headers["ETag"] == direct.headers["ETag"]

        counters = []
        samples = 0
        for kind in ("video", "audio"):
            lines = await complete_segments(node_b, stream.id, 2, kind)
            init = next(line for line in lines if line.startswith("#EXT-X-MAP:")).split('"')[1]
            data = b""
            for name in [init, *(line for line in lines if line.startswith(("seg-", "audio-")))]:
                resp = await node_b.get(f"/hls/{stream.id}/{name}")
                assert resp.status == 200
                assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
                assert resp.headers["Content-Type"] == "video/mp4"
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
                body = await resp.read()
                # the same bytes and ETag whichever node is asked
                direct = await node_a.get(f"/hls/{stream.id}/{name}")
                assert await direct.read() == body
                assert direct.headers["ETag"] == resp.headers["ETag"]
                again = await node_b.get(
                    f"/hls/{stream.id}/{name}", headers={"If-None-Match": resp.headers["ETag"]}
                )
                assert again.status == 304
                head = await node_b.head(f"/hls/{stream.id}/{name}")
                assert head.status == 200
                assert head.headers["Content-Length"] == str(len(body))
                data += body
            with av.open(io.BytesIO(data), "r") as container:
                assert [s.codec_context.name for s in container.streams] == (
                    ["h264"] if kind == "video" else ["aac"]
                )
                for frame in container.decode(*container.streams):
                    if isinstance(frame, av.VideoFrame):
                        counters.append(read_counter(frame))
                    else:
                        samples += frame.samples
        assert len(counters) >= 2 * 20
        assert counters == sorted(counters)
        assert samples >= 48_000

        # the origin's errors come through as they are
        video = await media_playlist(node_b, stream.id)
        resp = await node_b.get(f"{video}?_HLS_msn=99999")
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_hls_request"
        resp = await node_b.get(f"/hls/{stream.id}/part-deadbeef-0.m4s")
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "hls_not_found"
        assert _forwarded(await (await node_b.get("/metrics")).text(), "answered") >= 10
        assert _forwarded(await (await node_a.get("/metrics")).text(), "answered") == 0
    finally:
        await sender.close()


async def test_blocking_reload_through_another_node(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b = await make_node(), await make_node()
    sender = await publish(node_a, stream.id, stream.seller_token)
    try:
        await complete_segments(node_b, stream.id, 1)
        reload = await block_on_the_hinted_part(node_b, stream.id, "audio")
        cache = reload.response.headers["Cache-Control"]
        max_age = int(cache.removeprefix("public, max-age="))
        assert max_age >= 2  # a blocking answer never changes: cacheable for its window
        # the identical request, at either node, later: identical bytes and ETag
        await eventually(lambda: newer_playlist(node_b, reload.path, reload.body))
        for node in (node_b, node_a):
            same = await node.get(f"{reload.path}{reload.query}")
            assert await same.text() == reload.body
            assert same.headers["ETag"] == reload.response.headers["ETag"]
        part = await reload.hinted
        assert part.status == 200
        original = await node_a.get(f"/hls/{stream.id}/{reload.name}")
        assert await part.read() == await original.read()
    finally:
        await sender.close()


def _forwarded(metrics: str, outcome: str) -> float:
    line = f'livecast_hls_forwarded_requests_total{{outcome="{outcome}"}} '
    found = [row for row in metrics.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


async def test_a_private_stream_through_another_node(
    make_node: MakeNode, client: Client, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER, sub="seller-7")
    resp = await client.post(
        "/api/streams", json={"title": "Members only", "public": False}, headers=bearer(seller)
    )
    stream_id = (await resp.json())["id"]
    node_a, node_b = await make_node(), await make_node()
    sender = await publish(node_a, stream_id, seller)
    try:
        member = bearer(make_token(Role.VIEWER, streams={stream_id}))

        async def playing() -> bool:
            resp = await node_b.get(f"/hls/{stream_id}/index.m3u8", headers=member)
            return resp.status == 200

        await eventually(playing, within=20.0)
        anonymous = await node_b.get(f"/hls/{stream_id}/index.m3u8")
        assert anonymous.status == 401
        assert (await anonymous.json())["error"]["code"] == "unauthorized"
        stranger = bearer(make_token(Role.VIEWER))
        assert (await node_b.get(f"/hls/{stream_id}/index.m3u8", headers=stranger)).status == 403
        # a signed playback URL made by B plays through B with no token
        playback = await (
            await node_b.get(f"/api/streams/{stream_id}/playback", headers=member)
        ).json()
        signed = await node_b.get(playback["url"])
        assert signed.status == 200
        prefix = playback["url"].removesuffix("index.m3u8")
        for name in renditions(await signed.text()).values():
            assert (await node_b.get(f"/hls/{stream_id}/{name}")).status == 401
            media = await node_b.get(prefix + name)
            assert media.status == 200
            lines = (await media.text()).splitlines()
            part = next(line for line in lines if line.startswith("#EXT-X-PART:"))
            part_name = part.split('"')[1]
            assert (await node_b.get(f"/hls/{stream_id}/{part_name}")).status == 401
            assert (await node_b.get(prefix + part_name)).status == 200
    finally:
        await sender.close()


async def test_the_other_node_answers_json_errors_once_the_origin_is_gone(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b = await make_node(), await make_node()
    sender = await publish(node_a, stream.id, stream.seller_token)
    try:
        await complete_segments(node_b, stream.id, 1)
        await cut_off(node_a)
        # its record is still there: the node that packages it cannot be reached
        resp = await node_b.get(f"/hls/{stream.id}/index.m3u8")
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "hls_unavailable"
        assert resp.headers["Retry-After"] == "1"
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert _forwarded(await (await node_b.get("/metrics")).text(), "unreachable") >= 1

        # its record expired (webrtc.origin_ttl_s): no node packages the stream
        async def not_found() -> bool:
            resp = await node_b.get(f"/hls/{stream.id}/index.m3u8")
            return resp.status == 404 and (await resp.json())["error"]["code"] == "hls_not_found"

        await eventually(not_found, within=5.0)
    finally:
        await sender.close()


async def test_a_stopped_origin_leaves_a_404(make_node: MakeNode, stream: SellerStream) -> None:
    node_a, node_b = await make_node(), await make_node()
    sender = await publish(node_a, stream.id, stream.seller_token)
    try:
        await complete_segments(node_b, stream.id, 1)
        await node_a.close()  # a clean stop gives its origin claims up at once
        codes = []

        async def not_found() -> bool:
            resp = await node_b.get(f"/hls/{stream.id}/index.m3u8")
            codes.append((resp.status, (await resp.json())["error"]["code"]))
            return resp.status == 404

        # (B may try the address it knew for up to a second: 503 then)
        await eventually(not_found, within=3.0)
        assert codes[-1] == (404, "hls_not_found")
        assert set(codes[:-1]) <= {(503, "hls_unavailable")}
    finally:
        await sender.close()


async def test_a_node_that_lost_the_stream_forwards_to_its_new_origin(
    make_node: MakeNode, stream: SellerStream, redis_client: aioredis.Redis
) -> None:
    node_a, node_b = await make_node(), await make_node()
    first = await publish(node_a, stream.id, stream.seller_token)
    try:
        await complete_segments(node_a, stream.id, 1)
        # B took the stream while A could not reach Redis; the publisher goes to B
        key = node_a.app[KEYS].key("media", "origin", stream.id)
        await redis_client.set(key, node_b.app[MEDIA].origins.node.record(), px=10_000)
        await eventually(lambda: stream.id not in node_a.app[MEDIA].origins.claimed)
        packaged = node_a.app[PACKAGING].streams[stream.id]
        assert packaged.ended_at is not None  # A's playlist ended with its claim
        ended = packaged.packager.video.playlist()
        assert ended is not None
        assert ended.body.endswith(b"#EXT-X-ENDLIST\n")
        second = await publish(node_b, stream.id, stream.seller_token)
        try:
            # asked at A, answered by B's packager
            lines = await complete_segments(node_a, stream.id, 1)
            packager_b = node_b.app[PACKAGING].packager(stream.id)
            assert packager_b is not None
            assert packager_b.run != packaged.packager.run
            assert all(f"-{packager_b.run}-" in line for line in lines if line.startswith("seg-"))
        finally:
            await second.close()
    finally:
        await first.close()


async def test_every_node_shows_the_end_of_a_stream(
    make_node: MakeNode, stream: SellerStream, redis_client: aioredis.Redis
) -> None:
    node_a, node_b = await make_node(), await make_node()
    sender = await publish(node_a, stream.id, stream.seller_token)
    try:
        await complete_segments(node_b, stream.id, 1)
        resp = await node_a.post(
            f"/api/streams/{stream.id}/end", headers=bearer(stream.seller_token)
        )
        assert resp.status == 200
    finally:
        await sender.close()
    ended = await playlist_text(node_a, stream.id)
    assert ended.endswith("#EXT-X-ENDLIST\n")
    # A let go of the stream's origin record; its ended playlist stays a while
    key = node_a.app[KEYS].key("media", "origin", stream.id)
    await eventually(lambda: _gone(redis_client, key))
    node_c = await make_node()  # one that never knew where the stream was
    for node in (node_b, node_c):

        async def shows_the_end(node: Client = node) -> bool:
            return await playlist_text(node, stream.id) == ended

        await eventually(shows_the_end)


async def _gone(redis_client: aioredis.Redis, key: str) -> bool:
    return not await redis_client.exists(key)
