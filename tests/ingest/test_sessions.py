"""Session URLs obey their tokens, and every session's start and end is logged and
counted with its reason; real peers over real HTTP."""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator

import aioice.ice
import aioice.stun
import pytest
from aiohttp import ClientResponse
from aiortc import RTCPeerConnection, RTCSessionDescription

from livecast.appkeys import TOKENS
from livecast.auth import Role
from livecast.ingest.keys import EDGE, MEDIA
from livecast.ingest.sessions import short_id
from tests.conftest import Client, MakeToken, bearer
from tests.ingest.conftest import MakeNode, SellerStream, eventually
from tests.ingest.peers import Publisher, Viewer, _offer, new_pc, publish, view

# Signed with some other secret.
FORGED = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJzZWxsZXItMSIsInJvbGUiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OX0."
    "c2lnbmVkIGJ5IHNvbWVib2R5IGVsc2U"
)
TRICKLE = {"Content-Type": "application/trickle-ice-sdpfrag"}
FRAGMENT = "a=end-of-candidates\r\n"


async def _refused(resp: ClientResponse, status: int, code: str | None = None) -> None:
    """``resp`` is the JSON error ``status`` (with ``code``); a 401 carries its challenge."""
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body["error"]) >= {"code", "message"}
    if code is not None:
        assert body["error"]["code"] == code
    if status == 401:
        challenge = resp.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="livecast"')
        bad_token = body["error"]["code"] in ("token_invalid", "token_expired")
        assert ('error="invalid_token"' in challenge) == bad_token
    else:
        assert "WWW-Authenticate" not in resp.headers


def _expired(client: Client, sub: str, role: Role) -> str:
    return client.app[TOKENS].issue(
        sub=sub, name="Late", role=role, ttl_s=60, now=time.time() - 120
    )


@contextlib.asynccontextmanager
async def _watched(
    stream: SellerStream, client: Client, viewed_on: Client | None = None
) -> AsyncIterator[tuple[Publisher, Viewer]]:
    """A publisher on ``client`` and a viewer (on ``viewed_on``, else the same node) that
    has decoded its first frames; both closed on the way out."""
    publisher = await publish(client, stream.id, stream.seller_token)
    try:
        viewer = await view(viewed_on or client, stream.id)
        try:
            await viewer.frames(3)
            yield publisher, viewer
        finally:
            await viewer.close()
    finally:
        await publisher.close()


async def _vanish(pc: RTCPeerConnection) -> None:
    """Drop off the network without a word: no DELETE, no DTLS close, no ICE answers."""
    await pc.getTransceivers()[0].receiver.transport.transport.stop()


# -- session URLs ---------------------------------------------------------------------------


async def test_a_publishers_session_url_needs_the_rights_publishing_needs(
    client: Client, stream: SellerStream, make_token: MakeToken
) -> None:
    async with _watched(stream, client) as (publisher, viewer):
        url = publisher.location
        other_seller = make_token(Role.SELLER, sub="seller-2")
        a_viewer = make_token(Role.VIEWER)
        await _refused(await client.delete(url), 401, "unauthorized")
        await _refused(await client.patch(url, data=FRAGMENT, headers=TRICKLE), 401)
        await _refused(await client.delete(url, headers=bearer(FORGED)), 401, "token_invalid")
        expired = _expired(client, "seller-1", Role.SELLER)
        await _refused(await client.delete(url, headers=bearer(expired)), 401, "token_expired")
        await _refused(await client.delete(url, headers=bearer(other_seller)), 403)
        patch = await client.patch(url, data=FRAGMENT, headers={**TRICKLE, **bearer(other_seller)})
        await _refused(patch, 403)
        await _refused(await client.delete(url, headers=bearer(a_viewer)), 403)
        # an unknown session is 404 only to whoever may publish the stream
        await _refused(await client.delete(url + "x"), 401)
        await _refused(await client.delete(url + "x", headers=bearer(other_seller)), 403)
        unknown = await client.delete(url + "x", headers=bearer(stream.seller_token))
        await _refused(unknown, 404, "session_not_found")

        # nothing of that touched the broadcast
        hub = client.app[MEDIA]
        session = hub.streams[stream.id].publisher
        assert session is not None
        assert not session.closed
        await viewer.frames(len(viewer.counters) + 5)

        # a host granted the stream may end it, as it may publish
        producer = make_token(Role.HOST, sub="producer-1", streams={stream.id})
        resp = await client.patch(url, data=FRAGMENT, headers={**TRICKLE, **bearer(producer)})
        assert resp.status == 204, await resp.text()
        assert (await client.delete(url, headers=bearer(producer))).status == 200
        assert hub.streams[stream.id].publisher is None


