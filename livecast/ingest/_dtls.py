"""DTLS over the system's OpenSSL 3, for peers that the bundled OpenSSL refuses.

aiortc runs DTLS through pyOpenSSL, on the OpenSSL that the ``cryptography`` wheel
links in. OpenSSL 4 dropped the TLS groups that RFC 8422 deprecated, P-224 among them,
and a TLS 1.2 client refuses a server whose certificate key is on a curve it does not
offer (``illegal_parameter`` on the ServerKeyExchange). FFmpeg 8.1 built with GnuTLS
(the ``whip`` muxer of PyAV 18) makes its DTLS certificate on P-224 and is always the
DTLS server, so no handshake with it could ever finish.

:class:`SystemDtlsContext` and :class:`SystemDtlsConnection` do the same work on the
OpenSSL 3 of the system (the one Python's own ``ssl`` module loads), with P-224 offered
after the usual groups. The connection has exactly the methods, return values and
exceptions of ``OpenSSL.SSL.Connection`` that aiortc's ``RTCDtlsTransport`` uses, so
aiortc drives it unchanged (:func:`livecast.ingest._aiortc.use_system_dtls`).
:func:`load` answers ``None`` where that library is missing or cannot offer P-224.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

__all__ = ["GROUPS", "SystemDtls", "SystemDtlsConnection", "SystemDtlsContext", "load"]

log = logging.getLogger(__name__)

# OpenSSL 3's defaults, then P-224 for peers that still use it.
GROUPS = b"X25519:P-256:X448:P-521:P-384:P-224"

_SSL_OP_NO_TICKET = 0x00004000
_SSL_VERIFY_PEER = 0x01
_SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02
_SSL_CTRL_SET_GROUPS_LIST = 92
_SSL_CTRL_MODE = 33
_SSL_MODE_AUTO_RETRY = 0x00000004
_DTLS_CTRL_GET_TIMEOUT = 73
_DTLS_CTRL_HANDLE_TIMEOUT = 74
_SSL_ERROR_WANT_READ = 2
_SSL_ERROR_ZERO_RETURN = 6

_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _SrtpProfile(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("id", ctypes.c_ulong)]


def _accept_any(preverify_ok: int, store: int | None) -> int:
    # the peer is authenticated by the fingerprint in its SDP, checked after the handshake
    return 1


class SystemDtls:
    """The system's libssl and libcrypto, with the signatures used here declared."""

    def __init__(self, libssl: ctypes.CDLL, libcrypto: ctypes.CDLL) -> None:
        self.ssl = libssl
        self.crypto = libcrypto
        self.verify_callback = _VERIFY_CALLBACK(_accept_any)  # kept alive with the library
        vp, i, lg, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_size_t
        for lib, name, restype, argtypes in [
            (libssl, "DTLS_method", vp, []),
            (libssl, "SSL_CTX_new", vp, [vp]),
            (libssl, "SSL_CTX_free", None, [vp]),
            (libssl, "SSL_CTX_set_options", ctypes.c_uint64, [vp, ctypes.c_uint64]),
            (libssl, "SSL_CTX_set_verify", None, [vp, i, _VERIFY_CALLBACK]),
            (libssl, "SSL_CTX_use_certificate", i, [vp, vp]),
            (libssl, "SSL_CTX_use_PrivateKey", i, [vp, vp]),
            (libssl, "SSL_CTX_check_private_key", i, [vp]),
            (libssl, "SSL_CTX_set_cipher_list", i, [vp, ctypes.c_char_p]),
            (libssl, "SSL_CTX_set_tlsext_use_srtp", i, [vp, ctypes.c_char_p]),
            (libssl, "SSL_CTX_ctrl", lg, [vp, i, lg, vp]),
            (libssl, "SSL_new", vp, [vp]),
            (libssl, "SSL_free", None, [vp]),
            (libssl, "SSL_ctrl", lg, [vp, i, lg, vp]),
            (libssl, "SSL_set_bio", None, [vp, vp, vp]),
            (libssl, "SSL_set_connect_state", None, [vp]),
            (libssl, "SSL_set_accept_state", None, [vp]),
            (libssl, "SSL_do_handshake", i, [vp]),
            (libssl, "SSL_get_error", i, [vp, i]),
            (libssl, "SSL_read", i, [vp, vp, i]),
            (libssl, "SSL_write", i, [vp, ctypes.c_char_p, i]),
            (libssl, "SSL_shutdown", i, [vp]),
            (libssl, "SSL_get1_peer_certificate", vp, [vp]),
            (libssl, "SSL_get_selected_srtp_profile", ctypes.POINTER(_SrtpProfile), [vp]),
            (
                libssl,
                "SSL_export_keying_material",
                i,
                [vp, vp, sz, ctypes.c_char_p, sz, vp, sz, i],
            ),
            (libcrypto, "BIO_s_mem", vp, []),
            (libcrypto, "BIO_new", vp, [vp]),
            (libcrypto, "BIO_free", i, [vp]),
            (libcrypto, "BIO_read", i, [vp, vp, i]),
            (libcrypto, "BIO_write", i, [vp, ctypes.c_char_p, i]),
            (libcrypto, "d2i_X509", vp, [vp, ctypes.POINTER(vp), lg]),
            (libcrypto, "i2d_X509", i, [vp, ctypes.POINTER(vp)]),
            (libcrypto, "X509_free", None, [vp]),
            (libcrypto, "d2i_AutoPrivateKey", vp, [vp, ctypes.POINTER(vp), lg]),
            (libcrypto, "EVP_PKEY_free", None, [vp]),
            (libcrypto, "OpenSSL_version", ctypes.c_char_p, [i]),
            (libcrypto, "ERR_clear_error", None, []),
            (libcrypto, "ERR_get_error", ctypes.c_ulong, []),
            (libcrypto, "ERR_error_string_n", None, [ctypes.c_ulong, ctypes.c_char_p, sz]),
        ]:
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes

    @property
    def version(self) -> str:
        text: bytes = self.crypto.OpenSSL_version(0)  # OPENSSL_VERSION
        return text.decode(errors="replace")

    def errors(self) -> list[str]:
        """Empty OpenSSL's error queue of this thread, as text."""
        found = []
        buffer = ctypes.create_string_buffer(256)
        while code := self.crypto.ERR_get_error():
            self.crypto.ERR_error_string_n(code, buffer, len(buffer))
            found.append(buffer.value.decode(errors="replace"))
        return found


