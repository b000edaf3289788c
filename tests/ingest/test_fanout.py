"""The relay's fast path with real peers: viewers whose packets the fan-out writes get
every frame, lost packets again on NACK, truthful sender reports, and the relay's rules
(a joiner starts from the GOP cache, a returning publisher continues the timeline)."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from typing import Any, cast

import pytest
from aiortc.rtcdtlstransport import SRTP_PROFILES
from aiortc.rtp import RtpPacket
from pylibsrtp import Policy, Session

from livecast.ingest._aiortc import SenderWire, srtp_context
from livecast.ingest.fanout import RtpWriter, segment_runs
from livecast.ingest.keys import MEDIA
from livecast.ingest.relay import MediaSource, RelayTuning, ViewerTrack
from tests.conftest import Client
from tests.ingest.conftest import SellerStream, eventually
from tests.ingest.peers import (
    FixedGopTrack,
    drop_incoming,
    in_order,
    log_receiving,
    publish,
    rtp_header,
    view,
)

Socket = socket.socket


def _writers(client: Client, stream_id: str) -> list[RtpWriter]:
    media = client.app[MEDIA].streams[stream_id]
    return [w for source in media.sources.values() for w in source.fanout.writers]


async def _written(client: Client, stream_id: str, viewers: int) -> list[RtpWriter]:
    """Wait until ``viewers`` viewers' video and audio are written by the fan-out."""
    await eventually(lambda: len(_writers(client, stream_id)) == 2 * viewers, within=10)
    return _writers(client, stream_id)


@pytest.mark.parametrize("codec", ["video/H264", "video/VP8"])
async def test_a_written_viewer_decodes_every_frame_the_publisher_sent(
    client: Client, stream: SellerStream, codec: str
) -> None:
    publisher = await publish(client, stream.id, stream.seller_token, codec=codec)
    viewers = [await view(client, stream.id) for _ in range(2)]
    try:
        await _written(client, stream.id, 2)
        for viewer in viewers:
            counters = await viewer.frames(60)
            await viewer.audio(50)
            # every frame from the first one it decoded on, none lost, none twice
            assert counters == list(range(counters[0], counters[0] + len(counters))), counters
            assert counters[-1] < publisher.video.counter
    finally:
        await asyncio.gather(*(v.close() for v in viewers))
        await publisher.close()


async def test_lost_packets_come_again_on_nack_from_the_shared_frames(
    client: Client, stream: SellerStream
) -> None:
    publisher = await publish(client, stream.id, stream.seller_token, audio=False)
    viewer = await view(client, stream.id)
    try:
        (writer,) = [w for w in await _written(client, stream.id, 1) if w.track.kind == "video"]
        await viewer.frames(5)
        dropped: list[int] = []

        def lose_some_video(datagram: bytes) -> bool:
            header = rtp_header(datagram)
            if header is None or header[2] != writer._ssrc or len(dropped) >= 10:
                return False
            if header[1] % 7 == 0:  # one packet in seven, until ten are gone
                dropped.append(header[1])
                return True
            return False

        drop_incoming(viewer.pc, lose_some_video)
        start = len(viewer.counters)
        await eventually(lambda: len(dropped) >= 10, within=10)
        await viewer.until(lambda: len(viewer.counters) >= start + 90)
        counters = viewer.counters[start:]
        # nothing lost for good: every frame decoded, in order, none skipped
        assert counters == list(range(counters[0], counters[0] + len(counters))), counters
        assert writer.retransmitted >= len(set(dropped))
        assert writer.track.skips == 0
    finally:
        await viewer.close()
        await publisher.close()


async def test_sender_reports_count_what_the_viewer_was_sent(
    client: Client, stream: SellerStream
) -> None:
    publisher = await publish(client, stream.id, stream.seller_token)
    viewer = await view(client, stream.id)
    log = log_receiving(viewer.pc)
    try:
        writers = await _written(client, stream.id, 1)
        ssrcs = {w._ssrc for w in writers}

        def reports() -> dict[int, int]:
            counts = dict.fromkeys(ssrcs, 0)
            for report in log.reports:
                if report.ssrc in counts:
                    counts[report.ssrc] += 1
            return counts

        await eventually(lambda: min(reports().values()) >= 3, within=15)
        for ssrc in ssrcs:
            mine = [r for r in log.reports if r.ssrc == ssrc]
            assert all(b.packets > a.packets for a, b in itertools.pairwise(mine))
            for report in mine:
                # on loopback every packet sent before the report arrived before it
                assert report.packets == report.packets_received, report
                assert report.octets == report.octets_received, report
                assert report.rtp_timestamp in log.timestamps[ssrc]
    finally:
        await viewer.close()
        await publisher.close()


