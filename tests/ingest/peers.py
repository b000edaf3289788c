"""Real aiortc peers for the ingest tests: a publisher that draws a frame counter into
its video, and viewers that decode it back."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription

from tests.conftest import Client, bearer

WIDTH, HEIGHT = 160, 96
_COLS, _ROWS = 8, 2
_BLOCK_W, _BLOCK_H = WIDTH // _COLS, HEIGHT // _ROWS
_BITS = _COLS * _ROWS
_WHITE = bytes([235]) * _BLOCK_W
_BLACK = bytes([16]) * _BLOCK_W
_CHROMA = bytes([128]) * (WIDTH * HEIGHT // 4)


def draw_counter(counter: int) -> av.VideoFrame:
    """A frame whose 16 blocks spell ``counter`` in binary (white = 1).

    ``whip_muxer_publisher.py`` draws the same frame with its own copy of this code: it
    runs in interpreters that have PyAV and nothing of this repository."""
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    rows = []
    for row in range(_ROWS):
        line = b"".join(
            _WHITE if counter >> (row * _COLS + col) & 1 else _BLACK for col in range(_COLS)
        )
        rows.append(line * _BLOCK_H)
    frame.planes[0].update(b"".join(rows))
    frame.planes[1].update(_CHROMA)
    frame.planes[2].update(_CHROMA)
    return frame


def read_counter(frame: av.VideoFrame) -> int:
    frame = frame.reformat(format="yuv420p") if frame.format.name != "yuv420p" else frame
    plane = frame.planes[0]
    data = bytes(plane)
    stride = plane.line_size
    sx, sy = frame.width / WIDTH, frame.height / HEIGHT
    value = 0
    for bit in range(_BITS):
        row, col = divmod(bit, _COLS)
        x = int((col * _BLOCK_W + _BLOCK_W // 2) * sx)
        y = int((row * _BLOCK_H + _BLOCK_H // 2) * sy)
        if data[y * stride + x] > 128:
            value |= 1 << bit
    return value


class CounterTrack(VideoStreamTrack):
    """30 fps video whose frame ``n`` shows ``n + start`` (mod 2**16)."""

    def __init__(self, start: int = 0) -> None:
        super().__init__()
        self.counter = start
        self.sent = 0
        self.sent_at: list[float] = []  # loop time each frame was handed to the encoder

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        self.sent_at.append(asyncio.get_running_loop().time())
        frame = draw_counter(self.counter & 0xFFFF)
        frame.pts = pts
        frame.time_base = time_base
        self.counter += 1
        self.sent += 1
        return frame


class FixedGopTrack(MediaStreamTrack):
    """30 fps H.264 whose frame ``n`` shows ``n``, encoded beforehand with a keyframe
    every ``gop`` frames and never another: an encoder that ignores keyframe requests,
    as OBS's and FFmpeg's do (the sender packs these packets as they are)."""

    kind = "video"

    def __init__(self, gop: int, frames: int) -> None:
        super().__init__()
        self._packets = _encode_fixed_gop(gop, frames)
        self.counter = 0
        self.sent = 0
        self.sent_at: list[float] = []
        self._start = 0.0

    async def recv(self) -> av.Packet[Any]:
        if self.counter >= len(self._packets):
            self.stop()
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if not self.sent_at:
            self._start = loop.time()
        delay = self._start + self.counter / 30 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self._packets[self.counter])
        packet.pts = self.counter * 3000
        packet.time_base = fractions.Fraction(1, 90_000)
        self.sent_at.append(loop.time())
        self.counter += 1
        self.sent += 1
        return packet


def _encode_fixed_gop(gop: int, frames: int) -> list[bytes]:
    encoder = av.CodecContext.create("libx264", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 30)
    encoder.profile = "Baseline"
    encoder.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        # keyframes on the fixed interval only, each with its SPS/PPS
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1",
    }
    packets: list[bytes] = []
    for index in range(frames):
        frame = draw_counter(index)
        frame.pts = index
        packets.extend(bytes(p) for p in encoder.encode(frame))
    packets.extend(bytes(p) for p in encoder.encode(None))
    assert len(packets) == frames
    return packets


def _prefer(pc: RTCPeerConnection, kind: str, mime: str) -> None:
    codecs = [
        c
        for c in RTCRtpSender.getCapabilities(kind).codecs
        if c.mimeType.lower() in (mime.lower(), f"{kind}/rtx")
    ]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind:
            transceiver.setCodecPreferences(codecs)


async def _offer(pc: RTCPeerConnection) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


@dataclass
class Publisher:
    pc: RTCPeerConnection
    video: CounterTrack | FixedGopTrack
    location: str

    async def close(self) -> None:
        await self.pc.close()


async def publish(
    client: Client,
    stream_id: str,
    token: str,
    *,
    codec: str = "video/H264",
    start: int = 0,
    audio: bool = True,
    endpoint: str | None = None,
    video: CounterTrack | FixedGopTrack | None = None,
) -> Publisher:
    """Publish through ``client``'s WHIP endpoint of the stream, or the absolute URL
    ``endpoint`` (another node's, say); ``video``: a track of the test's own."""
    pc = new_pc()
    video = CounterTrack(start) if video is None else video
    pc.addTransceiver(video, direction="sendonly")
    if audio:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    _prefer(pc, "video", codec)
    offer = await _offer(pc)
    headers = {**bearer(token), "Content-Type": "application/sdp"}
    if endpoint is None:
        resp = await client.post(f"/whip/{stream_id}", data=offer, headers=headers)
    else:
        resp = await client.session.post(endpoint, data=offer, headers=headers)
    if resp.status != 201:
        await pc.close()
        raise AssertionError(f"WHIP answered {resp.status}: {await resp.text()}")
    await pc.setRemoteDescription(RTCSessionDescription(await resp.text(), "answer"))
    return Publisher(pc, video, resp.headers["Location"])


@dataclass
class Viewer:
    pc: RTCPeerConnection
    location: str
    counters: list[int] = field(default_factory=list)
    pts: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # loop time of each decoded frame
    audio_frames: int = 0
    video_codec: str = ""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def frames(self, count: int, within: float = 20.0) -> list[int]:
        """Wait until ``count`` video frames were decoded; the counters read from them."""
        return await self.until(lambda: len(self.counters) >= count, within)

    async def until(self, done: Callable[[], bool], within: float = 20.0) -> list[int]:
        """Wait until ``done()`` holds after some decoded frame; the counters so far."""

        async def enough() -> None:
            while not done():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(enough(), within)
        return list(self.counters)

    async def audio(self, count: int, within: float = 20.0) -> None:
        async def enough() -> None:
            while self.audio_frames < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(enough(), within)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


async def view(client: Client, stream_id: str, *, headers: dict[str, str] | None = None) -> Viewer:
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    viewer = Viewer(pc, "")

    async def consume(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    viewer.counters.append(read_counter(frame))
                    viewer.pts.append(frame.pts or 0)
                    viewer.arrivals.append(asyncio.get_running_loop().time())
                else:
                    viewer.audio_frames += 1
                viewer._changed.set()

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        viewer._tasks.append(asyncio.ensure_future(consume(track)))

    offer = await _offer(pc)
    resp = await client.post(
        f"/whep/{stream_id}",
        data=offer,
        headers={**(headers or {}), "Content-Type": "application/sdp"},
    )
    if resp.status != 201:
        await pc.close()
        raise AssertionError(f"WHEP answered {resp.status}: {await resp.text()}")
    answer = await resp.text()
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    viewer.location = resp.headers["Location"]
    viewer.video_codec = first_video_codec(answer)
    return viewer


def first_video_codec(answer: str) -> str:
    """The codec a sender sends first: the first of the answer's video section
    ("h264", "vp8"; "" with no video)."""
    for media in SessionDescription.parse(answer).media:
        if media.kind == "video" and media.rtp.codecs:
            return media.rtp.codecs[0].mimeType.split("/")[1].lower()
    return ""


def in_order(counters: list[int]) -> bool:
    return all(b > a for a, b in itertools.pairwise(counters))


# -- what a viewer's connection receives, below the decoder -------------------------------


def _protocols(pc: RTCPeerConnection) -> list[Any]:
    """The ICE agent's sockets (aioice ``StunProtocol``s) of ``pc``'s one transport."""
    transport = pc.getTransceivers()[0].receiver.transport.transport
    return list(transport._connection._protocols)


def drop_incoming(pc: RTCPeerConnection, drop: Callable[[bytes], bool]) -> None:
    """Make ``pc`` lose every datagram ``drop(datagram)`` picks, as a lossy network
    would: before ICE, DTLS or SRTP see it. (RTP headers travel in the clear.)"""
    for protocol in _protocols(pc):
        received = protocol.datagram_received

        def filtered(data: bytes, addr: Any, received: Any = received) -> None:
            if not drop(data):
                received(data, addr)

        protocol.datagram_received = filtered


def rtp_header(datagram: bytes) -> tuple[int, int, int] | None:
    """``(payload type, sequence number, SSRC)`` of an RTP datagram; None for anything
    else (STUN, DTLS, RTCP)."""
    if len(datagram) < 12 or not 128 <= datagram[0] < 192 or 192 <= datagram[1] <= 223:
        return None
    return datagram[1] & 0x7F, int.from_bytes(datagram[2:4]), int.from_bytes(datagram[8:12])


@dataclass
class SenderReport:
    ssrc: int
    packets: int  # the SR's packet count
    octets: int  # the SR's octet count
    rtp_timestamp: int
    packets_received: int  # RTP packets of that SSRC the viewer had received by then
    octets_received: int  # and their payload bytes


@dataclass
class ReceiveLog:
    """The decrypted RTP and the sender reports ``pc``'s receivers were handed."""

    packets: dict[int, int] = field(default_factory=dict)  # SSRC -> RTP packets
    octets: dict[int, int] = field(default_factory=dict)  # SSRC -> payload bytes
    timestamps: dict[int, set[int]] = field(default_factory=dict)  # SSRC -> RTP timestamps
    reports: list[SenderReport] = field(default_factory=list)


def log_receiving(pc: RTCPeerConnection) -> ReceiveLog:
    from aiortc.rtp import RtcpSrPacket, RtpPacket

    log = ReceiveLog()
    for transceiver in pc.getTransceivers():
        receiver: Any = transceiver.receiver
        handle_rtp, handle_rtcp = receiver._handle_rtp_packet, receiver._handle_rtcp_packet

        async def on_rtp(packet: RtpPacket, arrival_time_ms: int, handle: Any = handle_rtp) -> None:
            ssrc = packet.ssrc
            log.packets[ssrc] = log.packets.get(ssrc, 0) + 1
            log.octets[ssrc] = log.octets.get(ssrc, 0) + len(packet.payload)
            log.timestamps.setdefault(ssrc, set()).add(packet.timestamp)
            await handle(packet, arrival_time_ms=arrival_time_ms)

        async def on_rtcp(packet: Any, handle: Any = handle_rtcp) -> None:
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                log.reports.append(
                    SenderReport(
                        packet.ssrc,
                        info.packet_count,
                        info.octet_count,
                        info.rtp_timestamp,
                        log.packets.get(packet.ssrc, 0),
                        log.octets.get(packet.ssrc, 0),
                    )
                )
            await handle(packet)

        receiver._handle_rtp_packet = on_rtp
        receiver._handle_rtcp_packet = on_rtcp
    return log
