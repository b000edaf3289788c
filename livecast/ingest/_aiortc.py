"""The few places where the relay reaches into aiortc, kept together.

aiortc decodes every received frame and encodes every sent one. The relay needs neither:

* on a publisher's receiver, :func:`tap_receiver` swaps the jitter buffer for one that
  hands each reassembled encoded frame to the relay and never to the decoder thread
  (which then idles until the receiver stops);
* on a viewer's sender, :func:`install_packer` sets the sender's "encoder" to one that
  returns payloads the relay packetized once for every viewer, and
  :func:`forward_keyframe_requests` routes the viewer's PLI/FIR to the relay instead of
  to an encoder that does not exist.

These touch private attributes of aiortc 1.16 (``_RTCRtpReceiver__jitter_buffer``,
``_RTCRtpSender__encoder``); :func:`check_compatible` fails loudly at start-up if a
different aiortc lays them out otherwise.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from aioice import ice as aioice_ice
from aiortc import RTCRtpReceiver, RTCRtpSender, clock
from aiortc.codecs import is_rtx
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

__all__ = [
    "FrameSink",
    "cache_host_addresses",
    "check_compatible",
    "forward_keyframe_requests",
    "install_packer",
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


def check_compatible() -> None:
    """Raise if this aiortc does not have the attributes the hooks above replace."""
    import inspect

    receiver_src = inspect.getsource(RTCRtpReceiver.__init__)
    sender_src = inspect.getsource(RTCRtpSender.__init__)
    if "self.__jitter_buffer" not in receiver_src or "self.__encoder" not in sender_src:
        raise RuntimeError("this aiortc version is not supported by the livecast relay")
    if not hasattr(RTCRtpSender, "_send_keyframe") or not hasattr(RTCRtpReceiver, "_send_rtcp_pli"):
        raise RuntimeError("this aiortc version is not supported by the livecast relay")
