"""The few places where the relay reaches into aiortc, kept together.

aiortc decodes every received frame and encodes every sent one. The relay needs neither:

* on a publisher's receiver, :func:`tap_receiver` swaps the jitter buffer for one that
  hands each reassembled encoded frame to the relay and never to the decoder thread
  (which then idles until the receiver stops);
* on a viewer's sender, :func:`install_packer` sets the sender's "encoder" to one that
  returns payloads the relay packetized once for every viewer, and
  :func:`forward_keyframe_requests` routes the viewer's PLI/FIR to the relay instead of
  to an encoder that does not exist.

Two more make the server talk to every standard WebRTC peer:

* :func:`accept_any_dtls_peer` lets the DTLS handshake take any standard peer
  certificate: aiortc offers only ECDSA cipher suites, so as DTLS client it cannot
  reach a server whose certificate is RSA (GStreamer's ``webrtcbin``); and it swaps
  aiortc's ``SSL`` module for one whose connections run on the system's OpenSSL 3
  (:mod:`livecast.ingest._dtls`), as the bundled OpenSSL 4 refuses P-224 peers
  (FFmpeg 8.1 built with GnuTLS);
* :func:`keep_consent_while_receiving` lets a publisher's authenticated media count as
  its consent (RFC 7675): encoders such as FFmpeg's ``whip`` muxer answer ICE checks
  only during the handshake, and aioice would end their session 30 s in while frames
  still arrive.

And :func:`close_peer` closes a peer connection so that the close always completes:
aiortc's ``close()`` makes a second caller await the first call's future, so a second
caller that is cancelled (a request, a shutdown) would cancel that future, and the
first call then fails setting its result (``InvalidStateError``, logged as never
retrieved).

These touch private attributes of aiortc 1.16 (``_RTCRtpReceiver__jitter_buffer``,
``_RTCRtpSender__encoder``, ``RTCDtlsTransport._rtp_router`` and ``_ssl``, the module
global ``SSL`` of ``aiortc.rtcdtlstransport``) and aioice 0.13
(``Connection.query_consent``); :func:`check_compatible` fails loudly at start-up if a
different aiortc or aioice lays them out otherwise.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import inspect
import logging
import random
import re
import time
import types
from collections.abc import Callable
from typing import Any, TypeVar

from aioice import ice as aioice_ice
from aioice import stun
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, clock, rtcdtlstransport
from aiortc.codecs import is_rtx
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add
from OpenSSL import SSL

from livecast.ingest import _dtls

__all__ = [
    "DTLS_CIPHERS",
    "FrameSink",
    "accept_any_dtls_peer",
    "cache_host_addresses",
    "check_compatible",
    "close_peer",
    "forward_keyframe_requests",
    "install_packer",
    "keep_consent_while_receiving",
    "send_pli",
    "switchable_codec",
    "tap_receiver",
    "use_fast_clock",
]

# (encoded frame bytes, RTP timestamp of the frame)
FrameSink = Callable[[bytes, int], None]

log = logging.getLogger(__name__)

_JITTER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_ENCODER_ATTR = "_RTCRtpSender__encoder"
_RTX_ATTR = "_RTCRtpSender__rtx_payload_type"


class _FrameTap(JitterBuffer):
    """aiortc's jitter buffer, with complete frames diverted to the relay.

    It still reorders packets and still reports loss (the receiver then sends PLI and
    NACKs as usual); it remembers the media SSRC, which is where keyframe requests must
    go (RTX packets are unwrapped to the media SSRC before they reach it).
    """

    def __init__(self, capacity: int, prefetch: int, is_video: bool, sink: FrameSink) -> None:
        super().__init__(capacity=capacity, prefetch=prefetch, is_video=is_video)
        self.sink = sink
        self.media_ssrc: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.media_ssrc = packet.ssrc
        pli_flag, frame = super().add(packet)
        if frame is not None:
            self._emit(frame)
        # a video frame ends at its marker bit; every Opus packet is a frame
        if packet.marker or not self._is_video:
            frame = self._complete_at(packet)
            if frame is not None:
                self._emit(frame)
        return pli_flag, None

    def _complete_at(self, last: RtpPacket) -> JitterFrame | None:
        """The frame ``last`` closes, if every packet of it is here.

        aiortc only sees a frame as complete when the next one starts, a frame
        interval later; the marker bit says so as soon as the last packet arrives.
        """
        origin = self._origin
        if origin is None:
            return None
        count = uint16_add(last.sequence_number, -origin) + 1
        if count > self._capacity:
            return None
        packets = []
        for offset in range(count):
            packet = self._packets[(origin + offset) % self._capacity]
            if packet is None or packet.timestamp != last.timestamp:
                return None
            packets.append(packet)
        self.remove(count)
        return JitterFrame(
            data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
            timestamp=last.timestamp,
        )

    def _emit(self, frame: JitterFrame) -> None:
        try:
            self.sink(frame.data, frame.timestamp)
        except Exception:
            # never let a relay bug tear down the publisher's transport
            log.exception("relay could not take a frame")


def tap_receiver(receiver: RTCRtpReceiver, kind: str, sink: FrameSink) -> _FrameTap:
    """Send ``receiver``'s encoded frames to ``sink`` instead of decoding them.

    Call before the receiver gets media (right after ``setRemoteDescription``). Frames
    leave as soon as their last packet is in (aiortc waits for the next frame, and
    for audio four of them): the relay adds no playout delay of its own, the viewer's
    jitter buffer does that.
    """
    if kind == "video":
        tap = _FrameTap(capacity=512, prefetch=0, is_video=True, sink=sink)
    else:
        tap = _FrameTap(capacity=16, prefetch=0, is_video=False, sink=sink)
    setattr(receiver, _JITTER_ATTR, tap)
    return tap


class _Packer:
    """Stands in for a sender's encoder: frames arrive already packetized."""

    def pack(self, frame: Any) -> tuple[list[bytes], int]:
        return frame.payloads, frame.timestamp

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise TypeError("the relay never encodes")


