"""The peers of ``livecast bench relay``, each run in its own process.

The publisher plays a pre-encoded clip in real time; viewers count what they receive
from RTP headers without decrypting or reassembling it.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fractions
import math
import os
import time
from typing import Any

__all__ = ["CLIP_FRAMES", "FPS", "HEIGHT", "WIDTH", "publisher_main", "viewers_main"]

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
    import aiohttp
    import av
    from aiortc import (
        MediaStreamTrack,
        RTCConfiguration,
        RTCPeerConnection,
        RTCRtpSender,
        RTCSessionDescription,
    )

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
    await pc.setLocalDescription(await pc.createOffer())
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/whip/{stream_id}",
            data=pc.localDescription.sdp,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        ) as resp,
    ):
        if resp.status != 201:
            raise RuntimeError(f"WHIP answered {resp.status}: {await resp.text()}")
        answer = await resp.text()
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    for _ in range(200):
        if pc.connectionState == "connected":
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("publisher did not connect")
    results.put(("publisher_ready", {"kbps": kbps, "full_rate_pps": full_rate_pps}))
    await _wait_event(stop)
    await pc.close()


def _ignore() -> None:
    pass


# -- viewers --------------------------------------------------------------------------


class _HeaderCounter:
    """One viewer's receive path, reduced to reading RTP headers.

    SRTP leaves the RTP header in the clear, so packets, losses (sequence gaps) and
    frames (the marker bit closes a video frame) are counted without decrypting or
    reassembling anything: the load generator stays far cheaper than the server.
    RTCP is still decrypted and handled by aiortc.
    """

    def __init__(self, video_payload_types: set[int]) -> None:
        self.video_pts = video_payload_types
        self.posted_at = 0.0
        self.first_frame_ms: float | None = None
        self.answer_ms = 0.0
        self.connected_ms = 0.0
        self.frames = 0
        self.packets = 0
        self.got_first = asyncio.Event()
        self._seq: dict[int, list[int]] = {}  # ssrc -> [first extended seq, highest, received]

    async def handle(self, data: bytes, arrival_time_ms: int) -> None:
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
        if second & 0x80 and (second & 0x7F) in self.video_pts:
            self.frames += 1
            if self.first_frame_ms is None:
                self.first_frame_ms = (time.monotonic() - self.posted_at) * 1000
                self.got_first.set()

    @property
    def lost(self) -> int:
        return sum(
            max(0, highest - first + 1 - received)
            for first, highest, received in self._seq.values()
        )


class _ClearRtp:
    """Stands in for the receive SRTP session: RTCP is unprotected, RTP passed as is."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def unprotect(self, data: bytes) -> bytes:
        return data

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return bytes(self._session.unprotect_rtcp(data))


def viewers_main(
    base: str,
    stream_id: str,
    count: int,
    concurrency: int,
    start: Any,
    window_over: Any,
    stop: Any,
    results: Any,
) -> None:
    try:
        _run_in_loop(_watch(base, stream_id, count, concurrency, start, window_over, stop, results))
    except Exception as exc:
        results.put(("error", f"viewers: {type(exc).__name__}: {exc}"))


async def _watch(
    base: str,
    stream_id: str,
    count: int,
    concurrency: int,
    start: Any,
    window_over: Any,
    stop: Any,
    results: Any,
) -> None:
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
    from aiortc.sdp import SessionDescription

    counters: list[_HeaderCounter] = []
    pcs: list[RTCPeerConnection] = []
    drains: list[asyncio.Future[None]] = []
    gate = asyncio.Semaphore(concurrency)

    async def drain(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()

    async def join(http: aiohttp.ClientSession) -> None:
        async with gate:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pcs.append(pc)
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            pc.on("track", lambda track: drains.append(asyncio.ensure_future(drain(track))))
            await pc.setLocalDescription(await pc.createOffer())
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
                codec.payloadType
                for media in SessionDescription.parse(answer).media
                if media.kind == "video"
                for codec in media.rtp.codecs
                if codec.mimeType.lower() != "video/rtx" and codec.payloadType is not None
            }
            counter = _HeaderCounter(video_pts)
            counter.posted_at = posted_at
            counter.answer_ms = (time.monotonic() - posted_at) * 1000
            counters.append(counter)
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            transports = {
                id(t.receiver.transport): t.receiver.transport for t in pc.getTransceivers()
            }
            for transport in transports.values():

                def on_state(transport: Any = transport) -> None:
                    if transport.state == "connected" and not isinstance(
                        transport._rx_srtp, _ClearRtp
                    ):
                        counter.connected_ms = (time.monotonic() - counter.posted_at) * 1000
                        transport._rx_srtp = _ClearRtp(transport._rx_srtp)
                        transport._handle_rtp_data = counter.handle

                transport.on("statechange", on_state)
        await asyncio.wait_for(counter.got_first.wait(), 30)

    # a connection per viewer, as from many browsers: with --workers the kernel spreads
    # connections, not requests, over the workers
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(join(http) for _ in range(count)))
    results.put(
        (
            "viewers_ready",
            {
                "first_frame_ms": [c.first_frame_ms for c in counters],
                "answer_ms": [c.answer_ms for c in counters],
                "connected_ms": [c.connected_ms for c in counters],
            },
        )
    )

    await _wait_event(start)
    frames0 = [c.frames for c in counters]
    packets0 = sum(c.packets for c in counters)
    lost0 = sum(c.lost for c in counters)
    await _wait_event(window_over)
    frames = [c.frames - f0 for c, f0 in zip(counters, frames0, strict=True)]
    results.put(
        (
            "viewers_report",
            {
                "frames": frames,
                "packets": sum(c.packets for c in counters) - packets0,
                "lost": sum(c.lost for c in counters) - lost0,
            },
        )
    )
    await _wait_event(stop)
    for task in drains:
        task.cancel()
    await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)
