"""The hooks into aiortc: the frame tap sends whole frames as soon as they are complete,
once, in order; ICE consent follows a publisher's media; DTLS takes any standard peer."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aioice import ice as aioice_ice
from aioice import stun as aioice_stun
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCCertificate, SRTPProtectionProfile, generate_certificate
from aiortc.rtp import RtpPacket
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL

from livecast.ingest import _aiortc, _dtls
from livecast.ingest._aiortc import _FrameTap, check_compatible
from livecast.ingest.keys import MEDIA
from tests.conftest import Client, bearer
from tests.ingest.conftest import SellerStream, eventually
from tests.ingest.peers import CounterTrack, Publisher, Viewer, in_order, new_pc, publish, view


def _packet(seq: int, timestamp: int, data: bytes, marker: bool) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=timestamp, ssrc=1234)
    packet.marker = int(marker)
    packet._data = data  # type: ignore[attr-defined]
    return packet


def _tap() -> tuple[_FrameTap, list[tuple[bytes, int]]]:
    frames: list[tuple[bytes, int]] = []
    tap = _FrameTap(capacity=64, prefetch=0, is_video=True, sink=lambda d, t: frames.append((d, t)))
    return tap, frames


def test_a_frame_leaves_at_its_marker_packet() -> None:
    tap, frames = _tap()
    tap.add(_packet(10, 3000, b"a", marker=False))
    tap.add(_packet(11, 3000, b"b", marker=False))
    assert frames == []
    tap.add(_packet(12, 3000, b"c", marker=True))
    assert frames == [(b"abc", 3000)]  # without waiting for the next frame
    tap.add(_packet(13, 6000, b"d", marker=True))
    assert frames == [(b"abc", 3000), (b"d", 6000)]
    assert tap.media_ssrc == 1234


def test_reordered_packets_still_make_each_frame_once_in_order() -> None:
    tap, frames = _tap()
    tap.add(_packet(10, 3000, b"a", marker=False))
    tap.add(_packet(12, 3000, b"c", marker=True))  # 11 is late
    assert frames == []
    tap.add(_packet(11, 3000, b"b", marker=False))
    tap.add(_packet(13, 6000, b"d", marker=True))
    tap.add(_packet(14, 9000, b"e", marker=True))
    assert frames == [(b"abc", 3000), (b"d", 6000), (b"e", 9000)]


# -- ICE consent (RFC 7675) ------------------------------------------------------------------


# what the consent rounds take in these tests: one every ~0.2 s instead of ~5 s, and an
# unanswered check given up after 0.1 s instead of 0.5 s (its only try: no retransmission)
CONSENT_INTERVAL_S = 0.2
CHECK_TIMEOUT_S = 0.1


@pytest.fixture
def fast_consent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consent rounds on :data:`CONSENT_INTERVAL_S` and :data:`CHECK_TIMEOUT_S`, on both
    ends (one process); as many rounds as ever end a session."""
    monkeypatch.setattr(aioice_ice, "CONSENT_INTERVAL", CONSENT_INTERVAL_S)
    monkeypatch.setattr(aioice_stun, "RETRY_RTO", CHECK_TIMEOUT_S)


def _ice_connection(pc: RTCPeerConnection) -> aioice_ice.Connection:
    connection: aioice_ice.Connection = pc.getTransceivers()[
        0
    ].sender.transport.transport._connection
    return connection


def stop_answering_consent(pc: RTCPeerConnection) -> None:
    """The peer ignores every STUN request from now on, as FFmpeg's muxer does once the
    handshake is over."""
    _ice_connection(pc).request_received = lambda *args, **kwargs: None  # type: ignore[method-assign]


def stop_sending(pc: RTCPeerConnection) -> None:
    """Nothing more leaves the peer: no RTP, no RTCP (a frozen or unplugged encoder)."""

    async def drop(data: bytes) -> None:
        return None

    pc.getTransceivers()[0].sender.transport.transport._send = drop


async def _connected(client: Client, stream: SellerStream) -> tuple[Publisher, Viewer]:
    publisher = await publish(client, stream.id, stream.seller_token)
    viewer = await view(client, stream.id)
    await viewer.frames(3)
    return publisher, viewer


def _rounds(count: int) -> float:
    """Wall time of ``count`` unanswered consent rounds (interval + STUN timeout each)."""
    return count * (CONSENT_INTERVAL_S * 1.2 + CHECK_TIMEOUT_S)


