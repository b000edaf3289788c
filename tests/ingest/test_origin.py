"""The origin record across nodes on one Redis: one publisher per stream however many
nodes there are, kept through a reconnect on the same node, freed when its node dies; a
publisher at another node is redirected to the origin."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import redis.asyncio as aioredis
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from livecast.aio import cancel_and_wait
from livecast.appkeys import KEYS
from livecast.appkeys import STREAMS as STREAMS_KEY
from livecast.config import ConfigError, ServerSettings, load_settings
from livecast.ingest.keys import MEDIA
from livecast.ingest.origin import Origin, OriginRegistry
from livecast.redisdb import KeySpace
from livecast.streams.registry import StreamState
from tests.conftest import Client, bearer
from tests.ingest.conftest import MakeNode, SellerStream, eventually
from tests.ingest.peers import CounterTrack, in_order, new_pc, publish, view

SDP = {"Content-Type": "application/sdp"}
TTL_S = 1.0  # webrtc.origin_ttl_s in these tests


async def _origin(redis_client: aioredis.Redis, node: Client, stream_id: str) -> dict[str, str]:
    raw = await redis_client.get(node.app[KEYS].key("media", "origin", stream_id))
    return {} if raw is None else dict(json.loads(raw))


async def _whip(node: Client, stream: SellerStream) -> tuple[int, dict[str, object]]:
    """A WHIP POST whose offer is fine, not following a redirect; the status and, for an
    error or a redirect, its body and ``Location``."""
    from tests.ingest.test_whip import _offer

    resp = await node.post(
        f"/whip/{stream.id}",
        data=await _offer(),
        headers={**SDP, **bearer(stream.seller_token)},
        allow_redirects=False,
    )
    if resp.status == 201:
        await node.delete(resp.headers["Location"], headers=bearer(stream.seller_token))
        return 201, {}
    body = dict(await resp.json())
    if "Location" in resp.headers:
        body["location"] = resp.headers["Location"]
    return resp.status, body


def _redirected_to(node: Client, stream_id: str, status: int, body: dict[str, object]) -> bool:
    """Whether a WHIP answer sent the publisher to ``node``'s WHIP endpoint."""
    url = node.app[MEDIA].origins.node.url
    error = body["error"]
    assert isinstance(error, dict)
    return (
        status == 307
        and body["location"] == f"{url}/whip/{stream_id}"
        and error["code"] == "publisher_active"
        and error["origin_url"] == url
    )


async def test_publisher_on_a_second_node_is_redirected_and_changes_nothing(
    make_node: MakeNode, stream: SellerStream, redis_client: aioredis.Redis
) -> None:
    node_a, node_b = await make_node(), await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token)
    viewer = await view(node_a, stream.id)
    try:
        await viewer.frames(3)
        hub_a = node_a.app[MEDIA]
        record = await _origin(redis_client, node_a, stream.id)
        assert record == {"node": hub_a.origins.node.node_id, "url": hub_a.origins.node.url}

        status, body = await _whip(node_b, stream)
        assert _redirected_to(node_a, stream.id, status, body), (status, body)
        assert stream.id not in node_b.app[MEDIA].streams
        assert not node_b.app[MEDIA].origins.claimed
        assert await _origin(redis_client, node_a, stream.id) == record
        for node in (node_a, node_b):  # where the broadcast runs, as a studio page asks
            status_resp = await node.get(f"/api/streams/{stream.id}/media")
            assert (await status_resp.json())["origin_url"] == hub_a.origins.node.url

        seen = len(viewer.counters)
        assert in_order(await viewer.frames(seen + 5))
        assert hub_a.streams[stream.id].publisher is not None
    finally:
        await viewer.close()
        await publisher.close()


async def test_claim_outlives_its_ttl_while_the_origin_lives(
    make_node: MakeNode, stream: SellerStream, redis_client: aioredis.Redis
) -> None:
    node_a, node_b = await make_node(), await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token)
    try:
        await asyncio.sleep(TTL_S * 2.5)  # refreshed by the heartbeat, never expired
        status, body = await _whip(node_b, stream)
        assert _redirected_to(node_a, stream.id, status, body), (status, body)
    finally:
        await publisher.close()


async def test_publisher_returning_to_its_node_keeps_the_stream(
    make_node: MakeNode, stream: SellerStream, redis_client: aioredis.Redis
) -> None:
    node_a, node_b = await make_node(), await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token)
    viewer = await view(node_a, stream.id)
    await viewer.frames(3)
    assert (
        await node_a.delete(publisher.location, headers=bearer(stream.seller_token))
    ).status == 200
    await publisher.close()
    try:
        media = node_a.app[MEDIA].streams[stream.id]
        assert media.state == "reconnecting"
        await asyncio.sleep(TTL_S * 1.5)
        status, body = await _whip(node_b, stream)
        # within the grace the stream waits for node A, and B says so
        assert _redirected_to(node_a, stream.id, status, body), (status, body)

        back = await publish(node_a, stream.id, stream.seller_token, start=1000)
        try:
            counters = await viewer.until(lambda: bool(viewer.counters[-1] >= 1000))
            assert counters[-1] >= 1000
            assert viewer.pc.connectionState == "connected"
        finally:
            await back.close()
    finally:
        await viewer.close()