_PACKER = _Packer()


def install_packer(sender: RTCRtpSender) -> None:
    setattr(sender, _ENCODER_ATTR, _PACKER)


def forward_keyframe_requests(sender: RTCRtpSender, on_request: Callable[[], None]) -> None:
    """Call ``on_request`` when the viewer sends PLI or FIR for this sender."""
    sender._send_keyframe = on_request  # type: ignore[method-assign]


def switchable_codec(sender: RTCRtpSender) -> Callable[[str], bool]:
    """A function that makes ``sender`` send another of its negotiated codecs.

    aiortc sends every packet with the payload type of the first negotiated codec, read
    per packet from the codec object its send loop was started with. That object is
    made this sender's own copy here, so ``use(mime_type)`` (``"video/vp8"``) can point
    it, and the RTX payload type, at another negotiated codec; called from the track's
    ``recv()``, it applies from the frame being returned on. ``use`` answers False when
    the codec was not negotiated (or the sender has not started).
    It also sets ``_RTCRtpSender__rtx_payload_type``, checked for here.
    """
    if not hasattr(sender, _RTX_ATTR):
        raise RuntimeError("this aiortc version is not supported by the livecast relay")
    negotiated: list[RTCRtpCodecParameters] = []
    current: list[RTCRtpCodecParameters] = []
    start = sender.send

    async def send(parameters: RTCRtpSendParameters) -> None:
        if not current and parameters.codecs:
            negotiated.extend(parameters.codecs)
            current.append(copy.copy(parameters.codecs[0]))
            parameters = dataclasses.replace(parameters, codecs=[current[0], *negotiated[1:]])
        await start(parameters)

    def use(mime_type: str) -> bool:
        wanted = mime_type.lower()
        codec = next(
            (c for c in negotiated if not is_rtx(c) and c.mimeType.lower() == wanted), None
        )
        if codec is None or not current:
            return False
        sending = current[0]
        sending.mimeType, sending.payloadType = codec.mimeType, codec.payloadType
        sending.parameters = codec.parameters
        rtx = next(
            (
                c.payloadType
                for c in negotiated
                if is_rtx(c) and c.parameters.get("apt") == codec.payloadType
            ),
            None,
        )
        setattr(sender, _RTX_ATTR, rtx)
        return True

    sender.send = send  # type: ignore[method-assign]
    return use


