"""WHEP over real HTTP: who may watch, codec agreement, limits, and the media status."""

from __future__ import annotations

import pytest

from livecast.auth import Role
from livecast.ingest.keys import MEDIA
from tests.conftest import Client, MakeToken, bearer
from tests.ingest.conftest import SellerStream
from tests.ingest.peers import new_pc, publish, view

SDP = {"Content-Type": "application/sdp"}


async def _viewer_offer(video_codec: str | None = None, direction: str = "recvonly") -> str:
    from aiortc import RTCRtpSender

    pc = new_pc()
    pc.addTransceiver("video", direction=direction)
    pc.addTransceiver("audio", direction=direction)
    if video_codec:
        caps = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() == video_codec
        ]
        pc.getTransceivers()[0].setCodecPreferences(caps)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


async def test_viewer_gets_the_publishers_codec_or_a_clear_422(
    client: Client, stream: SellerStream
) -> None:
    publisher = await publish(client, stream.id, stream.seller_token, codec="video/VP8")
    try:
        resp = await client.post(
            f"/whep/{stream.id}", data=await _viewer_offer("video/h264"), headers=SDP
        )
        assert resp.status == 422
        error = (await resp.json())["error"]
        assert error["code"] == "codec_unsupported"
        assert error["stream_codec"] == "vp8"
        viewer = await view(client, stream.id)
        try:
            assert viewer.video_codec == "vp8"
            await viewer.frames(3)
        finally:
            await viewer.close()
    finally:
        await publisher.close()


async def test_viewer_offer_must_receive(client: Client, stream: SellerStream) -> None:
    resp = await client.post(
        f"/whep/{stream.id}", data=await _viewer_offer(direction="sendonly"), headers=SDP
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "wrong_direction"
    assert stream.id not in client.app[MEDIA].streams


async def test_private_stream_needs_a_grant(client: Client, make_token: MakeToken) -> None:
    seller = make_token(Role.SELLER, sub="seller-9")
    resp = await client.post(
        "/api/streams", json={"title": "Members only", "public": False}, headers=bearer(seller)
    )
    stream_id = (await resp.json())["id"]
    offer = await _viewer_offer()
    resp = await client.post(f"/whep/{stream_id}", data=offer, headers=SDP)
    assert resp.status == 401
    stranger = make_token(Role.VIEWER)
    resp = await client.post(f"/whep/{stream_id}", data=offer, headers={**SDP, **bearer(stranger)})
    assert resp.status == 403
    member = make_token(Role.VIEWER, streams={stream_id})
    resp = await client.post(f"/whep/{stream_id}", data=offer, headers={**SDP, **bearer(member)})
    assert resp.status == 201
    assert (await client.delete(resp.headers["Location"], headers=bearer(member))).status == 200


async def test_viewer_limit_and_media_status(client: Client, stream: SellerStream) -> None:
    publisher = await publish(client, stream.id, stream.seller_token)
    viewers = [await view(client, stream.id) for _ in range(4)]  # the limit in these tests
    try:
        resp = await client.post(f"/whep/{stream.id}", data=await _viewer_offer(), headers=SDP)
        assert resp.status == 429
        assert (await resp.json())["error"]["code"] == "stream_full"
        for viewer in viewers:
            await viewer.frames(3)
        status = await (await client.get(f"/api/streams/{stream.id}/media")).json()
        assert status["video_frames_in"] > 0
        assert status["viewers_waiting_keyframe"] == 0
        assert {
            k: status[k] for k in ("state", "publishing", "viewers", "video_codec", "audio")
        } == {
            "state": "live",
            "publishing": True,
            "viewers": 4,
            "video_codec": "h264",
            "audio": True,
        }
        metrics = await (await client.get("/metrics")).text()
        assert "livecast_webrtc_viewers 4.0" in metrics.splitlines()
        assert "livecast_webrtc_publishers 1.0" in metrics.splitlines()
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()


@pytest.mark.parametrize("path", ["/whep/{id}", "/whep/{id}/nosuchsession"])
async def test_options(client: Client, stream: SellerStream, path: str) -> None:
    resp = await client.options(path.format(id=stream.id))
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("settings", [{"webrtc__max_viewers": 2}], indirect=True)
async def test_node_viewer_limit_counts_every_stream(
    client: Client, stream: SellerStream, make_token: MakeToken
) -> None:
    """``webrtc.max_viewers`` caps the node's WHEP sessions over all its streams: two on one
    stream fill it, and a viewer of another stream gets the same 429 ``stream_full``."""
    resp = await client.post(
        "/api/streams", json={"title": "Second show"}, headers=bearer(stream.seller_token)
    )
    other_id = (await resp.json())["id"]
    first = await publish(client, stream.id, stream.seller_token)
    second = await publish(client, other_id, stream.seller_token)
    viewers = [await view(client, stream.id) for _ in range(2)]
    try:
        resp = await client.post(f"/whep/{other_id}", data=await _viewer_offer(), headers=SDP)
        assert resp.status == 429
        assert (await resp.json())["error"]["code"] == "stream_full"
    finally:
        for viewer in viewers:
            await viewer.close()
        await first.close()
        await second.close()
