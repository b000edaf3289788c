"""Origin/edge cascade on one Redis: viewers on node B of a stream published on node A
are served by B's one pull from A, over real WHEP and real aiortc peers on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from livecast.aio import cancel_and_wait
from livecast.app import create_app
from livecast.appkeys import EVENTS, TOKENS
from livecast.auth import Role
from livecast.config import Settings
from livecast.embedded_redis import EmbeddedRedis
from livecast.ingest.edge import PullState
from livecast.ingest.keys import MEDIA
from tests.conftest import AiohttpClient, Client, MakeToken, bearer, published_event
from tests.ingest.conftest import MakeNode, SellerStream, eventually, kill_node
from tests.ingest.peers import Viewer, in_order, publish, view

EDGE_LINGER_S = 0.5  # webrtc.edge_linger_s in these tests
ORIGIN_TTL_S = 1.0  # webrtc.origin_ttl_s


def _edge_sessions(origin: Client, stream_id: str) -> int:
    media = origin.app[MEDIA].streams.get(stream_id)
    return 0 if media is None else len(media.viewers)


def _pulling(edge: Client, stream_id: str) -> bool:
    media = edge.app[MEDIA].streams.get(stream_id)
    return bool(media and media.upstream and media.upstream.state is PullState.CONNECTED)


async def _more_frames(viewer: Viewer, count: int = 10) -> list[int]:
    return await viewer.frames(len(viewer.counters) + count)


async def test_viewers_on_an_edge_share_one_pull_from_the_origin(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b = await make_node(), await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token, codec="video/VP8")
    viewers = [await view(node_b, stream.id) for _ in range(3)]
    try:
        for viewer in viewers:
            counters = await viewer.frames(10)
            assert in_order(counters)
            assert viewer.video_codec == "vp8"
            await viewer.audio(5)
        assert _edge_sessions(node_a, stream.id) == 1
        assert _pulling(node_b, stream.id)
        status = await (await node_b.get(f"/api/streams/{stream.id}/media")).json()
        assert status["edge"] is True
        assert status["viewers"] == 3
        assert status["video_codec"] == "vp8"
        metrics = (await (await node_b.get("/metrics")).text()).splitlines()
        assert "livecast_webrtc_edge_pulls 1.0" in metrics
        assert "livecast_webrtc_viewers 3.0" in metrics

        # a publisher on the edge is sent to the origin, and the stream runs on
        from tests.ingest.test_whip import _offer

        resp = await node_b.post(
            f"/whip/{stream.id}",
            data=await _offer(),
            headers={"Content-Type": "application/sdp", **bearer(stream.seller_token)},
            allow_redirects=False,
        )
        assert resp.status == 307
        assert (await resp.json())["error"]["code"] == "publisher_active"
        for viewer in viewers:
            assert in_order(await _more_frames(viewer))
        assert _edge_sessions(node_a, stream.id) == 1
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()


async def test_the_pull_closes_after_the_last_edge_viewer_leaves(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b = await make_node(), await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token)
    try:
        first, second = await view(node_b, stream.id), await view(node_b, stream.id)
        await first.frames(3)
        await second.frames(3)
        assert (await node_b.delete(first.location)).status == 200
        await first.close()
        await asyncio.sleep(EDGE_LINGER_S * 3)
        assert _edge_sessions(node_a, stream.id) == 1  # one viewer still watches
        assert in_order(await _more_frames(second))

        assert (await node_b.delete(second.location)).status == 200
        assert _pulling(node_b, stream.id)  # not at once: within the linger
        await second.close()
        await eventually(lambda: _edge_sessions(node_a, stream.id) == 0)
        # B lets the stream go once its DELETE to A is answered; A may have dropped the
        # session a moment before, when the pull's connection closed
        await eventually(lambda: stream.id not in node_b.app[MEDIA].streams)

        # a viewer arriving later gets a new pull
        again = await view(node_b, stream.id)
        try:
            assert in_order(await again.frames(5))
            assert _edge_sessions(node_a, stream.id) == 1
        finally:
            await again.close()
    finally:
        await publisher.close()


async def test_edge_viewers_ride_out_a_dropped_pull(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b = await make_node(), await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token)
    viewer = await view(node_b, stream.id)
    try:
        await viewer.frames(5)
        hub_a = node_a.app[MEDIA]
        (edge_session,) = hub_a.streams[stream.id].viewers.values()
        await hub_a.end(edge_session)  # the origin drops the edge
        await eventually(lambda: _edge_sessions(node_a, stream.id) == 1, within=10)
        assert next(iter(hub_a.streams[stream.id].viewers)) != edge_session.id
        counters = await _more_frames(viewer, 15)
        assert in_order(counters), " ".join(map(str, counters))
        assert viewer.pc.connectionState == "connected"
    finally:
        await viewer.close()
        await publisher.close()


async def test_edge_viewer_waiting_before_the_host_goes_live_and_private_streams(
    make_node: MakeNode, client: Client, make_token: MakeToken
) -> None:
    node_a, node_b = await make_node(), await make_node()
    seller = make_token(Role.SELLER, sub="seller-7")
    resp = await client.post(
        "/api/streams", json={"title": "Members", "public": False}, headers=bearer(seller)
    )
    stream_id = (await resp.json())["id"]
    member = make_token(Role.VIEWER, streams={stream_id})
    viewer = await view(node_b, stream_id, headers=bearer(member))
    try:
        publisher = await publish(node_a, stream_id, seller)
        try:
            assert in_order(await viewer.frames(10))
            assert _edge_sessions(node_a, stream_id) == 1
        finally:
            await publisher.close()
    finally:
        await viewer.close()


@pytest.mark.parametrize("settings", [{"webrtc__gop_cache_s": 0.0}], indirect=True)
async def test_a_late_edge_viewers_keyframe_request_reaches_the_publisher(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b = await make_node(), await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token)
    first = await view(node_b, stream.id)
    try:
        await first.frames(5)
        await first.until(lambda: first.counters[-1] >= 45)  # no GOP cache to start from
        origin_video = node_a.app[MEDIA].streams[stream.id].sources["video"]
        edge_video = node_b.app[MEDIA].streams[stream.id].sources["video"]
        asked_at_origin = origin_video.keyframe_requests_sent
        asked_at_edge = edge_video.keyframe_requests_sent
        late = await view(node_b, stream.id)
        try:
            counters = await late.frames(5, within=5)
            assert counters[0] >= 45  # it started mid-stream, from a fresh keyframe
            assert in_order(counters)
            assert edge_video.keyframe_requests_sent > asked_at_edge
            assert origin_video.keyframe_requests_sent > asked_at_origin
            assert _edge_sessions(node_a, stream.id) == 1
        finally:
            await late.close()
    finally:
        await first.close()
        await publisher.close()


async def test_a_stream_ended_at_its_origin_ends_on_the_edge(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b = await make_node(), await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token)
    viewer = await view(node_b, stream.id)
    try:
        await viewer.frames(3)
        resp = await node_a.post(
            f"/api/streams/{stream.id}/end", headers=bearer(stream.seller_token)
        )
        assert resp.status == 200, await resp.text()
        await eventually(lambda: viewer.pc.connectionState == "closed", within=10)
        # and once B's pull has said DELETE to A
        await eventually(lambda: stream.id not in node_b.app[MEDIA].streams)
    finally:
        await viewer.close()
        await publisher.close()


async def test_edge_viewers_follow_the_stream_to_a_new_origin(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b, node_c = await make_node(), await make_node(), await make_node()
    first = await publish(node_a, stream.id, stream.seller_token)
    viewer = await view(node_b, stream.id)
    try:
        await viewer.frames(5)
        # node A dies as far as Redis and the host can tell; its claim expires
        heartbeat = node_a.app[MEDIA].origins._heartbeat
        assert heartbeat is not None
        await cancel_and_wait(heartbeat)
        await first.close()
        await asyncio.sleep(ORIGIN_TTL_S + 0.3)
        second = await publish(node_c, stream.id, stream.seller_token, start=5000)
        try:
            counters = await viewer.until(lambda: viewer.counters[-1] >= 5000, within=10)
            assert in_order(counters)
            assert viewer.pc.connectionState == "connected"
            assert _edge_sessions(node_c, stream.id) == 1
        finally:
            await second.close()
    finally:
        await viewer.close()


async def test_a_stream_ended_through_an_edge_ends_at_its_origin(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b = await make_node(), await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token)
    viewer = await view(node_b, stream.id)
    try:
        await viewer.frames(3)
        resp = await node_b.post(
            f"/api/streams/{stream.id}/end", headers=bearer(stream.seller_token)
        )
        assert resp.status == 200, await resp.text()
        await eventually(lambda: stream.id not in node_a.app[MEDIA].streams, within=10)
        await eventually(lambda: publisher.pc.connectionState == "closed", within=10)
        await eventually(lambda: viewer.pc.connectionState == "closed", within=10)
        assert not node_a.app[MEDIA].origins.claimed
    finally:
        await viewer.close()
        await publisher.close()


@pytest.mark.parametrize("settings", [{"webrtc__max_viewers_per_stream": 2}], indirect=True)
async def test_a_full_origin_still_feeds_its_edges(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b = await make_node(), await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token)
    direct = [await view(node_a, stream.id) for _ in range(2)]
    on_edge: list[Viewer] = []
    try:
        with pytest.raises(AssertionError, match="WHEP answered 429"):
            await view(node_a, stream.id)
        # a viewer token is a viewer's, whatever its subject says
        lookalike = node_a.app[TOKENS].issue(
            sub="edge:somenode", name="livecast edge", role=Role.VIEWER, ttl_s=60
        )
        with pytest.raises(AssertionError, match="WHEP answered 429"):
            await view(node_a, stream.id, headers=bearer(lookalike))

        on_edge.append(await view(node_b, stream.id))
        on_edge.append(await view(node_b, stream.id))
        for viewer in on_edge:
            assert in_order(await viewer.frames(10))
        assert _edge_sessions(node_a, stream.id) == 3  # two viewers and the pull
        with pytest.raises(AssertionError, match="WHEP answered 429"):
            await view(node_a, stream.id)  # the pull took no viewer's place
    finally:
        for viewer in direct + on_edge:
            await viewer.close()
        await publisher.close()


@pytest.mark.parametrize("settings", [{"webrtc__max_viewers_per_stream": 30}], indirect=True)
async def test_a_refused_pull_backs_off_and_warns_once(
    make_node: MakeNode, stream: SellerStream, caplog: pytest.LogCaptureFixture
) -> None:
    node_a = await make_node()
    node_b = await make_node(video_codecs=("h264",))  # cannot take the stream's VP8
    publisher = await publish(node_a, stream.id, stream.seller_token, codec="video/VP8")
    viewers: list[Viewer] = []
    try:
        with caplog.at_level(logging.INFO, logger="livecast.ingest.edge"):
            loop = asyncio.get_running_loop()
            started = loop.time()
            while loop.time() - started < 3.0:  # viewers keep arriving
                viewers.append(await view(node_b, stream.id))
                await asyncio.sleep(0.2)
        refusals = [r for r in caplog.records if "refused the pull" in r.getMessage()]
        assert "422 codec_unsupported" in refusals[0].getMessage()
        # 1, 2 s (each 50-100 %) between attempts: three at most in 3 s
        assert 1 <= len(refusals) <= 3, [r.getMessage() for r in refusals]
        assert [r.levelno for r in refusals].count(logging.WARNING) == 1
        assert len(viewers) >= 5
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()


@pytest.fixture
async def own_redis(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedRedis]:
    """A Redis of this test's own, which it may stop."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("own-redis"))
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