@pytest.mark.timeout(60)
async def test_a_publisher_that_keeps_sending_stays_live_without_answering_consent(
    client: Client, stream: SellerStream, fast_consent: None
) -> None:
    publisher, viewer = await _connected(client, stream)
    session = client.app[MEDIA].streams[stream.id].publisher
    assert session is not None
    stop_answering_consent(publisher.pc)
    # well past the six unanswered rounds that end a session
    deadline = asyncio.get_running_loop().time() + _rounds(2 * aioice_ice.CONSENT_FAILURES)
    while asyncio.get_running_loop().time() < deadline:
        seen = len(viewer.counters)
        await viewer.frames(seen + 5)
    assert not session.closed
    assert client.app[MEDIA].streams[stream.id].publisher is session
    assert publisher.pc.connectionState == "connected"
    assert in_order(viewer.counters)
    await viewer.close()
    await publisher.close()


@pytest.mark.timeout(60)
# longer than the consent rounds take: a quiet publisher is closed after it otherwise
@pytest.mark.parametrize("settings", [{"webrtc__publisher_stale_s": 30.0}], indirect=True)
async def test_a_publisher_that_stops_sending_and_answering_loses_its_session(
    client: Client,
    stream: SellerStream,
    fast_consent: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher, viewer = await _connected(client, stream)
    session = client.app[MEDIA].streams[stream.id].publisher
    assert session is not None
    stop_answering_consent(publisher.pc)
    stop_sending(publisher.pc)
    with caplog.at_level("INFO", logger="livecast.ingest._aiortc"):
        await eventually(lambda: session.closed, within=_rounds(aioice_ice.CONSENT_FAILURES) + 5)
    said = [r.getMessage() for r in caplog.records if r.name == "livecast.ingest._aiortc"]
    assert any(re.match(r"ICE consent of \S+:\d+ expired", line) for line in said), said
    media = await (await client.get(f"/api/streams/{stream.id}/media")).json()
    assert media["state"] == "reconnecting"  # the grace for the publisher to return runs
    await viewer.close()
    await publisher.close()


@pytest.mark.timeout(60)
async def test_a_viewer_that_stops_answering_consent_loses_its_session(
    client: Client, stream: SellerStream, fast_consent: None
) -> None:
    publisher, viewer = await _connected(client, stream)
    hub = client.app[MEDIA]
    session_id = viewer.location.rsplit("/", 1)[1]
    assert session_id in hub.sessions
    stop_answering_consent(viewer.pc)  # it still sends RTCP receiver reports
    await eventually(
        lambda: session_id not in hub.sessions, within=_rounds(aioice_ice.CONSENT_FAILURES) + 5
    )
    assert hub.streams[stream.id].publisher is not None  # the publisher is untouched
    await viewer.close()
    await publisher.close()


# -- DTLS with any standard peer ----------------------------------------------------------------

# what a stack other than aiortc offers: suites for either certificate kind (a server
# can pick only those that fit its own certificate)
_PEER_SUITES = b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-SHA"


class PeerCertificate(RTCCertificate):
    """A peer's certificate (RSA or ECDSA) and DTLS settings of its own, as another
    WebRTC stack has them; unlike the server's, not aiortc's."""

    def __init__(self, kind: str, suites: bytes = _PEER_SUITES) -> None:
        key: Any = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if kind == "rsa"
            else ec.generate_private_key(ec.SECP256R1())
        )
        super().__init__(key=key, cert=generate_certificate(key))
        self.kind = kind
        self.suites = suites

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        context = SSL.Context(SSL.DTLS_METHOD)
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *a: True)
        context.use_certificate(self._cert)
        context.use_privatekey(self._key)
        context.set_cipher_list(self.suites)
        context.set_tlsext_use_srtp(b":".join(p.openssl_profile for p in srtp_profiles))
        return context


