"""DTLS on the system's OpenSSL: a full handshake between two in-memory endpoints, with
the peer certificates that the bundled OpenSSL refuses."""

from __future__ import annotations

from typing import Any

import pytest
from aiortc.rtcdtlstransport import generate_certificate
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL

from livecast.ingest import _dtls
from livecast.ingest._aiortc import DTLS_CIPHERS

SRTP_PROFILES = b"SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80"
LABEL = b"EXTRACTOR-dtls_srtp"


@pytest.fixture(scope="module")
def system() -> _dtls.SystemDtls:
    loaded = _dtls.load()
    if loaded is None:
        pytest.skip("this system has no OpenSSL 3 offering P-224")
    return loaded


def _identity(kind: str) -> tuple[x509.Certificate, Any]:
    key: Any
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key({"p224": ec.SECP224R1(), "p256": ec.SECP256R1()}[kind])
    return generate_certificate(key), key


def _connection(system: _dtls.SystemDtls, kind: str) -> tuple[Any, x509.Certificate]:
    cert, key = _identity(kind)
    context = _dtls.SystemDtlsContext(system, cert, key, DTLS_CIPHERS, SRTP_PROFILES)
    return _dtls.SystemDtlsConnection(context), cert


def _pump(source: Any, target: Any) -> None:
    while True:
        try:
            target.bio_write(source.bio_read(1500))
        except SSL.Error:
            return


def _handshake(client: Any, server: Any) -> None:
    client.set_connect_state()
    server.set_accept_state()
    done: set[int] = set()
    for _ in range(20):
        for side in (client, server):
            if id(side) in done:
                continue
            try:
                side.do_handshake()
                done.add(id(side))
            except SSL.WantReadError:
                pass
        _pump(client, server)
        _pump(server, client)
        if len(done) == 2:
            return
    raise AssertionError("the handshake did not finish")


@pytest.mark.parametrize("server_kind", ["p224", "p256", "rsa"])
def test_a_handshake_with_any_server_certificate_gives_both_ends_the_same_srtp_keys(
    system: _dtls.SystemDtls, server_kind: str
) -> None:
    client, client_cert = _connection(system, "p256")
    server, server_cert = _connection(system, server_kind)
    _handshake(client, server)
    assert client.get_peer_certificate(as_cryptography=True) == server_cert
    assert server.get_peer_certificate(as_cryptography=True) == client_cert
    assert client.get_selected_srtp_profile() == b"SRTP_AEAD_AES_128_GCM"
    assert server.get_selected_srtp_profile() == b"SRTP_AEAD_AES_128_GCM"
    keys = client.export_keying_material(LABEL, 56)
    assert len(keys) == 56
    assert keys == server.export_keying_material(LABEL, 56)

    client.send(b"hello")
    _pump(client, server)
    assert server.recv(1500) == b"hello"
    with pytest.raises(SSL.WantReadError):
        server.recv(1500)  # nothing more


def test_the_bundled_openssl_refuses_a_p224_server(system: _dtls.SystemDtls) -> None:
    """Why the system's OpenSSL runs DTLS: the bundled one cannot reach a P-224 server
    (FFmpeg 8.1 with GnuTLS). If this starts to pass, the bundled one may do again."""
    cert, key = _identity("p256")
    context = SSL.Context(SSL.DTLS_METHOD)
    context.set_verify(SSL.VERIFY_PEER, lambda *args: True)
    context.use_certificate(cert)
    context.use_privatekey(key)
    context.set_cipher_list(DTLS_CIPHERS)
    context.set_tlsext_use_srtp(SRTP_PROFILES)
    client = SSL.Connection(context)
    server, _ = _connection(system, "p224")
    with pytest.raises(SSL.Error):
        _handshake(client, server)


def test_a_shut_down_peer_reads_as_the_end(system: _dtls.SystemDtls) -> None:
    client, _ = _connection(system, "p256")
    server, _ = _connection(system, "p256")
    _handshake(client, server)
    client.shutdown()
    _pump(client, server)
    with pytest.raises(SSL.ZeroReturnError):
        server.recv(1500)


def test_dtls_timers_run_while_a_flight_is_unanswered(system: _dtls.SystemDtls) -> None:
    client, _ = _connection(system, "p256")
    client.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        client.do_handshake()
    first = client.bio_read(1500)  # the ClientHello
    timeout = client.DTLSv1_get_timeout()
    assert timeout is not None
    assert 0 < timeout <= 1.0
    assert client.DTLSv1_get_timeout() is not None
    # nothing is due yet: handling the timer resends nothing
    client.DTLSv1_handle_timeout()
    with pytest.raises(SSL.Error):
        client.bio_read(1500)
    assert first[0] == 22  # a handshake record


def test_a_failed_handshake_is_logged_with_its_cause(
    system: _dtls.SystemDtls, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = _identity("p256")
    ecdsa_only = b"ECDHE-ECDSA-AES128-GCM-SHA256"
    client = _dtls.SystemDtlsConnection(
        _dtls.SystemDtlsContext(system, cert, key, ecdsa_only, SRTP_PROFILES)
    )
    server, _ = _connection(system, "rsa")  # an RSA server cannot use an ECDSA suite
    with caplog.at_level("INFO", logger="livecast.ingest._dtls"), pytest.raises(SSL.Error):
        _handshake(client, server)
    said = [r.getMessage() for r in caplog.records if r.name == "livecast.ingest._dtls"]
    assert any("no shared cipher" in line for line in said), said