async def test_a_dead_nodes_claim_expires_and_the_stream_goes_live_elsewhere(
    make_node: MakeNode, stream: SellerStream, redis_client: aioredis.Redis
) -> None:
    node_a, node_b = await make_node(), await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token)
    try:
        # node A stops refreshing, as if it died
        heartbeat = node_a.app[MEDIA].origins._heartbeat
        assert heartbeat is not None
        await cancel_and_wait(heartbeat)
        assert (await _whip(node_b, stream))[0] == 307
        await asyncio.sleep(TTL_S + 0.3)
        on_b = await publish(node_b, stream.id, stream.seller_token)
        try:
            hub_b = node_b.app[MEDIA]
            assert await _origin(redis_client, node_b, stream.id) == {
                "node": hub_b.origins.node.node_id,
                "url": hub_b.origins.node.url,
            }
        finally:
            await on_b.close()
    finally:
        await publisher.close()


async def test_a_node_that_lost_its_claim_stops_publishing(
    make_node: MakeNode, stream: SellerStream, redis_client: aioredis.Redis
) -> None:
    node_a = await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token)
    try:
        hub_a = node_a.app[MEDIA]
        key = node_a.app[KEYS].key("media", "origin", stream.id)
        # another node took the stream while A could not reach Redis
        await redis_client.set(key, json.dumps({"node": "elsewhere", "url": "http://x:1"}))

        def publishing() -> bool:
            media = hub_a.streams.get(stream.id)
            return media is not None and media.publisher is not None

        await eventually(lambda: not publishing(), TTL_S * 3)
        assert stream.id not in hub_a.origins.claimed
        assert json.loads(await redis_client.get(key) or b"")["node"] == "elsewhere"
    finally:
        await publisher.close()


async def test_refused_offer_and_ended_stream_leave_no_claim(
    make_node: MakeNode, stream: SellerStream, redis_client: aioredis.Redis
) -> None:
    from tests.ingest.test_whip import _offer

    node_a, node_b = await make_node(), await make_node()

    vp9_only = (
        (await _offer(("video",)))
        .replace("VP8/90000", "VP9/90000")
        .replace("H264/90000", "H265/90000")
    )
    no_dtls_setup = (await _offer()).replace("a=setup:actpass\r\n", "")
    for offer, status in ((vp9_only, 422), (no_dtls_setup, 400)):
        resp = await node_a.post(
            f"/whip/{stream.id}", data=offer, headers={**SDP, **bearer(stream.seller_token)}
        )
        assert resp.status == status

    async def released(node: Client) -> bool:
        return await _origin(redis_client, node, stream.id) == {}

    await eventually(lambda: released(node_a))  # by a task of the hub
    assert not node_a.app[MEDIA].origins.claimed

    publisher = await publish(node_b, stream.id, stream.seller_token)
    try:
        assert await _origin(redis_client, node_b, stream.id) != {}
        await node_b.app[STREAMS_KEY].transition(stream.id, StreamState.ENDED)
        await eventually(lambda: released(node_b))
        assert not node_b.app[MEDIA].origins.claimed
    finally:
        await publisher.close()


def test_advertise_url_defaults_to_host_and_port_and_is_checked() -> None:
    assert ServerSettings(host="10.0.0.7", port=9000).node_url == "http://10.0.0.7:9000"
    assert ServerSettings(advertise_url="https://a.example/").node_url == "https://a.example"
    assert ServerSettings(host="0.0.0.0").node_url != "http://0.0.0.0:8080"
    with pytest.raises(ConfigError, match=r"server\.advertise_url"):
        load_settings(env={}, overrides={"server.advertise_url": "10.0.0.7:8080"})
    with pytest.raises(ConfigError, match=r"webrtc\.origin_ttl_s"):
        load_settings(env={}, overrides={"webrtc.origin_ttl_s": 0.0})


async def test_a_publisher_returning_through_another_node_is_sent_to_its_origin(
    make_node: MakeNode, stream: SellerStream
) -> None:
    node_a, node_b = await make_node(), await make_node()
    publisher = await publish(node_a, stream.id, stream.seller_token)
    viewer = await view(node_b, stream.id)
    try:
        await viewer.frames(3)
        assert (
            await node_a.delete(publisher.location, headers=bearer(stream.seller_token))
        ).status == 200
        await publisher.close()

        status, body = await _whip(node_b, stream)
        assert _redirected_to(node_a, stream.id, status, body), (status, body)
        location = body["location"]
        assert isinstance(location, str)
        back = await publish(node_b, stream.id, stream.seller_token, start=1000, endpoint=location)
        try:
            counters = await viewer.until(lambda: viewer.counters[-1] >= 1000, within=10)
            assert in_order(counters[counters.index(next(c for c in counters if c >= 1000)) :])
            assert node_a.app[MEDIA].streams[stream.id].publisher is not None
            assert stream.id not in node_b.app[MEDIA].origins.claimed
        finally:
            await back.close()
    finally:
        await viewer.close()