async def test_an_edge_warns_once_while_redis_is_down(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    own_redis: EmbeddedRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = dataclasses.replace(settings.redis, url=own_redis.url)
    node = await aiohttp_client(create_app(dataclasses.replace(settings, redis=redis)))
    seller = node.app[TOKENS].issue(sub="seller-r", name="Seller", role=Role.SELLER, ttl_s=60)
    resp = await node.post("/api/streams", json={"title": "Later"}, headers=bearer(seller))
    viewer = await view(node, (await resp.json())["id"])  # waits for a publisher
    try:
        await asyncio.to_thread(own_redis.stop)
        with caplog.at_level(logging.INFO, logger="livecast.ingest.edge"):
            await asyncio.sleep(3.5)  # the edge looks the stream's origin up every second
        logged = [r for r in caplog.records if r.name == "livecast.ingest.edge"]
        assert [r.levelno for r in logged] == [logging.WARNING], [r.getMessage() for r in logged]
        assert logged[0].exc_info is None
    finally:
        await viewer.close()


async def _events(node: Client, stream_id: str, redis_url: str) -> PubSub:
    """What every viewer of the stream is told, on every node."""
    events = aioredis.Redis.from_url(redis_url).pubsub()
    await events.subscribe(node.app[EVENTS].channel(stream_id))
    return events


async def _told(events: PubSub, within: float) -> list[tuple[str, str]]:
    """``(type, state)`` of the state events published within ``within`` seconds."""
    told: list[tuple[str, str]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        message = await events.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            event = published_event(message["data"])
            if event["type"] in ("media.state", "stream.state"):
                told.append((event["type"], event["data"]["state"]))
    return told


async def _media_state(node: Client, stream_id: str) -> str:
    status = await (await node.get(f"/api/streams/{stream_id}/media")).json()
    return str(status["state"])


@pytest.mark.parametrize("settings", [{"webrtc__reconnect_grace_s": 3.0}], indirect=True)
async def test_a_dead_origins_edges_tell_their_viewers_and_end_the_stream_once(
    make_node: MakeNode, stream: SellerStream, redis_url: str
) -> None:
    node_a, node_b, node_c = await make_node(), await make_node(), await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token)
    viewers = [await view(node_b, stream.id), await view(node_c, stream.id)]
    events = await _events(node_a, stream.id, redis_url)
    try:
        for viewer in viewers:
            await viewer.frames(5)
        # an edge reports the origin's media state, not its own idleness
        await eventually(lambda: _is(node_b, stream.id, "live"), within=5)
        await kill_node(node_a)
        await publisher.close()  # and the host never comes back

        # within the quiet time (1 s) and a tick, not after the origin record expired
        told = await _told(events, within=2.0)
        assert ("media.state", "reconnecting") in told, told
        assert await _media_state(node_b, stream.id) == "reconnecting"
        assert all(v.pc.connectionState == "connected" for v in viewers)

        # the grace (3 s) runs out: one node ends the stream, every viewer is told
        told += await _told(events, within=6.0)
        assert told.count(("stream.state", "ended")) == 1, told
        assert ("media.state", "ended") in told, told
        for viewer in viewers:
            await eventually(lambda v=viewer: v.pc.connectionState == "closed", within=5)  # type: ignore[misc]
        stream_now = await (await node_b.get(f"/api/streams/{stream.id}")).json()
        assert stream_now["state"] == "ended"
    finally:
        await events.aclose()
        for viewer in viewers:
            await viewer.close()
        await publisher.close()


async def _is(node: Client, stream_id: str, state: str) -> bool:
    return await _media_state(node, stream_id) == state


@pytest.mark.parametrize("settings", [{"webrtc__reconnect_grace_s": 4.0}], indirect=True)
async def test_a_publisher_back_through_another_node_within_the_grace_keeps_the_stream(
    make_node: MakeNode, stream: SellerStream, redis_url: str
) -> None:
    node_a, node_b, node_c = await make_node(), await make_node(), await make_node()
    first = await publish(node_a, stream.id, stream.seller_token)
    viewer = await view(node_b, stream.id)
    events = await _events(node_a, stream.id, redis_url)
    try:
        await viewer.frames(5)
        await kill_node(node_a)
        await first.close()
        await eventually(lambda: _is(node_b, stream.id, "reconnecting"), within=5)
        await asyncio.sleep(ORIGIN_TTL_S)  # A's record expires: C may take the stream
        second = await publish(node_c, stream.id, stream.seller_token, start=5000)
        try:
            counters = await viewer.until(lambda: viewer.counters[-1] >= 5000, within=10)
            assert in_order(counters)
            await eventually(lambda: _is(node_b, stream.id, "live"), within=5)
            told = await _told(events, within=4.0)  # past the grace B started
            assert ("stream.state", "ended") not in told, told
            stream_now = await (await node_b.get(f"/api/streams/{stream.id}")).json()
            assert stream_now["state"] == "live"
            assert viewer.pc.connectionState == "connected"
        finally:
            await second.close()
    finally:
        await events.aclose()
        await viewer.close()


async def test_an_edge_reports_its_origins_media_state(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b = await make_node(), await make_node()
    first = await publish(node_a, stream.id, stream.seller_token)
    viewer = await view(node_b, stream.id)
    try:
        await viewer.frames(5)
        await eventually(lambda: _is(node_b, stream.id, "live"), within=5)
        assert (
            await node_a.delete(first.location, headers=bearer(stream.seller_token))
        ).status == 200  # the host leaves
        await first.close()
        await eventually(lambda: _is(node_b, stream.id, "reconnecting"), within=5)
        assert _pulling(node_b, stream.id)  # the origin lives: the pull stays
        back = await publish(node_a, stream.id, stream.seller_token, start=1000)
        try:
            await viewer.until(lambda: viewer.counters[-1] >= 1000, within=10)
            await eventually(lambda: _is(node_b, stream.id, "live"), within=5)
        finally:
            await back.close()
    finally:
        await viewer.close()


async def test_an_early_edge_viewer_gets_a_vp8_publishers_video_at_once(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b = await make_node(), await make_node()
    viewer = await view(node_b, stream.id)  # before anyone publishes, anywhere
    try:
        await eventually(lambda: viewer.pc.connectionState == "connected", within=10)
        publisher = await publish(node_a, stream.id, stream.seller_token, codec="video/VP8")
        try:
            assert in_order(await viewer.frames(10, within=10))
            # the publisher's first frame is its first keyframe
            assert viewer.arrivals[0] - publisher.video.sent_at[0] < 1.0
            assert viewer.pc.connectionState == "connected"
        finally:
            await publisher.close()
    finally:
        await viewer.close()


@pytest.mark.parametrize("settings", [{"webrtc__reconnect_grace_s": 2.0}], indirect=True)
async def test_a_dead_origin_with_nobody_watching_elsewhere_still_ends_the_stream(
    make_node: MakeNode, stream: SellerStream, redis_url: str
) -> None:
    node_a, node_b = await make_node(video_codecs=("h264",)), await make_node()
    # a chat-only pre-show: live through the REST API, no encoder ever connects
    resp = await node_a.post(
        "/api/streams", json={"title": "Pre-show"}, headers=bearer(stream.seller_token)
    )
    pre_show = (await resp.json())["id"]
    resp = await node_a.post(f"/api/streams/{pre_show}/start", headers=bearer(stream.seller_token))
    assert resp.status == 200, await resp.text()
    # ... but one that A refused (A claimed the stream while it looked at the offer)
    with pytest.raises(AssertionError, match="WHIP answered 422"):
        await publish(node_a, pre_show, stream.seller_token, codec="video/VP8")
    publisher = await publish(node_a, stream.id, stream.seller_token)
    events = await _events(node_a, stream.id, redis_url)
    try:
        await eventually(lambda: _is(node_a, stream.id, "live"), within=5)
        await kill_node(node_a)  # nobody watches on B
        await publisher.close()  # and the host never comes back
        # A's record expires (1 s), the grace runs out (2 s), B's next look (every 2 s)
        told = await _told(events, within=10.0)
        assert told.count(("stream.state", "ended")) == 1, told
        stream_now = await (await node_b.get(f"/api/streams/{stream.id}")).json()
        assert stream_now["state"] == "ended"
        assert stream.id not in node_b.app[MEDIA].streams  # B never held any of it
        # B looked at the pre-show too, as long past its going live: it had no origin
        pre_show_now = await (await node_b.get(f"/api/streams/{pre_show}")).json()
        assert pre_show_now["state"] == "live"
    finally:
        await events.aclose()
        await publisher.close()
