"""WHIP over real HTTP: the resource shape of RFC 9725, and every refusal leaving the
running stream untouched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from livecast.auth import Role
from livecast.config import WebRtcSettings
from livecast.ingest._signaling import ice_server_links
from livecast.ingest.keys import MEDIA
from tests.conftest import Client, MakeToken, bearer
from tests.ingest.conftest import SellerStream
from tests.ingest.peers import Publisher, Viewer, in_order, new_pc, publish, view

SDP = {"Content-Type": "application/sdp"}


async def _offer(kinds: tuple[str, ...] = ("video", "audio")) -> str:
    pc = new_pc()
    for kind in kinds:
        pc.addTransceiver(kind, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


@pytest.fixture
async def running(client: Client, stream: SellerStream) -> AsyncIterator[tuple[Publisher, Viewer]]:
    publisher = await publish(client, stream.id, stream.seller_token)
    viewer = await view(client, stream.id)
    await viewer.frames(3)
    yield publisher, viewer
    await viewer.close()
    await publisher.close()


async def _still_running(client: Client, stream_id: str, running: tuple[Publisher, Viewer]) -> None:
    publisher, viewer = running
    hub = client.app[MEDIA]
    media = hub.streams[stream_id]
    assert media.publisher is not None
    assert media.publisher.id == publisher.location.rsplit("/", 1)[1]
    seen = len(viewer.counters)
    counters = await viewer.frames(seen + 5)
    assert in_order(counters)
    assert viewer.pc.connectionState == "connected"


async def test_publish_answers_201_with_session_url_etag_and_ice_servers(
    aiohttp_client: object, stream: SellerStream, client: Client
) -> None:
    offer = await _offer()
    resp = await client.post(
        f"/whip/{stream.id}", data=offer, headers={**SDP, **bearer(stream.seller_token)}
    )
    assert resp.status == 201
    assert resp.content_type == "application/sdp"
    answer = await resp.text()
    assert answer.startswith("v=0")
    assert "a=candidate:" in answer  # gathering was complete
    location = resp.headers["Location"]
    assert location.startswith(f"/whip/{stream.id}/")
    assert len(location.rsplit("/", 1)[1]) >= 32  # unguessable
    assert resp.headers["ETag"].startswith('"')
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Location" in resp.headers["Access-Control-Expose-Headers"]
    state = await (await client.get(f"/api/streams/{stream.id}")).json()
    assert state["state"] == "live"
    assert (await client.delete(location, headers=bearer(stream.seller_token))).status == 200


async def test_options_advertises_sdp_and_cors(client: Client, stream: SellerStream) -> None:
    resp = await client.options(
        f"/whip/{stream.id}",
        headers={"Origin": "https://studio.example", "Access-Control-Request-Method": "POST"},
    )
    assert resp.status == 204
    assert resp.headers["Accept-Post"] == "application/sdp"
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        (None, 401, "unauthorized"),
        ("garbage", 401, "token_invalid"),
        (Role.VIEWER, 403, "forbidden"),
        ("other-seller", 403, "forbidden"),
        ("host-other-stream", 403, "forbidden"),
    ],
)
async def test_publish_needs_a_token_that_manages_the_stream(
    client: Client,
    stream: SellerStream,
    make_token: MakeToken,
    running: tuple[Publisher, Viewer],
    who: object,
    status: int,
    code: str,
) -> None:
    headers = dict(SDP)
    if who == "garbage":
        headers["Authorization"] = "Bearer not-a-token"
    elif who == "other-seller":
        headers.update(bearer(make_token(Role.SELLER, sub="seller-2")))
    elif who == "host-other-stream":
        headers.update(bearer(make_token(Role.HOST, streams={"someother"})))
    elif isinstance(who, Role):
        headers.update(bearer(make_token(who)))
    resp = await client.post(f"/whip/{stream.id}", data=await _offer(), headers=headers)
    assert resp.status == status
    assert (await resp.json())["error"]["code"] == code
    await _still_running(client, stream.id, running)


@pytest.mark.parametrize("who", ["granted-host", "admin"])
async def test_a_host_granted_the_stream_or_an_admin_may_publish(
    client: Client, stream: SellerStream, make_token: MakeToken, who: str
) -> None:
    if who == "granted-host":
        token = make_token(Role.HOST, sub="producer-1", streams={stream.id})
    else:
        token = make_token(Role.ADMIN, sub="ops-1")
    resp = await client.post(
        f"/whip/{stream.id}", data=await _offer(), headers={**SDP, **bearer(token)}
    )
    assert resp.status == 201, await resp.text()
    assert (await client.delete(resp.headers["Location"], headers=bearer(token))).status == 200


async def _refused(
    client: Client, stream: SellerStream, body: str, headers: dict[str, str]
) -> tuple[int, str]:
    resp = await client.post(
        f"/whip/{stream.id}", data=body, headers={**headers, **bearer(stream.seller_token)}
    )
    return resp.status, (await resp.json())["error"]["code"]


async def test_bad_offers_are_refused_and_the_stream_keeps_running(
    client: Client, stream: SellerStream, running: tuple[Publisher, Viewer]
) -> None:
    offer = await _offer()
    assert await _refused(client, stream, offer, {"Content-Type": "text/plain"}) == (
        415,
        "unsupported_media_type",
    )
    assert await _refused(client, stream, "hello", SDP) == (400, "malformed_sdp")
    broken = offer.replace("a=ice-ufrag:", "a=x-nothing:")
    assert await _refused(client, stream, broken, SDP) == (400, "malformed_sdp")
    no_rtcp_mux = offer.replace("a=rtcp-mux\r\n", "")
    assert await _refused(client, stream, no_rtcp_mux, SDP) == (400, "malformed_sdp")
    no_dtls_setup = offer.replace("a=setup:actpass\r\n", "")
    assert await _refused(client, stream, no_dtls_setup, SDP) == (400, "malformed_sdp")
    no_media = offer.split("m=")[0]
    assert await _refused(client, stream, no_media, SDP) == (422, "no_media")
    datachannel_only = new_pc()
    datachannel_only.createDataChannel("chat")
    await datachannel_only.setLocalDescription(await datachannel_only.createOffer())
    sdp = str(datachannel_only.localDescription.sdp)
    await datachannel_only.close()
    assert await _refused(client, stream, sdp, SDP) == (422, "no_media")
    vp9_only = (
        (await _offer(("video",)))
        .replace("VP8/90000", "VP9/90000")
        .replace("H264/90000", "H265/90000")
    )
    assert await _refused(client, stream, vp9_only, SDP) == (422, "codec_unsupported")
    # a second publisher while the first one is sending
    assert await _refused(client, stream, offer, SDP) == (409, "publisher_active")
    await _still_running(client, stream.id, running)


async def test_unknown_stream_is_404(client: Client, make_token: MakeToken) -> None:
    token = make_token(Role.ADMIN)
    resp = await client.post(
        "/whip/nosuchstream", data=await _offer(), headers={**SDP, **bearer(token)}
    )
    assert resp.status == 404


async def test_patch_trickles_candidates_and_refuses_ice_restart(
    client: Client, stream: SellerStream
) -> None:
    offer = await _offer()
    resp = await client.post(
        f"/whip/{stream.id}", data=offer, headers={**SDP, **bearer(stream.seller_token)}
    )
    assert resp.status == 201
    location, etag = resp.headers["Location"], resp.headers["ETag"]
    ufrag = next(line for line in offer.splitlines() if line.startswith("a=ice-ufrag:"))
    pwd = next(line for line in offer.splitlines() if line.startswith("a=ice-pwd:"))
    mid = next(line for line in offer.splitlines() if line.startswith("a=mid:"))
    fragment = (
        f"{ufrag}\r\n{pwd}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\n{mid}\r\n"
        "a=candidate:1 1 udp 2130706431 192.0.2.77 50000 typ host\r\na=end-of-candidates\r\n"
    )
    trickle = {"Content-Type": "application/trickle-ice-sdpfrag", **bearer(stream.seller_token)}
    resp = await client.patch(location, data=fragment, headers={**trickle, "If-Match": etag})
    assert resp.status == 204
    # the candidate reached the session's ICE agent
    session = client.app[MEDIA].sessions[location.rsplit("/", 1)[1]]
    assert "192.0.2.77 50000 typ host" in session.pc.remoteDescription.sdp
    cut_short = fragment.replace("192.0.2.77 50000 typ host", "192.0.2.78")
    resp = await client.patch(location, data=cut_short, headers={**trickle, "If-Match": etag})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "malformed_sdp"
    resp = await client.patch(location, data=fragment, headers={**trickle, "If-Match": '"old"'})
    assert resp.status == 412
    restart = fragment.replace(ufrag, "a=ice-ufrag:newfrag")
    resp = await client.patch(location, data=restart, headers={**trickle, "If-Match": "*"})
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "ice_restart_unsupported"
    resp = await client.patch(
        location, data=fragment, headers={**SDP, **bearer(stream.seller_token)}
    )
    assert resp.status == 415
    resp = await client.patch(location + "x", data=fragment, headers=trickle)
    assert resp.status == 404
    assert (await client.delete(location, headers=bearer(stream.seller_token))).status == 200


async def test_quiet_publisher_is_replaced(client: Client, stream: SellerStream) -> None:
    """A publisher whose media stopped (its network died) does not lock the stream."""
    first = await publish(client, stream.id, stream.seller_token)
    viewer = await view(client, stream.id)
    try:
        await viewer.frames(3)
        media = client.app[MEDIA].streams[stream.id]
        # the first publisher's media stops without its connection closing
        for sender in first.pc.getSenders():
            sender._enabled = False
        for _ in range(200):
            if client.app[MEDIA]._is_stale(media, media.publisher):  # type: ignore[arg-type]
                break
            await asyncio.sleep(0.05)
        second = await publish(client, stream.id, stream.seller_token, start=500)
        try:
            counters = await viewer.until(lambda: viewer.counters[-1] >= 505)
            assert in_order(counters)
        finally:
            await second.close()
    finally:
        await viewer.close()
        await first.close()


def test_ice_servers_are_offered_as_link_headers() -> None:
    settings = WebRtcSettings(
        ice_servers=("stun:stun.example.net:3478", "turn:turn.example.net:3478?transport=udp"),
        ice_username="live",
        ice_credential="s3cret",
    )
    assert ice_server_links(settings) == [
        '<stun:stun.example.net:3478>; rel="ice-server"',
        '<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; username="live"; '
        'credential="s3cret"; credential-type="password"',
    ]
