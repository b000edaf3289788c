"""The few places where the relay reaches into aiortc, kept together.

aiortc decodes every received frame and encodes every sent one. The relay needs neither:

* on a publisher's receiver, :func:`tap_receiver` swaps the jitter buffer for one that
  hands each reassembled encoded frame to the relay and never to the decoder thread
  (which then idles until the receiver stops);
* on a viewer's sender, :class:`RelaySender` sets the sender's "encoder" to one that
  returns payloads the relay packetized once for every viewer and lets it switch
  between its negotiated codecs, and :func:`forward_keyframe_requests` routes the
  viewer's PLI/FIR to the relay instead of to an encoder that does not exist;
* the relay's fast path (:mod:`livecast.ingest.fanout`) sends a viewer's RTP itself:
  a :class:`SenderWire` gives it, once the sender starts, what aiortc holds for that
  (SSRCs, the mid and negotiated header extension ids, the connection's SRTP session,
  the selected ICE candidate pair's socket), takes its NACKs from aiortc's sender and
  writes the counts aiortc's sender reports state; a :class:`PacketBuffer` is where it
  builds packets and protects them in place with libsrtp, without ``pylibsrtp``'s
  per-call wrapper (a fresh length cell, a copy in and a copy out per packet).

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
global ``SSL`` of ``aiortc.rtcdtlstransport``; for the fast path
``RTCRtpSender._ssrc``, ``_rtx_ssrc``, ``_retransmit``, ``__rtx_payload_type``,
``__packet_count``, ``__octet_count``, ``__rtp_timestamp`` and ``__ntp_timestamp``
(what ``_run_rtcp`` puts in sender reports), ``RTCDtlsTransport._tx_srtp``, and the
header extensions ``RTCRtpSender._run_rtp`` writes: mid and abs-send-time; for viewers'
send-only transceivers the module global ``RemoteBitrateEstimator`` of
``aiortc.rtcrtpreceiver``) and aioice
0.13 (``Connection.query_consent``; ``Connection._nominated``, the pair whose
``protocol.transport.sendto`` ``Connection.sendto`` uses) and pylibsrtp 1.0 (``Session._srtp``,
the libsrtp context, and its ``srtp_protect`` binding); :func:`check_compatible` fails
loudly at start-up if a different aiortc, aioice or pylibsrtp lays them out otherwise.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import inspect
import logging
import os
import random
import re
import socket
import struct
import time
import types
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from aioice import ice as aioice_ice
from aioice import stun
from aioice import turn as aioice_turn
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    clock,
    rtcdtlstransport,
    rtcpeerconnection,
    rtcrtpreceiver,
)
from aiortc.codecs import is_rtx
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtp import RtpPacket, pack_header_extensions
from aiortc.utils import uint16_add
from OpenSSL import SSL
from pylibsrtp import Error as SrtpError
from pylibsrtp import Session as SrtpSession
from pylibsrtp._binding import ffi as _srtp_ffi  # type: ignore[import-not-found]
from pylibsrtp._binding import lib as _srtp_lib

from livecast.ingest import _dtls

__all__ = [
    "DTLS_CIPHERS",
    "FrameSink",
    "PacketBuffer",
    "RelaySender",
    "SenderWire",
    "accept_any_dtls_peer",
    "bind_host_candidates_directly",
    "cache_host_addresses",
    "check_compatible",
    "close_peer",
    "forward_keyframe_requests",
    "keep_consent_while_receiving",
    "ntp_time",
    "peer_connection",
    "quiet_ice_logs",
    "send_only_transceiver",
    "send_pli",
    "srtp_context",
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


def forward_keyframe_requests(sender: RTCRtpSender, on_request: Callable[[], None]) -> None:
    """Call ``on_request`` when the viewer sends PLI or FIR for this sender."""
    sender._send_keyframe = on_request  # type: ignore[method-assign]


class RelaySender:
    """One viewer's aiortc sender, set up to send the relay's frames.

    Its "encoder" only passes on the payloads the relay packetized once
    (``_RTCRtpSender__encoder``). It sends one of the codecs it negotiated and may switch
    to another: aiortc sends every packet with the payload type of the first negotiated
    codec, read per packet from the codec object its send loop was started with; that
    object is made this sender's own copy, so :meth:`use` can point it, and the RTX
    payload type (``_RTCRtpSender__rtx_payload_type``), at another negotiated codec;
    called from the track's ``recv()``, it applies from the frame being returned on.
    A :class:`SenderWire` reads :attr:`payload_type` and :attr:`rtx_payload_type` here.

    :attr:`on_start`, if set, is called as the sender starts (DTLS is up, its RTCP task
    just began, its RTP loop has not pulled a frame yet), with a :class:`SenderWire`
    when the connection runs over a plain UDP pair, else None. Whoever takes the wire
    sends the RTP from then on, and the track must give the RTP loop no frames.
    """

    def __init__(self, sender: RTCRtpSender) -> None:
        if not hasattr(sender, _RTX_ATTR) or not hasattr(sender, _PACKET_COUNT_ATTR):
            raise RuntimeError("this aiortc version is not supported by the livecast relay")
        setattr(sender, _ENCODER_ATTR, _PACKER)
        self._sender = sender
        self._negotiated: list[RTCRtpCodecParameters] = []
        self._sending: RTCRtpCodecParameters | None = None
        self.payload_type = 0
        self.rtx_payload_type: int | None = None
        self.on_start: Callable[[SenderWire | None], None] | None = None
        self._start = sender.send
        sender.send = self._send  # type: ignore[method-assign]

    async def _send(self, parameters: RTCRtpSendParameters) -> None:
        first = self._sending is None and bool(parameters.codecs)
        if first:
            self._negotiated = list(parameters.codecs)
            self._sending = copy.copy(parameters.codecs[0])
            self.payload_type = self._sending.payloadType or 0
            self.rtx_payload_type = self._rtx_for(self.payload_type)
            parameters = dataclasses.replace(
                parameters, codecs=[self._sending, *self._negotiated[1:]]
            )
        await self._start(parameters)
        if first and self.on_start is not None:
            self.on_start(_direct_wire(self._sender, parameters, self))

    def use(self, mime_type: str) -> bool:
        """Send the negotiated codec ``mime_type`` (``"video/vp8"``) from now on; False
        when it was not negotiated (or the sender has not started)."""
        wanted = mime_type.lower()
        codec = next(
            (c for c in self._negotiated if not is_rtx(c) and c.mimeType.lower() == wanted),
            None,
        )
        sending = self._sending
        if codec is None or sending is None:
            return False
        sending.mimeType, sending.payloadType = codec.mimeType, codec.payloadType
        sending.parameters = codec.parameters
        self.payload_type = codec.payloadType or 0
        self.rtx_payload_type = self._rtx_for(self.payload_type)
        setattr(self._sender, _RTX_ATTR, self.rtx_payload_type)
        return True

    def _rtx_for(self, payload_type: int) -> int | None:
        return next(
            (
                c.payloadType
                for c in self._negotiated
                if is_rtx(c) and c.parameters.get("apt") == payload_type
            ),
            None,
        )


# (the pair's transport, whose sendto(data, address) sends, address, write_buffer_size(),
# a duplicate of its socket or None)
SendPath = tuple[Any, Any, Callable[[], int], socket.socket | None]


class SenderWire:
    """What sending a started relay sender's RTP directly takes, read from aiortc once.

    The relay's fan-out (:mod:`livecast.ingest.fanout`) writes the packets of a sender
    whose connection runs over a plain UDP candidate pair itself: its own header
    fields, the connection's SRTP session, and ``sendto`` on the selected pair's socket,
    as aiortc's ``RTCDtlsTransport._send_rtp`` and aioice's ``StunProtocol.send_data``
    would. aiortc keeps the rest: RTCP in both directions (its sender reports read the
    counters :meth:`report_sent` sets), NACKs (handed to :meth:`serve_retransmissions`'s
    function), PLI/FIR, DTLS, ICE consent.
    """

    __slots__ = (
        "_abs_send_time_id",
        "_connection",
        "_dtls",
        "_mid_id",
        "_pair",
        "_path",
        "_sender",
        "_session",
        "_socket",
        "codec",
        "extension_key",
        "mid",
        "pairs",
        "rtx_ssrc",
        "srtp",
        "ssrc",
    )

    def __init__(
        self,
        sender: RTCRtpSender,
        parameters: RTCRtpSendParameters,
        codec: RelaySender,
        dtls: RTCDtlsTransport,
        connection: aioice_ice.Connection,
    ) -> None:
        self._sender = sender
        self._dtls = dtls
        self._connection = connection
        # the connection's nominated pairs by component: ``pairs.get(1)`` is the one
        # :meth:`path` sends on, and a new one there means a new path
        self.pairs: dict[int, Any] = connection._nominated
        self._pair: object = None
        self._path: SendPath | None = None
        self._socket: socket.socket | None = None
        self.codec = codec
        self.ssrc: int = sender._ssrc
        self.rtx_ssrc: int = sender._rtx_ssrc
        self.mid: str | None = parameters.muxId or None
        # aiortc's send loop puts the mid and abs-send-time in every packet when they are
        # negotiated (the audio level only for raw audio, which the relay never has;
        # aiortc offers no transport-cc): the same two here, in its order
        negotiated = {ext.uri: ext.id for ext in parameters.headerExtensions}
        self._mid_id = negotiated.get(_MID_URI) if self.mid else None
        self._abs_send_time_id = negotiated.get(_ABS_SEND_TIME_URI)
        # viewers with equal keys get byte-equal extension blocks for the same send time
        self.extension_key = (self._mid_id, self.mid, self._abs_send_time_id)
        # the connection's one SRTP session (aiortc protects its RTCP with it too), held
        # here so that its libsrtp context lives as long as this wire
        self._session: SrtpSession = dtls._tx_srtp
        self.srtp = srtp_context(self._session)

    def path(self) -> SendPath | None:
        """How to send on the candidate pair the connection uses now (the peer may
        nominate another one later): ``(transport, address, write_buffer_size,
        socket)``; None once there is none (the connection closed). The same tuple
        while the pair stays. ``socket`` is a duplicate of the pair's UDP socket, for
        what the transport's ``sendto`` cannot do (several datagrams in one call,
        :func:`livecast.ingest.fanout.send_segmented`); None on a TURN pair. Write to
        it only while the transport has nothing queued, or datagrams overtake."""
        pair = self._connection._nominated.get(1)
        if pair is not self._pair:
            self._pair = pair
            self.close()
            if pair is not None:
                transport = pair.protocol.transport
                # a TURN pair's transport (the peer may nominate one later) has no queue
                queued = getattr(transport, "get_write_buffer_size", _nothing_queued)
                # audio frames are single packets: nothing to segment, no duplicate
                video = self._sender.kind == "video"
                self._socket = _duplicate(transport) if video and _is_plain_udp(pair) else None
                self._path = (transport, pair.remote_addr, queued, self._socket)
        return self._path

    def close(self) -> None:
        """Let go of the duplicate socket (the pair's own stays with aioice)."""
        self._path = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def extension_block(self, ntp_time: int) -> bytes:
        """The RTP header extension block (profile, length, elements) of a packet sent
        at ``ntp_time``, as ``RtpPacket.serialize`` writes it; b"" for none."""
        elements: list[tuple[int, bytes]] = []
        if self._mid_id and self.mid is not None:
            elements.append((self._mid_id, self.mid.encode("utf8")))
        if self._abs_send_time_id:
            abs_send_time = (ntp_time >> 14) & 0x00FFFFFF
            elements.append((self._abs_send_time_id, abs_send_time.to_bytes(3, "big")))
        if not elements:
            return b""
        profile, value = pack_header_extensions(elements)
        return struct.pack("!HH", profile, len(value) >> 2) + value

    def report_sent(self, packets: int, octets: int, rtp_timestamp: int, ntp_time: int) -> None:
        """What the next sender report says: RTP packets and payload octets sent so far,
        and the RTP timestamp of the last one with the NTP time it went out at."""
        sender: Any = self._sender  # the attributes _PACKET_COUNT_ATTR and the others name
        sender._RTCRtpSender__packet_count = packets
        sender._RTCRtpSender__octet_count = octets
        sender._RTCRtpSender__rtp_timestamp = rtp_timestamp
        sender._RTCRtpSender__ntp_timestamp = ntp_time

    def serve_retransmissions(self, retransmit: Callable[[int], None]) -> None:
        """Call ``retransmit(sequence_number)`` for each packet a NACK asks for again."""

        async def serve(sequence_number: int) -> None:
            retransmit(sequence_number)

        self._sender._retransmit = serve  # type: ignore[method-assign]


def srtp_context(session: SrtpSession) -> Any:
    """The libsrtp context (``srtp_t``) of ``session``, for :meth:`PacketBuffer.protect`
    and the protect calls that inline it; valid while ``session`` is referenced."""
    return session._srtp[0]


class PacketBuffer:
    """Memory that RTP packets are written into and SRTP-protected in place.

    ``data`` takes ``struct.pack_into`` and slice assignment, and a slice of it is a
    ``bytes``; ``view`` is a memoryview of it (slices without a copy, for a send that
    copies them at once). :meth:`protect` protects the ``length`` bytes at ``offset``
    and returns the protected length, as ``pylibsrtp.Session.protect`` would, minus its
    wrapper. A hot loop may inline it: ``length_cell[0] = length``, then
    ``srtp_protect(context, pointer + offset, length_cell)`` (0 when done), then
    ``length_cell[0]``. The packet's room must reach ``TRAILER`` bytes past its end.
    """

    __slots__ = ("data", "length_cell", "pointer", "size", "srtp_protect", "view")

    # the most libsrtp appends: SRTP_MAX_TAG_LEN + SRTP_MAX_MKI_LEN
    TRAILER = 16 + 128

    def __init__(self, size: int) -> None:
        self.size = size
        self.pointer: Any = _srtp_ffi.new("char[]", size)
        self.data: Any = _srtp_ffi.buffer(self.pointer)
        self.view = memoryview(self.data)
        self.length_cell: Any = _srtp_ffi.new("int *")
        self.srtp_protect: Callable[[Any, Any, Any], int] = _srtp_lib.srtp_protect

    def protect(self, context: Any, offset: int, length: int) -> int:
        if offset < 0 or offset + length + self.TRAILER > self.size:
            raise ValueError("packet does not fit the buffer")
        cell = self.length_cell
        cell[0] = length
        status = self.srtp_protect(context, self.pointer + offset, cell)
        if status:
            raise_srtp_error(status)
        return int(cell[0])


def raise_srtp_error(status: int) -> None:
    """Raise ``pylibsrtp.Error`` for a libsrtp status other than ok."""
    raise SrtpError(f"srtp_protect failed with status {status}")


def _nothing_queued() -> int:
    return 0


def _is_plain_udp(pair: Any) -> bool:
    """Whether ``pair`` sends on a UDP socket of this host (not through a TURN relay)."""
    return bool(
        pair.local_candidate.type != "relay"
        and pair.local_candidate.transport.lower() == "udp"
        and not isinstance(pair.protocol.transport, aioice_turn.TurnTransport)
    )


def _duplicate(transport: Any) -> socket.socket | None:
    """A non-blocking duplicate of ``transport``'s socket, or None if it has none or
    none can be made now (out of file descriptors: then the transport sends alone)."""
    raw = transport.get_extra_info("socket")
    if raw is None:
        return None
    try:
        duplicate = socket.socket(fileno=os.dup(raw.fileno()))
    except OSError as exc:
        log.warning("no duplicate of a viewer's socket (%s): its packets go one by one", exc)
        return None
    duplicate.setblocking(False)
    return duplicate


_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
_ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_PACKET_COUNT_ATTR = "_RTCRtpSender__packet_count"
_OCTET_COUNT_ATTR = "_RTCRtpSender__octet_count"
_RTP_TIMESTAMP_ATTR = "_RTCRtpSender__rtp_timestamp"
_NTP_TIMESTAMP_ATTR = "_RTCRtpSender__ntp_timestamp"


def _direct_wire(
    sender: RTCRtpSender, parameters: RTCRtpSendParameters, codec: RelaySender
) -> SenderWire | None:
    """A wire for ``sender`` if its connection is up on a plain UDP pair, else None
    (a TURN relay: aiortc's own path then sends, through the TURN client)."""
    dtls = sender.transport
    if dtls.state != "connected" or dtls._tx_srtp is None:
        return None
    connection = dtls.transport._connection
    pair = connection._nominated.get(1)
    if pair is None or not _is_plain_udp(pair):
        return None
    return SenderWire(sender, parameters, codec, dtls, connection)


def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> asyncio.Future[None]:
    return asyncio.ensure_future(receiver._send_rtcp_pli(media_ssrc))


_NTP_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


def _current_ntp_time() -> int:
    now = time.time()
    seconds = int(now)
    return ((seconds + _NTP_OFFSET) << 32) | int((now - seconds) * 4_294_967_296)


def _current_ms() -> int:
    return int((time.time() + _NTP_OFFSET) * 1000)


ntp_time = _current_ntp_time  # now, as a 64-bit NTP timestamp (aiortc's clock, faster)


class _SharedCertificate:
    """Stands in for ``RTCCertificate`` in ``aiortc.rtcpeerconnection`` while
    :func:`peer_connection` makes a connection: hands out the process's certificate."""

    def __init__(self) -> None:
        self._certificate: RTCCertificate | None = None
        self._made_at = 0.0

    def generateCertificate(self) -> RTCCertificate:
        now = time.monotonic()
        if self._certificate is None or now - self._made_at > _CERTIFICATE_TTL_S:
            self._certificate = _with_fingerprints_kept(RTCCertificate.generateCertificate())
            self._made_at = now
        return self._certificate


def _with_fingerprints_kept(certificate: RTCCertificate) -> RTCCertificate:
    """``certificate``, its fingerprints (every SDP answer has them) digested once
    rather than per answer."""
    fingerprints = certificate.getFingerprints()
    certificate.getFingerprints = lambda: list(fingerprints)  # type: ignore[method-assign]
    return certificate


# The certificate is renewed this often (aiortc's own are valid for 30 days).
_CERTIFICATE_TTL_S = 24 * 3600.0
_shared_certificate = _SharedCertificate()


def peer_connection(configuration: RTCConfiguration) -> RTCPeerConnection:
    """A peer connection with the process's DTLS certificate, made once a day rather
    than a key pair and a signed certificate per connection (aiortc 1.16 makes them in
    ``RTCPeerConnection.__init__`` through the module global ``RTCCertificate`` of
    ``aiortc.rtcpeerconnection``, swapped here for the call: nothing in between awaits)."""
    module: Any = rtcpeerconnection
    module.RTCCertificate = _shared_certificate
    try:
        return RTCPeerConnection(configuration)
    finally:
        module.RTCCertificate = RTCCertificate


def _no_estimator() -> None:
    return None


def send_only_transceiver(pc: RTCPeerConnection, kind: str) -> Any:
    """``pc.addTransceiver(kind, direction="sendonly")``, its receiver without aiortc's
    receive-side bandwidth estimator: a send-only transceiver never receives RTP, and
    the estimator's thousand-bucket rate window is a tenth of a millisecond per viewer
    (aiortc 1.16 makes it in ``RTCRtpReceiver.__init__`` through the module global
    ``RemoteBitrateEstimator`` of ``aiortc.rtcrtpreceiver``, swapped here for the call:
    nothing in between awaits, and a receiver without one skips it)."""
    module: Any = rtcrtpreceiver
    module.RemoteBitrateEstimator = _no_estimator
    try:
        return pc.addTransceiver(kind, direction="sendonly")
    finally:
        module.RemoteBitrateEstimator = _RemoteBitrateEstimator


_RemoteBitrateEstimator = RemoteBitrateEstimator


def quiet_ice_logs() -> None:
    """Keep aioice's ``INFO`` lines (one per state change of each candidate pair, several
    per connection, formatted and written on the event loop) out of the
    log unless its logger was given a level: sessions are logged once opened and once ended
    (:mod:`livecast.ingest.sessions`)."""
    ice_log = logging.getLogger(aioice_ice.__name__)
    if ice_log.level == logging.NOTSET:
        ice_log.setLevel(logging.WARNING)


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


_get_component_candidates = aioice_ice.Connection.get_component_candidates


async def _host_candidates(
    self: aioice_ice.Connection,
    component: int,
    addresses: list[str],
    timeout: int = 5,  # noqa: ASYNC109 (aioice's signature)
) -> list[Candidate]:
    """aioice's ``Connection.get_component_candidates`` without STUN or TURN servers:
    one host candidate per address, its UDP socket bound here and handed to the loop."""
    if self.stun_server or self.turn_server:
        return await _get_component_candidates(self, component, addresses, timeout)
    loop = asyncio.get_running_loop()
    candidates = []
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:
            log.info("could not open a UDP socket on %s: %s", address, exc)
            continue
        try:
            sock.setblocking(False)
            sock.bind((address, 0))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice_turn.UDP_SOCKET_BUFFER_SIZE)
            protocol: aioice_ice.StunProtocol
            _, protocol = await loop.create_datagram_endpoint(
                functools.partial(aioice_ice.StunProtocol, self), sock=sock
            )
        except OSError as exc:
            sock.close()
            log.info("could not bind to %s: %s", address, exc)
            continue
        except BaseException:
            sock.close()
            raise
        host, port = protocol.transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=host,
            port=port,
            type="host",
        )
        self._protocols.append(protocol)
        candidates.append(protocol.local_candidate)
    return candidates