async def _publish_with(
    client: Client, stream: SellerStream, certificate: PeerCertificate, setup: str
) -> RTCPeerConnection:
    """Publish with ``certificate``, offering ``a=setup:{setup}``; the answer must take
    the other DTLS role."""
    pc = new_pc()
    pc._RTCPeerConnection__certificates = [certificate]  # type: ignore[attr-defined]
    pc.addTransceiver(CounterTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp.replace("a=setup:actpass", f"a=setup:{setup}")
    headers = {**bearer(stream.seller_token), "Content-Type": "application/sdp"}
    resp = await client.post(f"/whip/{stream.id}", data=offer, headers=headers)
    assert resp.status == 201, await resp.text()
    answer = await resp.text()
    assert f"a=setup:{'active' if setup == 'passive' else 'passive'}" in answer
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return pc


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
@pytest.mark.parametrize(
    "setup", ["passive", "active"], ids=["server-is-dtls-client", "server-is-dtls-server"]
)
async def test_dtls_with_rsa_or_ecdsa_peers_in_either_role(
    client: Client, stream: SellerStream, kind: str, setup: str
) -> None:
    pc = await _publish_with(client, stream, PeerCertificate(kind), setup)
    viewer = await view(client, stream.id)
    try:
        counters = await viewer.frames(5, within=10)
        assert in_order(counters)
        assert pc.connectionState == "connected"
        session = client.app[MEDIA].streams[stream.id].publisher
        assert session is not None
        server_side = session.pc.getTransceivers()[0].receiver.transport
        assert server_side._role == ("client" if setup == "passive" else "server")
        if _dtls.load() is not None:
            assert isinstance(server_side._ssl, _dtls.SystemDtlsConnection)
    finally:
        await viewer.close()
        await pc.close()


@pytest.mark.skipif(_dtls.load() is None, reason="needs the system's OpenSSL 3")
async def test_a_failed_dtls_handshake_ends_the_session_with_openssls_reason(
    client: Client, stream: SellerStream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="livecast.ingest.sessions")
    # a DTLS client offering only RSA suites, which the server's ECDSA certificate cannot use
    peer = PeerCertificate("rsa", suites=b"ECDHE-RSA-AES128-GCM-SHA256")
    pc = await _publish_with(client, stream, peer, "active")
    try:

        def ended() -> list[str]:
            said = [r.getMessage() for r in caplog.records]
            return [line for line in said if line.startswith("whip session ended")]

        await eventually(lambda: bool(ended()), within=10)
        (line,) = ended()
        assert re.search(r"reason=dtls_failed \(.*no shared cipher.*\)", line), line
    finally:
        await pc.close()


def test_the_start_up_check_passes_on_the_installed_aiortc_and_aioice() -> None:
    check_compatible()


async def _other_query_consent(self: aioice_ice.Connection) -> None:
    return None


def test_the_start_up_check_fails_when_a_hooked_method_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aioice_ice.Connection, "query_consent", _other_query_consent)
    with pytest.raises(RuntimeError, match="aioice consent freshness"):
        check_compatible()


async def test_without_a_system_openssl_the_bundled_one_still_takes_rsa_peers(
    client: Client,
    stream: SellerStream,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(_aiortc, "_system_dtls", None)
    monkeypatch.setattr(_dtls, "load", lambda: None)
    with caplog.at_level("WARNING", logger="livecast.ingest._aiortc"):
        _aiortc.accept_any_dtls_peer()
    assert any("P-224" in r.getMessage() for r in caplog.records)
    pc = await _publish_with(client, stream, PeerCertificate("rsa"), "passive")
    viewer = await view(client, stream.id)
    try:
        assert in_order(await viewer.frames(5, within=10))
        dtls = pc.getTransceivers()[0].sender.transport
        assert isinstance(dtls._ssl, SSL.Connection)  # the peer's own, pyOpenSSL
        session = client.app[MEDIA].streams[stream.id].publisher
        assert session is not None
        server_side = session.pc.getTransceivers()[0].receiver.transport
        assert isinstance(server_side._ssl, SSL.Connection)  # the bundled OpenSSL ran it
    finally:
        await viewer.close()
        await pc.close()


def test_the_start_up_check_fails_when_aiortc_needs_more_of_a_dtls_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(_dtls.SystemDtlsConnection, "export_keying_material")
    with pytest.raises(RuntimeError, match="export_keying_material"):
        check_compatible()


async def test_the_servers_peer_connections_share_one_certificate() -> None:
    """Made once, not per connection (a join storm paid for a key pair each); peers
    made with aiortc's own constructor keep their own."""
    from aiortc import RTCConfiguration

    first = _aiortc.peer_connection(RTCConfiguration(iceServers=[]))
    second = _aiortc.peer_connection(RTCConfiguration(iceServers=[]))
    other = new_pc()
    try:
        certificates = [pc._RTCPeerConnection__certificates[0] for pc in (first, second, other)]  # type: ignore[attr-defined]
        assert certificates[0] is certificates[1]
        assert certificates[2] is not certificates[0]
    finally:
        for pc in (first, second, other):
            await pc.close()


async def test_a_close_runs_to_its_end_when_a_second_closer_is_cancelled() -> None:
    """aiortc's second close() awaits the first's future: cancelling that second caller
    (a request, a shutdown) must not cancel the future the first then completes."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video")
    await pc.setLocalDescription(await pc.createOffer())
    first = asyncio.ensure_future(_aiortc.close_peer(pc))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(_aiortc.close_peer(pc))
    await asyncio.sleep(0)
    second.cancel()
    await first  # with a bare pc.close(): InvalidStateError
    assert pc.connectionState == "closed"
    with pytest.raises(asyncio.CancelledError):
        await second
