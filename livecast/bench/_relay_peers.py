"""The peers of ``livecast bench relay``, each run in its own process.

The publisher plays a pre-encoded clip in real time; viewers count what they receive
from RTP headers, decrypting and reassembling only their first keyframe.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import dataclasses
import fractions
import importlib
import math
import os
import time
from typing import Any

__all__ = [
    "CLIP_FRAMES",
    "FPS",
    "HEIGHT",
    "WIDTH",
    "JoinPlan",
    "Signals",
    "publisher_main",
    "viewers_main",
]

WIDTH, HEIGHT, FPS = 640, 360, 30
CLIP_FRAMES = 60
VIDEO_CLOCK = 90_000


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _run_in_loop(coro: Any) -> None:
    loop = _new_loop()
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()


async def _wait_event(event: Any) -> None:
    """Wait for a multiprocessing event without blocking the loop."""
    await asyncio.to_thread(event.wait)


# -- publisher ------------------------------------------------------------------------


def _encode_clip(codec: str, bitrate: int) -> list[tuple[bytes, bool]]:
    """Encode a 2 s moving test pattern once: (packet bytes, keyframe) per frame."""
    import av

    name = "libx264" if codec == "h264" else "libvpx"
    encoder: Any = av.CodecContext.create(name, "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.framerate = fractions.Fraction(FPS, 1)
    encoder.bit_rate = bitrate
    encoder.gop_size = CLIP_FRAMES
    if codec == "h264":
        encoder.profile = "Baseline"
        # one keyframe per loop (2 s), as encoders set up for streaming send: no scene cuts
        encoder.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "bf": "0",
            "x264-params": "scenecut=0",
        }
    else:
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    # a sliding gradient with a moving patch of noise: about 1 Mbit/s at 640x360
    rng = os.urandom(WIDTH * HEIGHT * 2)
    row = bytes(x * 255 // WIDTH for x in range(WIDTH))
    chroma = bytes([128]) * (WIDTH * HEIGHT // 4)
    packets: list[tuple[bytes, bool]] = []
    for index in range(CLIP_FRAMES + 8):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        shift = (index * 6) % WIDTH
        luma = bytearray((row[shift:] + row[:shift]) * HEIGHT)
        left, top = (index * 9) % (WIDTH - 160), (index * 5) % (HEIGHT - 120)
        for y in range(120):
            noise = (index * 7919 + y * 160) % (WIDTH * HEIGHT)
            start = (top + y) * WIDTH + left
            luma[start : start + 160] = rng[noise : noise + 160]
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = index
        for packet in encoder.encode(frame):
            packets.append((bytes(packet), bool(packet.is_keyframe)))
    for packet in encoder.encode(None):
        packets.append((bytes(packet), bool(packet.is_keyframe)))
    packets = packets[:CLIP_FRAMES]
    if not packets or not packets[0][1]:
        raise RuntimeError("the clip does not start with a keyframe")
    return packets


def _packets_per_second(codec: str, clip: list[tuple[bytes, bool]], audio: bool) -> float:
    """RTP packets per second one viewer receives at the full frame rate."""
    from aiortc.codecs.h264 import H264Encoder
    from aiortc.codecs.vpx import Vp8Encoder

    if codec == "h264":
        count = sum(len(H264Encoder._packetize(H264Encoder._split_bitstream(p))) for p, _ in clip)
    else:
        count = sum(len(Vp8Encoder._packetize(p, 0)) for p, _ in clip)
    return count * FPS / len(clip) + (50 if audio else 0)


def _encode_audio() -> list[bytes]:
    """One second of a 440 Hz tone as 20 ms Opus packets."""
    import av

    encoder: Any = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = 48_000
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.bit_rate = 64_000

    tone = array.array(
        "h", (int(8000 * math.sin(2 * math.pi * 440 * i / 48_000)) for i in range(960))
    )
    samples = array.array("h")
    for value in tone:
        samples.extend((value, value))
    packets: list[bytes] = []
    for index in range(50):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.sample_rate = 48_000
        frame.planes[0].update(samples.tobytes())
        frame.pts = index * 960
        packets.extend(bytes(p) for p in encoder.encode(frame))
    return packets


def publisher_main(
    base: str,
    stream_id: str,
    token: str,
    codec: str,
    bitrate: int,
    audio: bool,
    honour_keyframe_requests: bool,
    stop: Any,
    results: Any,
) -> None:
    try:
        clip = _encode_clip(codec, bitrate)
        sound = _encode_audio() if audio else []
        kbps = round(sum(len(p) for p, _ in clip) * 8 * FPS / len(clip) / 1000, 1)
        full_rate_pps = _packets_per_second(codec, clip, len(sound) > 0)
        _run_in_loop(
            _publish(
                base,
                stream_id,
                token,
                codec,
                clip,
                sound,
                kbps,
                full_rate_pps,
                honour_keyframe_requests,
                stop,
                results,
            )
        )
    except Exception as exc:
        results.put(("error", f"publisher: {type(exc).__name__}: {exc}"))


async def _publish(
    base: str,
    stream_id: str,
    token: str,
    codec: str,
    clip: list[tuple[bytes, bool]],
    sound: list[bytes],
    kbps: float,
    full_rate_pps: float,
    honour_keyframe_requests: bool,
    stop: Any,
    results: Any,
) -> None:
    import av
    from aiortc import (
        MediaStreamTrack,
        RTCConfiguration,
        RTCPeerConnection,
        RTCRtpSender,
    )

    from livecast.bench._server import whip_publish
    from livecast.ingest._aiortc import forward_keyframe_requests

    class LoopedTrack(MediaStreamTrack):
        """Plays pre-encoded packets in real time, looping; restarts at the keyframe
        when the relay asks for one."""

        def __init__(
            self, kind: str, packets: list[bytes], clock: int, step: int, period: float
        ) -> None:
            super().__init__()
            self.kind = kind
            self._packets = packets
            self._time_base = fractions.Fraction(1, clock)
            self._step = step
            self._period = period
            self._index = 0
            self._pts = 0
            self._start: float | None = None
            self._sent = 0

        def restart(self) -> None:
            self._index = 0

        async def recv(self) -> Any:
            loop = asyncio.get_running_loop()
            if self._start is None:
                self._start = loop.time()
            due = self._start + self._sent * self._period
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            packet = av.Packet(self._packets[self._index])
            packet.pts = self._pts
            packet.time_base = self._time_base
            self._index = (self._index + 1) % len(self._packets)
            self._pts += self._step
            self._sent += 1
            return packet

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = LoopedTrack("video", [p for p, _ in clip], VIDEO_CLOCK, VIDEO_CLOCK // FPS, 1 / FPS)
    sender = pc.addTransceiver(video, direction="sendonly").sender
    # an encoder that ignores keyframe requests (OBS, FFmpeg) keeps its 2 s interval
    forward_keyframe_requests(sender, video.restart if honour_keyframe_requests else _ignore)
    mime = "video/h264" if codec == "h264" else "video/vp8"
    caps = [
        c
        for c in RTCRtpSender.getCapabilities("video").codecs
        if c.mimeType.lower() in (mime, "video/rtx")
    ]
    pc.getTransceivers()[0].setCodecPreferences(caps)
    if sound:
        pc.addTransceiver(LoopedTrack("audio", sound, 48_000, 960, 0.02), direction="sendonly")
    await whip_publish(pc, base, stream_id, token)
    results.put(("publisher_ready", {"kbps": kbps, "full_rate_pps": full_rate_pps}))
    await _wait_event(stop)
    await pc.close()


def _ignore() -> None:
    pass


# -- viewers --------------------------------------------------------------------------

# Half a frame interval of the 90 kHz video clock: consecutive frames further apart than
# this came at the live pace, closer ones are a catch-up burst (1 ms apart).
_LIVE_STEP = 90_000 // FPS // 2


class _HeaderCounter:
    """One viewer's receive path, reduced to reading RTP headers.

    SRTP leaves the RTP header in the clear, so packets, losses (sequence gaps) and
    frames (the marker bit closes a video frame) are counted without decrypting or
    reassembling anything: the load generator stays far cheaper than the server.
    Only until the viewer's first complete keyframe are its video packets decrypted
    and depacketized (:attr:`decrypting`), to tell when it could first decode a
    picture. RTCP is still decrypted and handled by aiortc.
    """

    def __init__(self, video_payload_types: set[int], codec: str, record: bool) -> None:
        self.video_pts = video_payload_types
        self.codec = codec
        self.posted_at = 0.0
        self.first_frame_ms: float | None = None  # the first complete keyframe
        self.caught_up_ms: float | None = None  # the newest frame at join time
        self.answer_ms = 0.0
        self.connected_ms = 0.0
        self.incomplete_keyframes = 0  # keyframes that arrived incomplete before that
        self.frames = 0
        self.packets = 0
        # arrival times (monotonic) of every frame, when asked for (viewers that watch)
        self.frame_times: list[float] | None = [] if record else None
        self.got_first = asyncio.Event()
        self._seq: dict[int, list[int]] = {}  # ssrc -> [first extended seq, highest, received]
        self._pending: dict[int, bytes] = {}  # the frame being assembled: sequence -> payload
        self._pending_ts: int | None = None
        self._last_ts: int | None = None
        self._last_frame_at = 0.0

    @property
    def decrypting(self) -> bool:
        return self.first_frame_ms is None

    async def handle(self, data: bytes, arrival_time_ms: int) -> None:
        self.receive(data)

    def receive(self, data: bytes) -> None:
        """Count one RTP packet (decrypted if :attr:`decrypting` a video one)."""
        if len(data) < 12:
            return
        self.packets += 1
        second = data[1]
        seq = (data[2] << 8) | data[3]
        ssrc = int.from_bytes(data[8:12], "big")
        state = self._seq.get(ssrc)
        if state is None:
            self._seq[ssrc] = [seq, seq, 1]
        else:
            highest = state[1]
            delta = (seq - highest) & 0xFFFF
            if 0 < delta < 0x8000:
                state[1] = highest + delta
            state[2] += 1
        if (second & 0x7F) not in self.video_pts:
            return
        timestamp = int.from_bytes(data[4:8], "big")
        if self.first_frame_ms is None:
            self._assemble(data, seq, timestamp)
        if second & 0x80:
            now = time.monotonic()
            self.frames += 1
            if self.frame_times is not None:
                self.frame_times.append(now)
            if self.first_frame_ms is None and self._keyframe_complete(seq, timestamp):
                self.first_frame_ms = (now - self.posted_at) * 1000
                self.got_first.set()
            elif self.caught_up_ms is None and self.first_frame_ms is not None:
                last = self._last_ts
                if last is not None and (timestamp - last) & 0xFFFFFFFF > _LIVE_STEP:
                    self.caught_up_ms = (self._last_frame_at - self.posted_at) * 1000
            self._last_ts = timestamp
            self._last_frame_at = now

    def _assemble(self, packet: bytes, seq: int, timestamp: int) -> None:
        """Keep the (decrypted) payload of a packet of the frame being assembled."""
        if timestamp != self._pending_ts:
            self._pending = {}
            self._pending_ts = timestamp
        csrc = packet[0] & 0x0F
        offset = 12 + 4 * csrc
        if packet[0] & 0x10:  # header extension
            length = int.from_bytes(packet[offset + 2 : offset + 4], "big")
            offset += 4 + 4 * length
        end = len(packet) - (packet[-1] if packet[0] & 0x20 else 0)
        self._pending[seq] = packet[offset:end]

    def _keyframe_complete(self, last_seq: int, timestamp: int) -> bool:
        """Whether the frame that ``last_seq`` closes is a keyframe with every packet."""
        from aiortc.codecs.h264 import H264PayloadDescriptor
        from aiortc.codecs.vpx import VpxPayloadDescriptor

        from livecast.ingest.relay import is_keyframe

        pending, self._pending = self._pending, {}
        if timestamp != self._pending_ts or not pending:
            return False
        first = max(pending, key=lambda seq: (last_seq - seq) & 0xFFFF)
        count = ((last_seq - first) & 0xFFFF) + 1
        payloads = [pending.get((first + i) & 0xFFFF) for i in range(count)]
        data = bytearray()
        try:
            for index, payload in enumerate(payloads):
                if payload is None:
                    raise ValueError("a packet is missing")
                if self.codec == "h264":
                    h264, part = H264PayloadDescriptor.parse(payload)
                    if index == 0 and not h264.first_fragment:
                        raise ValueError("the frame's first packet is missing")
                else:
                    vp8, part = VpxPayloadDescriptor.parse(payload)
                    if index == 0 and not (vp8.partition_start and vp8.partition_id == 0):
                        raise ValueError("the frame's first packet is missing")
                data += part
        except ValueError:
            self.incomplete_keyframes += 1
            return False
        return is_keyframe(self.codec, bytes(data))

    @property
    def lost(self) -> int:
        return sum(
            max(0, highest - first + 1 - received)
            for first, highest, received in self._seq.values()
        )


class _ClearRtp:
    """Stands in for the receive SRTP session: RTCP is unprotected; RTP is passed as is,
    but for the video packets the counter still decrypts (its first keyframe's)."""

    def __init__(self, session: Any, counter: _HeaderCounter) -> None:
        self._session = session
        self._counter = counter

    def unprotect(self, data: bytes) -> bytes:
        counter = self._counter
        if counter.decrypting and len(data) > 12 and data[1] & 0x7F in counter.video_pts:
            return bytes(self._session.unprotect(data))
        return data

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return bytes(self._session.unprotect_rtcp(data))


def _count_rtp_on_arrival(connection: Any, clear: _ClearRtp, counter: _HeaderCounter) -> None:
    """Count RTP as its datagram arrives on any of the connection's sockets, before
    aioice tries it as STUN and queues it for the DTLS transport's receive loop:
    what is left of a viewer's receive path per packet. STUN, DTLS and RTCP (RFC 7983:
    the first byte, then the RTCP packet types) go the usual way."""
    for protocol in connection._protocols:

        def arrived(data: bytes, addr: Any, usual: Any = protocol.datagram_received) -> None:
            if 127 < data[0] < 192 and not 191 < data[1] < 224:
                counter.receive(clear.unprotect(data))
            else:
                usual(data, addr)

        protocol.datagram_received = arrived


@dataclasses.dataclass(frozen=True)
class JoinPlan:
    """How one viewer process joins its viewers.

    ``storm_seconds`` 0: as fast as ``concurrency`` joins at a time allow, offers made
    as they go. Otherwise a storm: every peer connection and offer is made first (the
    process then puts ``viewers_prepared``), and once ``go`` is set each viewer POSTs at
    its own moment, ``go_at`` (monotonic) plus its slot: the viewers of all ``stride``
    processes spread evenly over ``storm_seconds``, this process's being slots
    ``offset``, ``offset + stride``, ... of ``total``. ``record_frames``: report every
    frame's arrival time (the viewers that watch through a storm)."""

    count: int
    concurrency: int = 8
    storm_seconds: float = 0.0
    offset: int = 0
    stride: int = 1
    total: int = 1
    record_frames: bool = False


@dataclasses.dataclass(frozen=True)
class Signals:
    """The events and shared values the orchestrator drives viewer processes with."""

    go: Any  # a storm's viewers start joining
    go_at: Any  # multiprocessing.Value("d"): when the storm's first slot is
    start: Any  # the measured window starts
    window_over: Any
    stop: Any


def viewers_main(base: str, stream_id: str, codec: str, plan: JoinPlan, signals: Signals,
                 results: Any) -> None:  # fmt: skip
    try:
        _run_in_loop(_watch(base, stream_id, codec, plan, signals, results))
    except Exception as exc:
        results.put(("error", f"viewers: {type(exc).__name__}: {exc}"))


# A viewer that has no complete keyframe this long after its POST failed to join.
_FIRST_FRAME_TIMEOUT_S = 30.0


async def _watch(
    base: str, stream_id: str, codec: str, plan: JoinPlan, signals: Signals, results: Any
) -> None:
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
    from aiortc.sdp import SessionDescription

    # loaded now, not by the first keyframe a viewer checks (_keyframe_complete)
    importlib.import_module("aiortc.codecs.h264")
    importlib.import_module("aiortc.codecs.vpx")
    importlib.import_module("livecast.ingest.relay")

    counters: list[_HeaderCounter] = []
    pcs: list[RTCPeerConnection] = []
    drains: list[asyncio.Future[None]] = []
    gate = asyncio.Semaphore(plan.concurrency)

    async def drain(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()

    async def offer() -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(pc)
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        pc.on("track", lambda track: drains.append(asyncio.ensure_future(drain(track))))
        await pc.setLocalDescription(await pc.createOffer())
        return pc

    async def post(http: aiohttp.ClientSession, pc: RTCPeerConnection) -> _HeaderCounter:
        """POST the offer, take the answer; the counter then waits for frames."""
        posted_at = time.monotonic()
        async with http.post(
            f"{base}/whep/{stream_id}",
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as resp:
            if resp.status != 201:
                raise RuntimeError(f"WHEP answered {resp.status}: {await resp.text()}")
            answer = await resp.text()
        video_pts: set[int] = {
            c.payloadType
            for media in SessionDescription.parse(answer).media
            if media.kind == "video"
            for c in media.rtp.codecs
            if c.mimeType.lower() != "video/rtx" and c.payloadType is not None
        }
        counter = _HeaderCounter(video_pts, codec, plan.record_frames)
        counter.posted_at = posted_at
        counter.answer_ms = (time.monotonic() - posted_at) * 1000
        counters.append(counter)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        transports = {id(t.receiver.transport): t.receiver.transport for t in pc.getTransceivers()}
        for transport in transports.values():

            def on_state(transport: Any = transport) -> None:
                if transport.state == "connected" and not isinstance(transport._rx_srtp, _ClearRtp):
                    counter.connected_ms = (time.monotonic() - counter.posted_at) * 1000
                    clear = transport._rx_srtp = _ClearRtp(transport._rx_srtp, counter)
                    transport._handle_rtp_data = counter.handle
                    _count_rtp_on_arrival(transport.transport._connection, clear, counter)

            transport.on("statechange", on_state)
        return counter

    async def first_frame(counter: _HeaderCounter) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(counter.got_first.wait(), _FIRST_FRAME_TIMEOUT_S)

    async def join_gated(http: aiohttp.ClientSession) -> None:
        async with gate:
            counter = await post(http, await offer())
        await first_frame(counter)

    async def join_at(http: aiohttp.ClientSession, pc: RTCPeerConnection, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        await first_frame(await post(http, pc))

    # a connection per viewer, as from many browsers: with --workers the kernel spreads
    # connections, not requests, over the workers
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        if plan.storm_seconds <= 0:
            await asyncio.gather(*(join_gated(http) for _ in range(plan.count)))
        else:
            prepared = [await offer() for _ in range(plan.count)]
            results.put(("viewers_prepared", {}))
            await _wait_event(signals.go)
            go_at = signals.go_at.value
            slot = plan.storm_seconds / plan.total
            await asyncio.gather(
                *(
                    join_at(http, pc, go_at + (plan.offset + i * plan.stride) * slot)
                    for i, pc in enumerate(prepared)
                )
            )
    results.put(
        (
            "viewers_ready",
            {
                "first_frame_ms": [c.first_frame_ms for c in counters],
                "first_frame_at": [
                    None if c.first_frame_ms is None else c.posted_at + c.first_frame_ms / 1000
                    for c in counters
                ],
                "caught_up_ms": [c.caught_up_ms for c in counters],
                "answer_ms": [c.answer_ms for c in counters],
                "connected_ms": [c.connected_ms for c in counters],
                "incomplete_keyframes": sum(c.incomplete_keyframes for c in counters),
            },
        )
    )

    await _wait_event(signals.start)
    frames0 = [c.frames for c in counters]
    packets0 = sum(c.packets for c in counters)
    lost0 = sum(c.lost for c in counters)
    await _wait_event(signals.window_over)
    frames = [c.frames - f0 for c, f0 in zip(counters, frames0, strict=True)]
    results.put(
        (
            "viewers_report",
            {
                "frames": frames,
                "packets": sum(c.packets for c in counters) - packets0,
                "lost": sum(c.lost for c in counters) - lost0,
                "frame_times": [c.frame_times for c in counters if c.frame_times is not None],
            },
        )
    )
    await _wait_event(signals.stop)
    for task in drains:
        task.cancel()
    await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)