async def test_a_viewers_session_url_obeys_the_token_it_was_opened_with(
    client: Client, stream: SellerStream, make_token: MakeToken
) -> None:
    publisher = await publish(client, stream.id, stream.seller_token)
    alice_token = make_token(Role.VIEWER, sub="alice")
    carol_token = make_token(Role.VIEWER, sub="carol")
    alice = await view(client, stream.id, headers=bearer(alice_token))
    carol = await view(client, stream.id, headers=bearer(carol_token))
    anonymous = await view(client, stream.id)
    hub = client.app[MEDIA]
    try:
        await alice.frames(3)
        url = alice.location
        await _refused(await client.delete(url), 401, "unauthorized")
        await _refused(await client.patch(url, data=FRAGMENT, headers=TRICKLE), 401)
        await _refused(await client.delete(url, headers=bearer(FORGED)), 401, "token_invalid")
        expired = _expired(client, "alice", Role.VIEWER)
        await _refused(await client.delete(url, headers=bearer(expired)), 401, "token_expired")
        patch = await client.patch(url, data=FRAGMENT, headers={**TRICKLE, **bearer(carol_token)})
        await _refused(patch, 403)
        await _refused(await client.delete(url, headers=bearer(carol_token)), 403)
        other_seller = make_token(Role.SELLER, sub="seller-2")
        await _refused(await client.delete(url, headers=bearer(other_seller)), 403)
        await alice.frames(len(alice.counters) + 5)  # untouched

        assert (await client.delete(url, headers=bearer(alice_token))).status == 200
        # the stream's seller may end anyone's session on it
        resp = await client.delete(carol.location, headers=bearer(stream.seller_token))
        assert resp.status == 200

        # an anonymous viewer's session URL is a capability: unguessable, and enough
        session_id = anonymous.location.rsplit("/", 1)[1]
        assert len(base64.urlsafe_b64decode(session_id + "==")) >= 24  # 192 random bits
        # ... but a bad token is never taken for none
        await _refused(await client.delete(anonymous.location, headers=bearer(FORGED)), 401)
        await anonymous.frames(len(anonymous.counters) + 3)
        assert (await client.delete(anonymous.location)).status == 200
        await _refused(await client.delete(anonymous.location), 404, "session_not_found")
        await _refused(await client.delete(url, headers=bearer(FORGED)), 401)
        assert hub.viewer_count(stream.id) == 0
    finally:
        for peer in (alice, carol, anonymous):
            await peer.close()
        await publisher.close()


async def test_every_401_carries_a_bearer_challenge(client: Client, stream: SellerStream) -> None:
    await _refused(await client.post("/api/streams", json={"title": "x"}), 401, "unauthorized")
    resp = await client.post("/api/streams", json={"title": "x"}, headers=bearer(FORGED))
    await _refused(resp, 401, "token_invalid")
    basic = {"Authorization": "Basic c2VsbGVyOnNlY3JldA=="}
    await _refused(await client.get("/api/streams", headers=basic), 401, "token_invalid")
    sdp = {"Content-Type": "application/sdp"}
    await _refused(await client.post(f"/whip/{stream.id}", data="v=0\r\n", headers=sdp), 401)


# -- what operators see ----------------------------------------------------------------------


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def _ended(caplog: pytest.LogCaptureFixture, kind: str, location: str, reason: str) -> bool:
    session = short_id(location.rsplit("/", 1)[1])
    return any(
        f"reason={reason}" in line
        for line in _lines(caplog, f"{kind} session ended: stream=")
        if f"session={session} " in line
    )