def bind_host_candidates_directly() -> None:
    """Gather host candidates without a trip through the loop's address resolution.

    aioice opens each host candidate's socket with ``create_datagram_endpoint(
    local_addr=...)``, which resolves the (numeric) address on uvloop's thread pool
    first: a thread hand-off per address and connection, which a busy server pays in
    scheduling delays right in the answer to a viewer. Without STUN or TURN servers
    (host candidates only) the socket is bound here and handed to the loop as is; with
    them, aioice gathers as it does.
    """
    aioice_ice.Connection.get_component_candidates = _host_candidates  # type: ignore[method-assign]


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


# One system DTLS context per certificate and SRTP profile list, shared by every
# handshake that uses them (OpenSSL counts each connection's reference to it): loading
# the certificate and key into a new context was a tenth of answering a viewer.
_system_contexts: weakref.WeakKeyDictionary[RTCCertificate, dict[bytes, Any]] = (
    weakref.WeakKeyDictionary()
)


def _ssl_context_for_any_peer(self: RTCCertificate, srtp_profiles: list[Any]) -> Any:
    if _system_dtls is not None:
        profiles = b":".join(profile.openssl_profile for profile in srtp_profiles)
        contexts = _system_contexts.setdefault(self, {})
        context = contexts.get(profiles)
        if context is None:
            context = contexts[profiles] = _dtls.SystemDtlsContext(
                _system_dtls, self._cert, self._key, DTLS_CIPHERS, profiles
            )
        return context
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
    """Raise if this aiortc, aioice or pylibsrtp does not have what the hooks above replace."""
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
    problems += _fast_path_problems()
    if "RTCCertificate.generateCertificate()" not in inspect.getsource(RTCPeerConnection.__init__):
        problems.append("RTCPeerConnection certificate")
    problems += _join_path_problems()
    if problems:
        raise RuntimeError(
            "this aiortc/aioice version is not supported by the livecast relay: "
            + ", ".join(problems)
        )