async def test_a_returning_publisher_continues_every_written_viewers_timeline(
    client: Client, stream: SellerStream
) -> None:
    first = await publish(client, stream.id, stream.seller_token)
    viewer = await view(client, stream.id)
    try:
        await _written(client, stream.id, 1)
        await viewer.frames(10)
        await first.close()
        media = client.app[MEDIA].streams[stream.id]
        await eventually(lambda: media.publisher is None, within=5)
        second = await publish(client, stream.id, stream.seller_token, start=1000)
        try:
            await viewer.until(lambda: viewer.counters[-1] >= 1010)
            assert in_order(viewer.counters)
            assert all(b > a for a, b in itertools.pairwise(viewer.pts))
            assert len(_writers(client, stream.id)) == 2  # still the fast path
        finally:
            await second.close()
    finally:
        await viewer.close()


async def test_a_written_joiner_starts_from_the_gop_cache(
    client: Client, stream: SellerStream
) -> None:
    track = FixedGopTrack(gop=120, frames=300)
    publisher = await publish(client, stream.id, stream.seller_token, video=track, audio=False)
    try:
        source = client.app[MEDIA].streams[stream.id].sources["video"]
        await eventually(lambda: source.frames_in >= 45, within=10)
        viewer = await view(client, stream.id)
        try:
            joined_at = track.counter
            await _written(client, stream.id, 1)
            await viewer.until(lambda: bool(viewer.counters) and viewer.counters[-1] >= joined_at)
            assert viewer.counters[0] == 0  # the cached GOP's keyframe
            assert viewer.counters == list(range(len(viewer.counters)))
        finally:
            await viewer.close()
    finally:
        await publisher.close()


@pytest.mark.parametrize("settings", [{"webrtc__fast_relay": False}], indirect=True)
async def test_with_fast_relay_off_aiortc_sends(client: Client, stream: SellerStream) -> None:
    publisher = await publish(client, stream.id, stream.seller_token)
    viewer = await view(client, stream.id)
    try:
        counters = await viewer.frames(30)
        assert in_order(counters)
        assert _writers(client, stream.id) == []
    finally:
        await viewer.close()
        await publisher.close()


# -- the fan-out without peers ------------------------------------------------------------

KEY, DELTA = b"\x10" + bytes(50), b"\x11" + bytes(50)  # VP8 frame tags: bit 0 clear = key


class _Transport:
    """A socket that records what is sent and may report a backed-up queue."""

    def __init__(self, receiver: Session) -> None:
        self.sent: list[bytes] = []  # unprotected again
        self.receiver = receiver
        self.queued = 0
        self.broken = False

    def sendto(self, data: bytes, address: Any) -> None:
        if self.broken:
            raise OSError("the socket broke")
        self.sent.append(self.receiver.unprotect(data))

    def get_write_buffer_size(self) -> int:
        return self.queued


class _Codec:
    payload_type = 96
    rtx_payload_type = 97


def _srtp_pair() -> tuple[Session, Session]:
    """A sending and a receiving SRTP session with one key, as a connection's two ends."""
    profile = SRTP_PROFILES[0]
    key = os.urandom(profile.key_length + profile.salt_length)
    sessions = []
    for ssrc_type in (Policy.SSRC_ANY_OUTBOUND, Policy.SSRC_ANY_INBOUND):
        policy = Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile.libsrtp_profile)
        policy.allow_repeat_tx = True
        sessions.append(Session(policy))
    return sessions[0], sessions[1]


class _Wire:
    """A :class:`SenderWire` without a connection: what it sends is unprotected on arrival."""

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.rtx_ssrc = ssrc + 1
        self.codec = _Codec()
        self.extension_key = None
        self.pairs = {1: object()}  # one nominated pair, never another
        self.session, receiver = _srtp_pair()
        self.srtp = srtp_context(self.session)
        self.transport = _Transport(receiver)
        self.reported: tuple[int, int, int, int] | None = None

    # with a socket (and an address where it is received), runs go in segmented sends
    socket: Socket | None = None
    address = ("127.0.0.1", 9)

    def path(self) -> tuple[_Transport, tuple[str, int], Any, Socket | None]:
        return self.transport, self.address, self.transport.get_write_buffer_size, self.socket

    def close(self) -> None:
        pass

    def extension_block(self, ntp_time: int) -> bytes:
        return b""

    def report_sent(self, packets: int, octets: int, rtp_timestamp: int, ntp_time: int) -> None:
        self.reported = (packets, octets, rtp_timestamp, ntp_time)

    def serve_retransmissions(self, retransmit: Any) -> None:
        self.retransmit = retransmit


def _writer(source: MediaSource, ssrc: int) -> tuple[RtpWriter, _Wire]:
    wire = _Wire(ssrc)
    track = ViewerTrack(source)
    assert track.send_directly()
    writer = RtpWriter(
        cast(SenderWire, wire), track, source.fanout, sequence=65530, timestamp_origin=0,
        rtx_sequence=0,
    )  # fmt: skip
    writer.start()
    return writer, wire


def _frames(wire: _Wire) -> list[int]:
    """The RTP timestamps of the frames ``wire`` sent (one per marker packet)."""
    return [int.from_bytes(p[4:8]) for p in wire.transport.sent if p[1] & 0x80]