def load() -> SystemDtls | None:
    """The system's OpenSSL 3 if it loads and offers every group of :data:`GROUPS`."""
    names = [ctypes.util.find_library("ssl"), "libssl.so.3"]
    for name in dict.fromkeys(n for n in names if n):
        try:
            libssl = ctypes.CDLL(name)
            libcrypto = ctypes.CDLL(name.replace("libssl", "libcrypto"))
            system = SystemDtls(libssl, libcrypto)
        except (OSError, AttributeError):
            continue
        context = system.ssl.SSL_CTX_new(system.ssl.DTLS_method())
        if not context:
            continue
        try:
            if system.ssl.SSL_CTX_ctrl(context, _SSL_CTRL_SET_GROUPS_LIST, 0, GROUPS) == 1:
                return system
        finally:
            system.ssl.SSL_CTX_free(context)
            system.errors()
    return None


def _from_der(system: SystemDtls, decode: Any, der: bytes) -> int:
    buffer = ctypes.create_string_buffer(der, len(der))
    cursor = ctypes.c_void_p(ctypes.addressof(buffer))
    handle: int | None = decode(None, ctypes.byref(cursor), len(der))
    if not handle:
        raise SSL.Error(system.errors())
    return handle


class SystemDtlsContext:
    """What ``OpenSSL.SSL.Context`` is to aiortc: certificate, key, suites, SRTP profiles."""

    def __init__(
        self, system: SystemDtls, certificate: x509.Certificate, key: Any, ciphers: bytes,
        srtp_profiles: bytes,
    ) -> None:  # fmt: skip
        self.system = system
        lib = system.ssl
        self._context: int | None = lib.SSL_CTX_new(lib.DTLS_method())
        if not self._context:
            raise SSL.Error(system.errors())
        context = self._context
        lib.SSL_CTX_set_options(context, _SSL_OP_NO_TICKET)
        lib.SSL_CTX_set_verify(
            context,
            _SSL_VERIFY_PEER | _SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
            system.verify_callback,
        )
        cert = _from_der(
            system, system.crypto.d2i_X509, certificate.public_bytes(serialization.Encoding.DER)
        )
        try:
            ok = lib.SSL_CTX_use_certificate(context, cert)
        finally:
            system.crypto.X509_free(cert)  # the context holds its own reference
        key_der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        pkey = _from_der(system, system.crypto.d2i_AutoPrivateKey, key_der)
        try:
            ok = ok and lib.SSL_CTX_use_PrivateKey(context, pkey)
        finally:
            system.crypto.EVP_PKEY_free(pkey)
        ok = ok and lib.SSL_CTX_check_private_key(context)
        ok = ok and lib.SSL_CTX_set_cipher_list(context, ciphers)
        ok = ok and lib.SSL_CTX_ctrl(context, _SSL_CTRL_SET_GROUPS_LIST, 0, GROUPS) == 1
        # this one answers 0 on success
        ok = ok and lib.SSL_CTX_set_tlsext_use_srtp(context, srtp_profiles) == 0
        if not ok:
            raise SSL.Error(system.errors())

    def __del__(self) -> None:
        if self._context:
            self.system.ssl.SSL_CTX_free(self._context)
            self._context = None