async def test_a_refused_publisher_never_releases_a_concurrent_ones_claim(
    make_node: MakeNode, stream: SellerStream, redis_client: aioredis.Redis
) -> None:
    from tests.ingest.test_whip import _offer

    node_a, node_b = await make_node(), await make_node()
    hub_a = node_a.app[MEDIA]
    headers = {**SDP, **bearer(stream.seller_token)}
    vp9_only = (
        (await _offer(("video",)))
        .replace("VP8/90000", "VP9/90000")
        .replace("H264/90000", "H265/90000")
    )
    for attempt in range(2):
        resp = await node_a.post(
            "/api/streams", json={"title": f"Drop {attempt}"}, headers=bearer(stream.seller_token)
        )
        target = SellerStream((await resp.json())["id"], stream.seller_token)
        pc = new_pc()
        pc.addTransceiver(CounterTrack(), direction="sendonly")
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        try:
            # Redis holds both claims back, then answers them together (the refused
            # one's first): both succeed, and the refusal's release comes after the
            # good publisher's claim
            await redis_client.client_pause(300, all=False)  # writes only
            good, refused = await asyncio.gather(
                node_a.post(f"/whip/{target.id}", data=pc.localDescription.sdp, headers=headers),
                node_a.post(f"/whip/{target.id}", data=vp9_only, headers=headers),
            )
            assert (good.status, refused.status) == (201, 422)
            await pc.setRemoteDescription(RTCSessionDescription(await good.text(), "answer"))
            for _ in range(2):  # at once, and after a heartbeat or more
                assert (await _origin(redis_client, node_a, target.id)).get("node") == (
                    hub_a.origins.node.node_id
                )
                status, body = await _whip(node_b, target)
                assert _redirected_to(node_a, target.id, status, body), (status, body)
                assert target.id in hub_a.origins.claimed
                await asyncio.sleep(TTL_S / 2)
        finally:
            await pc.close()


@pytest.mark.parametrize("settings", [{"webrtc__record": True}], indirect=True)
async def test_a_node_that_lost_a_waiting_streams_claim_lets_it_go(
    make_node: MakeNode, stream: SellerStream, redis_client: aioredis.Redis
) -> None:
    node_a = await make_node()
    hub_a = node_a.app[MEDIA]
    publisher = await publish(node_a, stream.id, stream.seller_token, codec="video/VP8")
    try:
        source = hub_a.streams[stream.id].sources["video"]
        await eventually(lambda: source.frames_in >= 30, within=15)
        assert (
            await node_a.delete(publisher.location, headers=bearer(stream.seller_token))
        ).status == 200
    finally:
        await publisher.close()
    assert hub_a.streams[stream.id].state == "reconnecting"
    key = node_a.app[KEYS].key("media", "origin", stream.id)
    # another node took the stream while A could not reach Redis
    await redis_client.set(key, json.dumps({"node": "elsewhere", "url": "http://x:1"}))

    await eventually(lambda: stream.id not in hub_a.streams, TTL_S * 3)
    assert stream.id not in hub_a.origins.claimed

    async def recording_finished() -> bool:
        resp = await node_a.get(f"/api/streams/{stream.id}/recordings")
        listed = (await resp.json())["recordings"]
        return bool(listed) and not any(r["recording"] for r in listed)

    await eventually(recording_finished, within=10)


async def test_the_heartbeat_outlives_a_failing_refresh(
    redis_client: aioredis.Redis, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = KeySpace(key_prefix)
    registry = OriginRegistry(redis_client, keys, Origin("node-1", "http://n1:1"), TTL_S)
    for stream_id in ("taken", "kept"):
        async with registry.exclusive(stream_id):
            assert await registry.claim(stream_id) is None

    def on_lost(stream_id: str) -> None:
        raise RuntimeError(f"could not give {stream_id} up")

    registry.start(on_lost)
    try:
        elsewhere = Origin("node-2", "http://n2:1")
        with caplog.at_level(logging.ERROR, logger="livecast.ingest.origin"):
            await redis_client.set(keys.key("media", "origin", "taken"), elsewhere.record())
            await asyncio.sleep(TTL_S * 2.5)
        assert "could not give taken up" in caplog.text
        assert await registry.lookup("kept") == registry.node  # still refreshed
        assert await registry.lookup("taken") == elsewhere
    finally:
        await registry.close()