STARTED = "livecast_webrtc_sessions_started_total"
ENDED = "livecast_webrtc_sessions_ended_total"


async def _counted(client: Client, metric: str, **labels: str) -> float:
    text = await (await client.get("/metrics")).text()
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{metric}\{{{wanted}\}} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"no {metric}{{{wanted}}} in /metrics"
    return float(match.group(1))


@pytest.fixture
def session_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="livecast.ingest.sessions")
    return caplog


async def test_a_deleted_session_is_logged_and_counted_as_client_left(
    client: Client, stream: SellerStream, session_log: pytest.LogCaptureFixture
) -> None:
    async with _watched(stream, client) as (publisher, viewer):
        for kind, location in (("whip", publisher.location), ("whep", viewer.location)):
            session = location.rsplit("/", 1)[1]
            (line,) = _lines(session_log, f"session={short_id(session)} ")
            assert line.startswith(f"{kind} session started: stream={stream.id} ")
            assert "remote=127.0.0.1" in line
            assert session not in session_log.text  # the capability itself never is
        assert _lines(session_log, "whip session started")[0].endswith("subject=seller-1")

        assert (await client.delete(viewer.location)).status == 200
        delete = await client.delete(publisher.location, headers=bearer(stream.seller_token))
        assert delete.status == 200
        assert _ended(session_log, "whep", viewer.location, "client_left (DELETE)")
        assert _ended(session_log, "whip", publisher.location, "client_left (DELETE)")
        (line,) = _lines(session_log, "whep session ended")
        assert "remote=127.0.0.1" in line
        assert re.search(r"connected=\d+\.\ds$", line)
        for kind in ("whip", "whep"):
            assert await _counted(client, STARTED, kind=kind) == 1
            assert await _counted(client, ENDED, kind=kind, reason="client_left") == 1
            assert await _counted(client, ENDED, kind=kind, reason="ice_failed") == 0


@pytest.mark.parametrize("settings", [{"webrtc__connect_timeout_s": 1.0}], indirect=True)
async def test_a_peer_that_vanishes_before_connecting_ends_as_ice_failed(
    client: Client, stream: SellerStream, session_log: pytest.LogCaptureFixture
) -> None:
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    resp = await client.post(
        f"/whep/{stream.id}", data=await _offer(pc), headers={"Content-Type": "application/sdp"}
    )
    assert resp.status == 201, await resp.text()
    await pc.close()  # gone before it ever answered a connectivity check
    location = resp.headers["Location"]
    await eventually(lambda: _ended(session_log, "whep", location, "ice_failed"), within=10)
    (line,) = _lines(session_log, "whep session ended")
    assert line.endswith("connected=never")
    assert await _counted(client, ENDED, kind="whep", reason="ice_failed") == 1


async def test_a_peer_whose_certificate_does_not_match_ends_as_dtls_failed(
    client: Client, stream: SellerStream, session_log: pytest.LogCaptureFixture
) -> None:
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    offer = await _offer(pc)
    # the offer promises another certificate than the one the peer will show
    fingerprint = re.search(r"a=fingerprint:sha-256 (\S+)", offer)
    assert fingerprint is not None
    forged = ":".join("00" for _ in fingerprint.group(1).split(":"))
    offer = offer.replace(fingerprint.group(1), forged)
    resp = await client.post(
        f"/whep/{stream.id}", data=offer, headers={"Content-Type": "application/sdp"}
    )
    assert resp.status == 201, await resp.text()
    try:
        await pc.setRemoteDescription(RTCSessionDescription(await resp.text(), "answer"))
        location = resp.headers["Location"]
        await eventually(lambda: _ended(session_log, "whep", location, "dtls_failed"), within=10)
        (line,) = _lines(session_log, "whep session ended")
        assert "(the peer's certificate does not match the fingerprint in its SDP)" in line
        assert await _counted(client, ENDED, kind="whep", reason="dtls_failed") == 1
    finally:
        await pc.close()