class SystemDtlsConnection:
    """The part of ``OpenSSL.SSL.Connection`` (memory BIOs) that aiortc uses for DTLS."""

    def __init__(self, context: SystemDtlsContext) -> None:
        self.system = context.system
        lib = self.system.ssl
        self._ssl: int | None = lib.SSL_new(context._context)
        if not self._ssl:
            raise SSL.Error(self.system.errors())
        lib.SSL_ctrl(self._ssl, _SSL_CTRL_MODE, _SSL_MODE_AUTO_RETRY, None)
        self._into_ssl = self.system.crypto.BIO_new(self.system.crypto.BIO_s_mem())
        self._from_ssl = self.system.crypto.BIO_new(self.system.crypto.BIO_s_mem())
        lib.SSL_set_bio(self._ssl, self._into_ssl, self._from_ssl)  # the SSL owns both
        self._failure: list[str] = []
        self.failure = ""  # why the handshake failed, in OpenSSL's words

    def __del__(self) -> None:
        if self._ssl:
            self.system.ssl.SSL_free(self._ssl)
            self._ssl = None

    def _raise(self, result: int) -> None:
        error = self.system.ssl.SSL_get_error(self._ssl, result)
        details = self.system.errors()
        if error == _SSL_ERROR_WANT_READ:
            raise SSL.WantReadError()
        if error == _SSL_ERROR_ZERO_RETURN:
            raise SSL.ZeroReturnError()
        # aiortc also reads (SSL_read) every handshake datagram and drops that error;
        # the handshake call that follows then finds OpenSSL's queue empty
        if details:
            self._failure = details
        raise SSL.Error(details or self._failure or [f"SSL_get_error {error}"])

    def set_connect_state(self) -> None:
        self.system.ssl.SSL_set_connect_state(self._ssl)

    def set_accept_state(self) -> None:
        self.system.ssl.SSL_set_accept_state(self._ssl)

    def do_handshake(self) -> None:
        self.system.crypto.ERR_clear_error()
        result = self.system.ssl.SSL_do_handshake(self._ssl)
        if result != 1:
            try:
                self._raise(result)
            except SSL.WantReadError:
                raise
            except SSL.Error as exc:
                # OpenSSL's words name the cause, an alert from the peer included
                # ("tlsv1 alert ...", "no shared cipher"); aiortc logs only at debug
                self.failure = "; ".join(map(str, exc.args[0]))
                log.info("DTLS handshake failed: %s", self.failure)
                raise

    def bio_write(self, data: bytes) -> int:
        written: int = self.system.crypto.BIO_write(self._into_ssl, data, len(data))
        if written <= 0:
            raise SSL.Error(self.system.errors())
        return written

    def bio_read(self, size: int) -> bytes:
        buffer = ctypes.create_string_buffer(size)
        read = self.system.crypto.BIO_read(self._from_ssl, buffer, size)
        if read <= 0:
            raise SSL.WantReadError()
        return buffer.raw[:read]

    def recv(self, size: int) -> bytes:
        self.system.crypto.ERR_clear_error()
        buffer = ctypes.create_string_buffer(size)
        read = self.system.ssl.SSL_read(self._ssl, buffer, size)
        if read <= 0:
            self._raise(read)
        return buffer.raw[:read]

    def send(self, data: bytes) -> int:
        self.system.crypto.ERR_clear_error()
        sent: int = self.system.ssl.SSL_write(self._ssl, data, len(data))
        if sent <= 0:
            self._raise(sent)
        return sent

    def shutdown(self) -> bool:
        self.system.crypto.ERR_clear_error()
        result = self.system.ssl.SSL_shutdown(self._ssl)
        if result < 0:
            self._raise(result)
        return bool(result > 0)

    def DTLSv1_get_timeout(self) -> float | None:
        timeout = _Timeval()
        if self.system.ssl.SSL_ctrl(self._ssl, _DTLS_CTRL_GET_TIMEOUT, 0, ctypes.byref(timeout)):
            return float(timeout.tv_sec + timeout.tv_usec / 1_000_000)
        return None

    def DTLSv1_handle_timeout(self) -> bool:
        self.system.crypto.ERR_clear_error()
        result = self.system.ssl.SSL_ctrl(self._ssl, _DTLS_CTRL_HANDLE_TIMEOUT, 0, None)
        if result < 0:
            raise SSL.Error(self.system.errors())
        return bool(result)

    def get_peer_certificate(self, *, as_cryptography: bool = False) -> x509.Certificate | None:
        handle = self.system.ssl.SSL_get1_peer_certificate(self._ssl)
        if not handle:
            return None
        try:
            length = self.system.crypto.i2d_X509(handle, None)
            buffer = ctypes.create_string_buffer(length)
            cursor = ctypes.c_void_p(ctypes.addressof(buffer))
            self.system.crypto.i2d_X509(handle, ctypes.byref(cursor))
        finally:
            self.system.crypto.X509_free(handle)
        return x509.load_der_x509_certificate(buffer.raw)

    def get_selected_srtp_profile(self) -> bytes:
        profile = self.system.ssl.SSL_get_selected_srtp_profile(self._ssl)
        if not profile:
            return b""
        name: bytes = profile.contents.name
        return name

    def export_keying_material(
        self, label: bytes, olen: int, context: bytes | None = None
    ) -> bytes:
        out = ctypes.create_string_buffer(olen)
        ok = self.system.ssl.SSL_export_keying_material(
            self._ssl, out, olen, label, len(label), None, 0, 0
        )
        if ok != 1:
            raise SSL.Error(self.system.errors())
        return out.raw