def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> asyncio.Future[None]:
    return asyncio.ensure_future(receiver._send_rtcp_pli(media_ssrc))


_NTP_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


def _current_ntp_time() -> int:
    now = time.time()
    seconds = int(now)
    return ((seconds + _NTP_OFFSET) << 32) | int((now - seconds) * 4_294_967_296)


def _current_ms() -> int:
    return int((time.time() + _NTP_OFFSET) * 1000)


def use_fast_clock() -> None:
    """Replace aiortc's per-packet clock readings with equivalent ones without datetime.

    Every sent RTP packet reads the NTP time twice (abs-send-time, sender report) and
    every received one reads milliseconds; aiortc builds timezone-aware datetimes for
    that, which was a tenth of the relay's CPU. Same values, process-wide.
    """
    clock.current_ntp_time = _current_ntp_time
    clock.current_ms = _current_ms


_HOST_ADDRESSES_TTL_S = 5.0
_host_addresses: dict[tuple[bool, bool], tuple[float, list[str]]] = {}


def _cached_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    key = (use_ipv4, use_ipv6)
    now = time.monotonic()
    cached = _host_addresses.get(key)
    if cached is None or now - cached[0] > _HOST_ADDRESSES_TTL_S:
        cached = (now, _read_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
        _host_addresses[key] = cached
    return list(cached[1])


_read_host_addresses = aioice_ice.get_host_addresses


def cache_host_addresses() -> None:
    """Read the machine's interface addresses at most every few seconds.

    aioice lists every interface for every peer connection it gathers for; that walk
    was half the time of answering an offer. Interfaces that appear or vanish are
    seen within ``_HOST_ADDRESSES_TTL_S``.
    """
    aioice_ice.get_host_addresses = _cached_host_addresses


# -- DTLS ----------------------------------------------------------------------------------

# ECDHE with either certificate kind, AEAD first. The suite decides the kind of the DTLS
# *server's* certificate; aiortc's own list has only ECDSA suites, which fails as soon
# as the server is the peer and its certificate is RSA ("no shared cipher"). Our own
# certificate stays ECDSA, so as server the handshake picks an ECDSA suite as before.
DTLS_CIPHERS = b":".join(
    [
        b"ECDHE-ECDSA-AES128-GCM-SHA256",
        b"ECDHE-RSA-AES128-GCM-SHA256",
        b"ECDHE-ECDSA-AES256-GCM-SHA384",
        b"ECDHE-RSA-AES256-GCM-SHA384",
        b"ECDHE-ECDSA-CHACHA20-POLY1305",
        b"ECDHE-RSA-CHACHA20-POLY1305",
        b"ECDHE-ECDSA-AES128-SHA",
        b"ECDHE-RSA-AES128-SHA",
        b"ECDHE-ECDSA-AES256-SHA",
        b"ECDHE-RSA-AES256-SHA",
    ]
)

_create_ssl_context = RTCCertificate._create_ssl_context
_system_dtls: _dtls.SystemDtls | None = None


def _ssl_context_for_any_peer(self: RTCCertificate, srtp_profiles: list[Any]) -> Any:
    if _system_dtls is not None:
        profiles = b":".join(profile.openssl_profile for profile in srtp_profiles)
        return _dtls.SystemDtlsContext(_system_dtls, self._cert, self._key, DTLS_CIPHERS, profiles)
    context = _create_ssl_context(self, srtp_profiles)
    context.set_cipher_list(DTLS_CIPHERS)
    return context


class _SslModule:
    """Stands in for ``OpenSSL.SSL`` inside ``aiortc.rtcdtlstransport``: a connection on
    a system context is a :class:`~livecast.ingest._dtls.SystemDtlsConnection`, every
    other name is pyOpenSSL's own (its exceptions too, which both raise)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(SSL, name)

    @staticmethod
    def Connection(context: Any) -> Any:
        if isinstance(context, _dtls.SystemDtlsContext):
            return _dtls.SystemDtlsConnection(context)
        return SSL.Connection(context)


def accept_any_dtls_peer() -> None:
    """Let every DTLS handshake of this process take any standard peer.

    RSA as well as ECDSA certificates (:data:`DTLS_CIPHERS`); and, where the system
    has OpenSSL 3, the handshake runs there (:mod:`livecast.ingest._dtls`), which still
    accepts a peer certificate on P-224 (FFmpeg 8.1 with GnuTLS makes one).
    """
    global _system_dtls
    if _system_dtls is None:
        _system_dtls = _dtls.load()
        if _system_dtls is not None:
            log.info("DTLS runs on the system's OpenSSL (%s)", _system_dtls.version)
        else:
            log.warning(
                "no OpenSSL 3 on this system: DTLS runs on the bundled OpenSSL, which "
                "refuses peers whose certificate is on P-224 (FFmpeg 8.1 built with GnuTLS)"
            )
    RTCCertificate._create_ssl_context = _ssl_context_for_any_peer  # type: ignore[method-assign]
    rtcdtlstransport.SSL = _SslModule()  # type: ignore[attr-defined,assignment]


def dtls_failure(dtls: RTCDtlsTransport) -> str:
    """Why ``dtls`` went ``failed``, as far as can be told ("" if not): OpenSSL's words
    for a handshake that failed on the system's OpenSSL (an alert from the peer
    included), or what aiortc refused after a handshake that succeeded."""
    connection = dtls._ssl
    if isinstance(connection, _dtls.SystemDtlsConnection) and connection.failure:
        return connection.failure
    if dtls.encrypted and connection is not None:
        if not connection.get_selected_srtp_profile():
            return "no SRTP profile in common"
        return "the peer's certificate does not match the fingerprint in its SDP"
    return ""


# -- ICE consent -----------------------------------------------------------------------------


_P = TypeVar("_P")
_R = TypeVar("_R")


class _Received:
    """How many packets the peer sent that passed SRTP authentication (RTP and RTCP)."""

    __slots__ = ("packets",)

    def __init__(self) -> None:
        self.packets = 0

    def counting(self, route: Callable[[_P], _R]) -> Callable[[_P], _R]:
        def counted(packet: _P) -> _R:
            self.packets += 1
            return route(packet)

        return counted


def keep_consent_while_receiving(pc: RTCPeerConnection) -> None:
    """Count ``pc``'s authenticated incoming media as the peer's consent (RFC 7675).

    aioice asks for consent every 5 s (+-20 %) and ends the connection after six
    unanswered checks in a row. Here a round also passes when packets that decrypted
    with the session's SRTP keys arrived since the previous one: a peer that keeps
    sending keeps the session, answering consent checks or not. A peer that does
    neither for six rounds (about 30 s) loses it as before. Call after
    ``setRemoteDescription`` and before ICE completes (``setLocalDescription`` starts
    it).
    """
    seen: set[int] = set()
    for transceiver in pc.getTransceivers():
        dtls: RTCDtlsTransport = transceiver.receiver.transport
        connection = dtls.transport._connection
        if id(connection) in seen:  # bundled: one transport for every transceiver
            continue
        seen.add(id(connection))
        received = _Received()
        router = dtls._rtp_router
        router.route_rtp = received.counting(router.route_rtp)  # type: ignore[method-assign,assignment]
        router.route_rtcp = received.counting(router.route_rtcp)  # type: ignore[method-assign,assignment]
        connection.query_consent = functools.partial(  # type: ignore[method-assign]
            _query_consent_or_media, connection, received
        )


async def _query_consent_or_media(connection: aioice_ice.Connection, received: _Received) -> None:
    """aioice's ``Connection.query_consent``, where arriving media also counts."""
    assert connection.remote_password is not None
    failures = 0
    packets = received.packets
    while True:
        interval = aioice_ice.CONSENT_INTERVAL * (0.8 + 0.4 * random.random())
        await asyncio.sleep(interval)
        answered = False
        pairs = list(connection._nominated.values())
        for pair in pairs:
            request = connection.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(
                    request,
                    pair.remote_addr,
                    integrity_key=connection.remote_password.encode("utf8"),
                    retransmissions=0,
                )
                answered = True
            except stun.TransactionError:
                pass
        if answered or received.packets != packets:
            failures = 0
        else:
            failures += 1
        packets = received.packets
        if failures >= aioice_ice.CONSENT_FAILURES:
            peers = ", ".join(_address(p.remote_addr) for p in pairs)
            log.info(
                "ICE consent of %s expired: no answer to consent checks and no media for %d rounds",
                peers or "a peer",
                failures,
            )
            connection._query_consent_task = None
            await connection.close()
            return


