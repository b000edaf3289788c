"""Sessions over time: late joiners, early viewers, publisher drop and return, ending."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import av
import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from livecast.appkeys import EVENTS
from livecast.auth import Role
from livecast.ingest import _hub
from livecast.ingest.keys import MEDIA
from tests.conftest import Client, MakeToken, bearer, published_event
from tests.ingest.conftest import SellerStream, eventually
from tests.ingest.peers import CounterTrack, Viewer, in_order, new_pc, publish, view
from tests.ingest.test_sessions import _counted, _ended


class StallingTrack(CounterTrack):
    """Video that stops producing frames once :meth:`stall` is called: an encoder that
    froze, while the peer connection stays up (it still answers ICE consent and sends
    RTCP)."""

    def __init__(self) -> None:
        super().__init__()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def stall(self) -> None:
        self._flowing.clear()

    async def recv(self) -> av.VideoFrame:
        await self._flowing.wait()
        return await super().recv()


def _reached(viewer: Viewer, counter: int) -> Callable[[], bool]:
    return lambda: viewer.counters[-1] >= counter


async def _media_states(events: PubSub, count: int) -> list[str]:
    """The ``state`` of up to ``count`` ``media.state`` events, as viewers receive them."""
    states: list[str] = []
    for _ in range(50):
        if len(states) == count:
            break
        message = await events.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is None:
            continue
        event = published_event(message["data"])
        if event["type"] == "media.state":  # stream.state and others share the channel
            states.append(event["data"]["state"])
    return states


@pytest.mark.parametrize("settings", [{"webrtc__gop_cache_s": 0.0}], indirect=True)
async def test_late_joiner_gets_a_keyframe_on_request(client: Client, stream: SellerStream) -> None:
    """With no GOP cache, a joiner asks the publisher for a keyframe."""
    publisher = await publish(client, stream.id, stream.seller_token, codec="video/VP8")
    first = await view(client, stream.id)
    try:
        await first.frames(5)
        # well past the first keyframe and the join window
        await first.until(lambda: first.counters[-1] >= 45)
        source = client.app[MEDIA].streams[stream.id].sources["video"]
        requests_before = source.keyframe_requests_sent
        late = await view(client, stream.id)
        try:
            counters = await late.frames(5)
            assert counters[0] >= 45  # it started mid-stream, from a fresh keyframe
            assert in_order(counters)
            assert source.keyframe_requests_sent > requests_before
        finally:
            await late.close()
    finally:
        await first.close()
        await publisher.close()


async def test_viewer_waiting_before_go_live_gets_video_when_it_flows(
    client: Client, stream: SellerStream
) -> None:
    viewer = await view(client, stream.id)
    try:
        state = await (await client.get(f"/api/streams/{stream.id}")).json()
        assert state["state"] == "scheduled"
        publisher = await publish(client, stream.id, stream.seller_token)
        try:
            counters = await viewer.frames(10)
            assert in_order(counters)
            state = await (await client.get(f"/api/streams/{stream.id}")).json()
            assert state["state"] == "live"
        finally:
            await publisher.close()
    finally:
        await viewer.close()


async def test_publisher_drop_and_return_keeps_viewers_connected(
    client: Client, stream: SellerStream, redis_url: str
) -> None:
    events = aioredis.Redis.from_url(redis_url).pubsub()
    await events.subscribe(client.app[EVENTS].channel(stream.id))
    first = await publish(client, stream.id, stream.seller_token)
    viewers = [await view(client, stream.id) for _ in range(2)]
    try:
        for viewer in viewers:
            await viewer.frames(10)
        await first.close()  # the host's connection drops
        media = client.app[MEDIA].streams[stream.id]
        for _ in range(100):
            if media.publisher is None:
                break
            await asyncio.sleep(0.05)
        assert media.publisher is None
        status = await (await client.get(f"/api/streams/{stream.id}/media")).json()
        assert status["state"] == "reconnecting"
        assert status["viewers"] == 2
        # someone arrives while the host is away: connected now, video when it flows
        viewers.append(await view(client, stream.id))

        second = await publish(client, stream.id, stream.seller_token, start=1000)
        try:
            for viewer in viewers:
                counters = await viewer.until(_reached(viewer, 1010))
                assert viewer.pc.connectionState == "connected"
                assert in_order(counters)
                # RTP timestamps stayed monotonic across publishers: the viewer's
                # decoder saw presentation times only move forward
                assert all(b > a for a, b in itertools.pairwise(viewer.pts))
            status = await (await client.get(f"/api/streams/{stream.id}/media")).json()
            assert status["state"] == "live"
        finally:
            await second.close()
        # viewers were told: live, then reconnecting, then live again
        assert await _media_states(events, 3) == ["live", "reconnecting", "live"]
    finally:
        for viewer in viewers:
            await viewer.close()
        await events.aclose()


async def test_delete_ends_publisher_and_viewer_sessions(
    client: Client, stream: SellerStream
) -> None:
    publisher = await publish(client, stream.id, stream.seller_token)
    viewer = await view(client, stream.id)
    try:
        await viewer.frames(3)
        hub = client.app[MEDIA]
        resp = await client.delete(viewer.location)
        assert resp.status == 200
        assert hub.viewer_count(stream.id) == 0
        assert (await client.delete(viewer.location)).status == 404

        resp = await client.delete(publisher.location, headers=bearer(stream.seller_token))
        assert resp.status == 200
        assert hub.streams[stream.id].publisher is None
        assert not hub.sessions
        # the seller can publish again straight away
        again = await publish(client, stream.id, stream.seller_token)
        await again.close()
    finally:
        await viewer.close()
        await publisher.close()


async def test_ending_the_stream_closes_its_sessions(
    client: Client, stream: SellerStream, make_token: MakeToken
) -> None:
    publisher = await publish(client, stream.id, stream.seller_token)
    viewer = await view(client, stream.id)
    try:
        await viewer.frames(3)
        resp = await client.post(
            f"/api/streams/{stream.id}/end", headers=bearer(stream.seller_token)
        )
        assert resp.status == 200
        hub = client.app[MEDIA]
        assert not hub.sessions
        assert stream.id not in hub.streams
        for _ in range(100):
            if viewer.pc.connectionState in ("closed", "failed"):
                break
            await asyncio.sleep(0.05)
        assert viewer.pc.connectionState in ("closed", "failed")
        resp = await client.post(
            f"/whep/{stream.id}", data="v=0\r\n", headers={"Content-Type": "application/sdp"}
        )
        assert resp.status == 409
        assert (await resp.json())["error"]["code"] == "stream_ended"
        token = make_token(Role.ADMIN)
        resp = await client.post(
            f"/whip/{stream.id}",
            data="v=0\r\n",
            headers={**bearer(token), "Content-Type": "application/sdp"},
        )
        assert resp.status == 409
    finally:
        await viewer.close()
        await publisher.close()


@pytest.mark.parametrize("settings", [{"webrtc__reconnect_grace_s": 1.0}], indirect=True)
async def test_a_publisher_away_past_the_grace_ends_the_stream(
    client: Client, stream: SellerStream, redis_url: str
) -> None:
    events = aioredis.Redis.from_url(redis_url).pubsub()
    await events.subscribe(client.app[EVENTS].channel(stream.id))
    publisher = await publish(client, stream.id, stream.seller_token)
    viewer = await view(client, stream.id)
    try:
        await viewer.frames(3)
        await publisher.close()  # and it never comes back
        state = ""
        for _ in range(100):
            state = (await (await client.get(f"/api/streams/{stream.id}")).json())["state"]
            if state == "ended":
                break
            await asyncio.sleep(0.05)
        assert state == "ended"
        for _ in range(100):
            if viewer.pc.connectionState in ("closed", "failed"):
                break
            await asyncio.sleep(0.05)
        assert viewer.pc.connectionState in ("closed", "failed")
        assert not client.app[MEDIA].sessions
        status = await (await client.get(f"/api/streams/{stream.id}/media")).json()
        assert (status["state"], status["viewers"]) == ("ended", 0)
        assert await _media_states(events, 3) == ["live", "reconnecting", "ended"]
    finally:
        await viewer.close()
        await publisher.close()
        await events.aclose()


@pytest.mark.parametrize("settings", [{"webrtc__connect_timeout_s": 3.0}], indirect=True)
async def test_dead_viewer_sessions_are_cleaned_up_and_no_longer_counted(
    client: Client, stream: SellerStream
) -> None:
    publisher = await publish(client, stream.id, stream.seller_token)
    stays = await view(client, stream.id)
    leaves = await view(client, stream.id)
    try:
        await stays.frames(3)
        await leaves.frames(3)
        hub = client.app[MEDIA]
        assert hub.viewer_count(stream.id) == 2
        # a player closes without DELETE
        await leaves.close()
        # a player that posts its offer and is gone before ICE ever connects
        pc = new_pc()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        resp = await client.post(
            f"/whep/{stream.id}",
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        )
        await pc.close()
        assert resp.status == 201
        never_connected = resp.headers["Location"].rsplit("/", 1)[1]
        assert hub.viewer_count(stream.id) == 2

        async def only_one_left() -> bool:
            status = await (await client.get(f"/api/streams/{stream.id}/media")).json()
            return bool(status["viewers"] == 1 and never_connected not in hub.sessions)

        await eventually(only_one_left, within=15)
        assert (await client.delete(leaves.location)).status == 404
        # the viewer that stayed is untouched
        counters = await stays.frames(len(stays.counters) + 5)
        assert in_order(counters)
        assert stays.pc.connectionState == "connected"
    finally:
        await stays.close()
        await leaves.close()
        await publisher.close()


async def test_shutdown_abandons_a_peer_connection_that_never_closes(
    client: Client,
    stream: SellerStream,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = await publish(client, stream.id, stream.seller_token)
    viewer = await view(client, stream.id)
    try:
        await viewer.frames(3)
        hub = client.app[MEDIA]
        stuck = hub.streams[stream.id].publisher
        assert stuck is not None
        never = asyncio.Event()

        async def close_forever() -> None:  # a transport that never finishes closing
            await never.wait()

        real_close = stuck.pc.close
        monkeypatch.setattr(stuck.pc, "close", close_forever)
        monkeypatch.setattr(_hub, "SHUTDOWN_CLOSE_S", 0.5)
        async with asyncio.timeout(10):  # not forever
            await hub.close()
        assert not hub.sessions
        assert not hub.streams
        assert f"publisher session {stuck.id} of stream {stream.id} still closing" in caplog.text
        await eventually(lambda: viewer.pc.connectionState in ("closed", "failed"), within=15)
        await real_close()  # what the process exit would have done
    finally:
        await viewer.close()
        await publisher.close()


@pytest.mark.parametrize("settings", [{"webrtc__reconnect_grace_s": 2.0}], indirect=True)
async def test_a_publisher_that_stops_sending_media_is_closed_and_the_grace_runs(
    client: Client, stream: SellerStream, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="livecast.ingest.sessions")
    events = aioredis.Redis.from_url(redis_url).pubsub()
    await events.subscribe(client.app[EVENTS].channel(stream.id))
    video = StallingTrack()
    publisher = await publish(client, stream.id, stream.seller_token, video=video, audio=False)
    viewer = await view(client, stream.id)
    try:
        await viewer.frames(5)
        hub = client.app[MEDIA]
        session = hub.streams[stream.id].publisher
        assert session is not None
        video.stall()
        # publisher_stale_s (1 s) later the server closes it; its connection was up
        await eventually(lambda: session.closed, within=10)
        await eventually(lambda: _ended(caplog, "whip", publisher.location, "publisher_stale"))
        ended = "livecast_webrtc_sessions_ended_total"
        assert await _counted(client, ended, kind="whip", reason="publisher_stale") == 1
        await eventually(lambda: publisher.pc.connectionState == "closed", within=10)
        assert viewer.pc.connectionState == "connected"  # viewers wait through the grace

        # nobody comes back within the grace (2 s): the stream ends
        async def ended_stream() -> bool:
            body = await (await client.get(f"/api/streams/{stream.id}")).json()
            return bool(body["state"] == "ended")

        await eventually(ended_stream, within=10)
        await eventually(lambda: viewer.pc.connectionState == "closed", within=10)
        assert await _media_states(events, 3) == ["live", "reconnecting", "ended"]
    finally:
        await viewer.close()
        await publisher.close()
        await events.aclose()


async def test_media_listeners_hear_a_publisher_arrive_and_the_stream_leave(
    client: Client, stream: SellerStream
) -> None:
    hub = client.app[MEDIA]
    heard: list[tuple[str, str | None, bool]] = []  # stream, its video codec, publishing

    def listener(stream_id: str) -> None:
        media = hub.streams.get(stream_id)
        codec = media.sources["video"].codec if media is not None else None
        heard.append((stream_id, codec, media is not None and media.publisher is not None))

    stop = hub.on_media_change(listener)
    publisher = await publish(client, stream.id, stream.seller_token)
    try:
        # told before the publisher's answer went back: its sources know their codec
        assert heard == [(stream.id, "h264", True)]
        resp = await client.post(
            f"/api/streams/{stream.id}/end", headers=bearer(stream.seller_token)
        )
        assert resp.status == 200
        assert len(heard) > 1
        assert set(heard[1:]) == {(stream.id, None, False)}
    finally:
        stop()
        await publisher.close()
    told = len(heard)
    resp = await client.post(
        "/api/streams", json={"title": "Encore"}, headers=bearer(stream.seller_token)
    )
    again = await publish(client, (await resp.json())["id"], stream.seller_token)
    await again.close()
    assert len(heard) == told  # no longer listening