def _join_path_problems() -> list[str]:
    """What :func:`send_only_transceiver` and the shared certificate rely on."""
    problems = []
    receiver_src = inspect.getsource(RTCRtpReceiver.__init__)
    if (
        "RemoteBitrateEstimator()" not in receiver_src
        or "self.__remote_bitrate_estimator is not None"
        not in inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
        or not callable(getattr(rtcrtpreceiver, "RemoteBitrateEstimator", None))
    ):
        problems.append("RTCRtpReceiver bitrate estimator")
    if "getFingerprints()" not in inspect.getsource(RTCDtlsTransport.getLocalParameters):
        problems.append("RTCDtlsTransport.getLocalParameters")
    gather_src = inspect.getsource(_get_component_candidates)
    if not all(
        part in gather_src
        for part in (
            "local_addr=(address, 0)",
            "turn.UDP_SOCKET_BUFFER_SIZE",
            'candidate_priority(component, "host")',
            "self._protocols += host_protocols",
            "if self.stun_server:",
            "if self.turn_server:",
        )
    ) or "self.get_component_candidates(" not in inspect.getsource(
        aioice_ice.Connection.gather_candidates
    ):
        problems.append("aioice Connection.get_component_candidates")
    return problems


def _fast_path_problems() -> list[str]:
    """What :class:`SenderWire` relies on that this aiortc or aioice lacks."""
    problems = []
    init_src = inspect.getsource(RTCRtpSender.__init__)
    rtcp_src = inspect.getsource(RTCRtpSender._run_rtcp)
    counters = ("__packet_count", "__octet_count", "__rtp_timestamp", "__ntp_timestamp")
    if not all(f"self.{name}" in init_src and f"self.{name}" in rtcp_src for name in counters):
        problems.append("sender report counters")
    if "self._ssrc" not in init_src or "self._rtx_ssrc" not in init_src:
        problems.append("sender SSRCs")
    if "await self._retransmit(seq)" not in inspect.getsource(RTCRtpSender._handle_rtcp_packet):
        problems.append("RTCRtpSender._retransmit")
    rtp_src = inspect.getsource(RTCRtpSender._run_rtp)
    written = set(re.findall(r"packet\.extensions\.(\w+) =", rtp_src))
    if written != {"abs_send_time", "mid", "audio_level"}:
        problems.append(f"RTP header extensions written ({', '.join(sorted(written))})")
    if "self._tx_srtp.protect(" not in inspect.getsource(RTCDtlsTransport._send_rtp):
        problems.append("RTCDtlsTransport._send_rtp")
    if "self._srtp = ffi.gc(srtp" not in inspect.getsource(SrtpSession.__init__) or (
        "lib.srtp_protect," not in inspect.getsource(SrtpSession.protect)
    ):
        problems.append("pylibsrtp Session")
    send_src = inspect.getsource(aioice_ice.Connection.sendto)
    data_src = inspect.getsource(aioice_ice.StunProtocol.send_data)
    if "self._nominated.get(component)" not in send_src or (
        "self.transport.sendto(data, addr)" not in data_src
    ):
        problems.append("aioice Connection.sendto")
    return problems


async def close_peer(pc: RTCPeerConnection) -> None:
    """Close ``pc``; cancelling the caller leaves the close running to its end."""
    await asyncio.shield(pc.close())