def _address(addr: tuple[Any, ...]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_compatible() -> None:
    """Raise if this aiortc or aioice does not have what the hooks above replace."""
    problems = []
    receiver_src = inspect.getsource(RTCRtpReceiver.__init__)
    sender_src = inspect.getsource(RTCRtpSender.__init__)
    if "self.__jitter_buffer" not in receiver_src or "self.__encoder" not in sender_src:
        problems.append("receiver jitter buffer or sender encoder")
    if not hasattr(RTCRtpSender, "_send_keyframe") or not hasattr(RTCRtpReceiver, "_send_rtcp_pli"):
        problems.append("keyframe request methods")
    if "set_cipher_list" not in inspect.getsource(_create_ssl_context):
        problems.append("RTCCertificate._create_ssl_context")
    start_src = inspect.getsource(RTCDtlsTransport.start)
    if (
        "SSL.Connection(" not in start_src
        or "._create_ssl_context(" not in start_src
        or not isinstance(getattr(rtcdtlstransport, "SSL", None), types.ModuleType | _SslModule)
    ):
        problems.append("RTCDtlsTransport.start")
    handshake_src = inspect.getsource(RTCDtlsTransport._do_handshake)
    if "self._ssl.do_handshake()" not in handshake_src or "self.encrypted = True" not in (
        handshake_src
    ):
        problems.append("RTCDtlsTransport._do_handshake")
    used = set(re.findall(r"self\._ssl\.(\w+)", inspect.getsource(rtcdtlstransport)))
    if missing := sorted(name for name in used if not hasattr(_dtls.SystemDtlsConnection, name)):
        problems.append(f"SSL.Connection methods {', '.join(missing)}")
    if "self._rtp_router.route_rtp(" not in inspect.getsource(
        RTCDtlsTransport._handle_rtp_data
    ) or "self._rtp_router.route_rtcp(" not in inspect.getsource(
        RTCDtlsTransport._handle_rtcp_data
    ):
        problems.append("RTCDtlsTransport routing")
    connect_src = inspect.getsource(aioice_ice.Connection.connect)
    consent_src = inspect.getsource(aioice_ice.Connection.query_consent)
    if (
        "self.query_consent()" not in connect_src
        or "self._nominated" not in consent_src
        or "self.build_request(pair, nominate=False)" not in consent_src
        or not isinstance(getattr(aioice_ice, "CONSENT_INTERVAL", None), int | float)
        or not isinstance(getattr(aioice_ice, "CONSENT_FAILURES", None), int)
    ):
        problems.append("aioice consent freshness")
    if problems:
        raise RuntimeError(
            "this aiortc/aioice version is not supported by the livecast relay: "
            + ", ".join(problems)
        )


async def close_peer(pc: RTCPeerConnection) -> None:
    """Close ``pc``; cancelling the caller leaves the close running to its end."""
    await asyncio.shield(pc.close())