async def test_a_connected_viewer_that_vanishes_ends_as_consent_expired(
    client: Client,
    stream: SellerStream,
    session_log: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RFC 7675 gives up after 30 s of unanswered consent checks; this test, after ~1.5 s:
    # a round every ~0.1 s, each check unanswered after 0.1 s (its only try)
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.1)
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", 0.1)
    async with _watched(stream, client) as (_, viewer):
        await _vanish(viewer.pc)
        await eventually(
            lambda: _ended(session_log, "whep", viewer.location, "consent_expired"), within=15
        )
        assert client.app[MEDIA].viewer_count(stream.id) == 0
        assert await _counted(client, ENDED, kind="whep", reason="consent_expired") == 1


async def test_a_quiet_publisher_replaced_by_a_new_one_ends_as_stale(
    client: Client, stream: SellerStream, session_log: pytest.LogCaptureFixture
) -> None:
    first = await publish(client, stream.id, stream.seller_token)
    viewer = await view(client, stream.id)
    second = None
    try:
        await viewer.frames(3)
        await _vanish(first.pc)
        media = client.app[MEDIA].streams[stream.id]
        await eventually(lambda: media.state == "reconnecting", within=10)  # publisher_stale_s
        second = await publish(client, stream.id, stream.seller_token, start=1000)
        await eventually(
            lambda: _ended(session_log, "whip", first.location, "publisher_stale"), within=10
        )
        await viewer.until(lambda: viewer.counters[-1] >= 1000)
        assert await _counted(client, ENDED, kind="whip", reason="publisher_stale") == 1
        assert await _counted(client, STARTED, kind="whip") == 2
    finally:
        await viewer.close()
        await first.close()
        if second is not None:
            await second.close()


async def test_ending_the_stream_ends_its_sessions_as_stream_ended(
    client: Client, stream: SellerStream, session_log: pytest.LogCaptureFixture
) -> None:
    async with _watched(stream, client) as (publisher, viewer):
        resp = await client.post(
            f"/api/streams/{stream.id}/end", headers=bearer(stream.seller_token)
        )
        assert resp.status == 200, await resp.text()
        await eventually(lambda: _ended(session_log, "whep", viewer.location, "stream_ended"))
        await eventually(lambda: _ended(session_log, "whip", publisher.location, "stream_ended"))


async def test_shutdown_ends_sessions_as_server_shutdown(
    client: Client, stream: SellerStream, session_log: pytest.LogCaptureFixture
) -> None:
    async with _watched(stream, client) as (publisher, viewer):
        await client.close()
        assert _ended(session_log, "whep", viewer.location, "server_shutdown")
        assert _ended(session_log, "whip", publisher.location, "server_shutdown")


async def test_another_nodes_pull_is_an_edge_session_only_that_node_may_end(
    make_node: MakeNode,
    stream: SellerStream,
    session_log: pytest.LogCaptureFixture,
    make_token: MakeToken,
) -> None:
    origin, edge = await make_node(), await make_node()
    async with _watched(stream, origin, edge) as (_, viewer):
        (line,) = _lines(session_log, "edge session started")
        assert f"stream={stream.id} " in line
        (pull,) = origin.app[MEDIA].streams[stream.id].viewers.values()
        url = f"/whep/{stream.id}/{pull.id}"
        await _refused(await origin.delete(url), 401, "unauthorized")
        # a viewer's token naming the pulling node's subject is still a viewer's
        pulling_node = f"edge:{edge.app[MEDIA].origins.node.node_id}"
        lookalike = make_token(Role.VIEWER, sub=pulling_node)
        await _refused(await origin.delete(url, headers=bearer(lookalike)), 403)
        another_node = origin.app[EDGE].tokens.issue(stream.id)  # the origin's own sub
        await _refused(await origin.delete(url, headers=bearer(another_node)), 403)
        assert pull.id in origin.app[MEDIA].sessions
        assert await _counted(origin, STARTED, kind="edge") == 1
        assert await _counted(edge, STARTED, kind="whep") == 1
        assert (await edge.delete(viewer.location)).status == 200
        # the edge lets its pull go with a DELETE at the origin (webrtc.edge_linger_s)
        await eventually(lambda: bool(_lines(session_log, "edge session ended")), within=10)
        (line,) = _lines(session_log, "edge session ended")
        assert "reason=client_left (DELETE)" in line