async def test_a_backed_up_viewer_skips_to_a_keyframe_and_the_others_get_every_frame() -> None:
    source = MediaSource("video", RelayTuning(keyframe_min_interval_s=0.0))
    requests: list[int] = []
    source.attach("vp8", lambda: requests.append(1))
    slow, slow_wire = _writer(source, 1000)
    fast, fast_wire = _writer(source, 2000)
    source.push(KEY, 0)
    source.push(DELTA, 3000)
    slow_wire.transport.queued = 2 << 20  # its socket backs up for two frames
    source.push(DELTA, 6000)
    source.push(DELTA, 9000)
    slow_wire.transport.queued = 0
    source.push(DELTA, 12000)  # not decodable for the slow one: it waits ...
    assert requests  # ... and asked for a keyframe
    source.push(KEY, 15000)
    source.push(DELTA, 18000)
    assert _frames(fast_wire) == [0, 3000, 6000, 9000, 12000, 15000, 18000]
    assert _frames(slow_wire) == [0, 3000, 15000, 18000]
    assert slow.track.skips == 1
    assert fast.track.skips == 0
    # sequence numbers run on without a gap (and wrap) whatever was skipped
    sequences = [int.from_bytes(p[2:4]) for p in slow_wire.transport.sent]
    assert sequences == [(65530 + i) & 0xFFFF for i in range(len(sequences))]


async def test_one_broken_writer_stops_its_viewer_only() -> None:
    source = MediaSource("video", RelayTuning())
    source.attach("vp8", None)
    broken, broken_wire = _writer(source, 1000)
    healthy, healthy_wire = _writer(source, 2000)
    source.push(KEY, 0)
    broken_wire.transport.broken = True
    source.push(DELTA, 3000)
    source.push(DELTA, 6000)
    assert _frames(healthy_wire) == [0, 3000, 6000]
    assert broken.track.readyState == "ended"
    assert source.fanout.writers == (healthy,)


async def test_a_nack_is_answered_from_the_shared_frame_as_rtx() -> None:
    source = MediaSource("video", RelayTuning())
    source.attach("vp8", None)
    writer, wire = _writer(source, 1000)
    source.push(KEY + bytes(3000), 0)  # three packets or so
    source.push(DELTA, 3000)
    first = wire.transport.sent[1]
    wire.retransmit(int.from_bytes(first[2:4]))
    rtx = wire.transport.sent[-1]
    assert rtx[1] & 0x7F == 97
    assert int.from_bytes(rtx[8:12]) == 1001
    assert rtx[4:8] == first[4:8]  # the same timestamp
    assert rtx[12:14] == first[2:4]  # the original sequence number, then ...
    assert rtx[14:] == first[12:]  # ... the very payload
    wire.retransmit(int.from_bytes(first[2:4]) + 1000)  # never sent: ignored
    assert writer.retransmitted == 1
    assert wire.reported is not None
    assert wire.reported[0] == len(wire.transport.sent) - 1


async def test_fragments_a_byte_shorter_go_padded_in_one_segmented_send() -> None:
    source = MediaSource("video", RelayTuning())
    source.attach("h264", None)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiving,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sending,
    ):
        receiving.bind(("127.0.0.1", 0))
        receiving.settimeout(5)
        sending.setblocking(False)
        wire = _Wire(1000)
        wire.socket, wire.address = sending, receiving.getsockname()
        writer = RtpWriter(
            cast(SenderWire, wire), ViewerTrack(source), source.fanout, sequence=65534,
            timestamp_origin=0, rtx_sequence=0,
        )  # fmt: skip
        writer.start()
        # an IDR slice: FU-A fragments of 1278, 1277 and 1277 bytes
        source.push(b"\x00\x00\x00\x01\x65" + bytes(range(1, 256)) * 15 + bytes(1), 0)
        frame = source.frame(source.head - 1)
        assert frame is not None
        sizes = [len(payload) for payload in frame.payloads]
        assert sizes == [sizes[0], sizes[0] - 1, sizes[0] - 1]
        datagrams = [receiving.recv(2048) for _ in sizes]
        assert wire.transport.sent == []  # nothing one by one
        assert len({len(datagram) for datagram in datagrams}) == 1  # one segment size
        packets = [RtpPacket.parse(wire.transport.receiver.unprotect(d)) for d in datagrams]
        assert [p.payload for p in packets] == frame.payloads
        assert [p.padding_size for p in packets] == [0 if n == sizes[0] else 1 for n in sizes]
        assert [p.sequence_number for p in packets] == [65534, 65535, 0]
        assert [p.marker for p in packets] == [0, 0, 1]
        writer.stop()


def test_runs_for_one_segmented_send_are_equal_sizes_or_padded_then_one_shorter() -> None:
    sizes = [651, 1209, 1209, 1209, 1208, 1208, 806, 90, 90]
    payloads = [bytes(n) for n in sizes]
    # [651] [1209 1209 1209 1208+1 1208+1 806] [90 90]: fragments a byte shorter are
    # padded to the run's length, a shorter one ends the run
    assert segment_runs(payloads) == (1, 7, 9)
    assert segment_runs([bytes(1300)] * 100) == (40, 80, 100)
    assert segment_runs([]) == ()
