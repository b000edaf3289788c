"""The floor of relaying one packet to one viewer, measured on this machine, now.

Whatever else a relay does, each packet it sends costs at least one SRTP protect and
one UDP send. :func:`measure_floor` times exactly that, in the calling process, the way
the relay does it: one ``pylibsrtp`` session per destination with the policy aiortc
gives a connection's sending side (the profile aiortc peers negotiate, repeats allowed,
a 1024-packet window), one RTP packet of ``payload_size`` bytes per sequence number,
copied into the relay's packet buffer and protected there in place (libsrtp's
``srtp_protect``, as :class:`~livecast.ingest._aiortc.PacketBuffer` calls it), then
``sendto`` on a uvloop datagram transport to sockets on loopback that another process
waits on (as viewers wait on theirs: waking a waiting receiver is part of a send's cost
on loopback), and the relay's cadence: a burst of ``packets_per_frame`` packets to each
of ``destinations`` sockets every 1/30 s, idle in between. CPU time of the measuring
thread counts, not wall time, so a busy machine lengthens the run rather than the
figure; the median over the bursts is the floor.

Two best cases are reported beside it: the same bursts to sockets nobody waits on
(``_no_receiver``), and those back to back with no pause (``_back_to_back``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import selectors
import socket
import statistics
import struct
import time
from collections.abc import Callable
from typing import Any

from livecast.ingest._aiortc import PacketBuffer, srtp_context

__all__ = ["measure_floor"]

_HEADER = struct.Struct(">BBHII")
_FRAME_INTERVAL_S = 1 / 30


def measure_floor(
    destinations: int = 100,
    packets_per_frame: int = 5,
    bursts: int = 45,
    payload_size: int = 1200,
) -> dict[str, Any]:
    """``floor_us_per_packet``: the median CPU µs of protect plus send per packet, at
    the relay's cadence, to sockets a receiver waits on; the best cases beside it."""
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(
            _measure(destinations, packets_per_frame, bursts, payload_size)
        )
    finally:
        loop.close()


def _session() -> Any:
    """A sending SRTP session as aiortc makes one for a connection."""
    from aiortc.rtcdtlstransport import SRTP_PROFILES
    from pylibsrtp import Policy, Session

    profile = SRTP_PROFILES[0]
    policy = Policy(
        key=os.urandom(profile.key_length + profile.salt_length),
        ssrc_type=Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=profile.libsrtp_profile,
    )
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


async def _measure(
    destinations: int, packets_per_frame: int, bursts: int, payload_size: int
) -> dict[str, Any]:
    from aiortc.rtcdtlstransport import SRTP_PROFILES

    sinks = []
    for _ in range(destinations):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        sinks.append(sink)
    addresses = [sink.getsockname() for sink in sinks]
    sessions = [_session() for _ in sinks]  # referenced: their contexts stay valid
    contexts = [srtp_context(session) for session in sessions]
    buffer = PacketBuffer(1 << 16)
    data, pointer, cell = buffer.data, buffer.pointer, buffer.length_cell
    srtp_protect = buffer.srtp_protect
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    sendto = transport.sendto
    payload = os.urandom(payload_size)
    sequence = 0

    def burst() -> float:
        """Send one frame's packets to every destination: CPU seconds per packet."""
        nonlocal sequence
        packets = [
            [
                _HEADER.pack(0x80, 96, (sequence + i) & 0xFFFF, sequence, 0x1000 + d) + payload
                for i in range(packets_per_frame)
            ]
            for d in range(destinations)
        ]
        sequence += packets_per_frame
        started = time.thread_time()
        for context, address, frame in zip(contexts, addresses, packets, strict=True):
            for packet in frame:
                size = len(packet)
                data[0:size] = packet
                cell[0] = size
                if srtp_protect(context, pointer, cell):
                    raise RuntimeError("srtp_protect failed")
                sendto(data[0 : cell[0]], address)
        spent = time.thread_time() - started
        for sink in sinks:
            _drain(sink)  # what no receiver took
        return spent / (destinations * packets_per_frame)

    try:
        alone = [await _paced(burst) for _ in range(bursts)]
        back_to_back = []
        for _ in range(bursts):
            back_to_back.append(burst())
            await asyncio.sleep(0)  # let a queued send go out
        stop = _FORK.Event()
        receiver = _FORK.Process(target=_receive, args=(sinks, stop), daemon=True)
        receiver.start()
        try:
            await asyncio.sleep(0.2)
            received = [await _paced(burst) for _ in range(bursts)]
        finally:
            stop.set()
            receiver.join(timeout=5)
            if receiver.is_alive():
                receiver.terminate()
    finally:
        transport.close()
        for sink in sinks:
            sink.close()
    return {
        "floor_us_per_packet": round(statistics.median(received) * 1e6, 2),
        "floor_us_per_packet_no_receiver": round(statistics.median(alone) * 1e6, 2),
        "floor_us_per_packet_back_to_back": round(statistics.median(back_to_back) * 1e6, 2),
        "floor_srtp_profile": SRTP_PROFILES[0].openssl_profile.decode(),
        "floor_packet_bytes": payload_size + _HEADER.size,
    }


async def _paced(burst: Callable[[], float]) -> float:
    spent = burst()
    await asyncio.sleep(_FRAME_INTERVAL_S)
    return spent


# The receiver shares the sinks by inheriting them: a forked child (the caller has no
# threads of its own that a fork would copy mid-operation).
_FORK = multiprocessing.get_context("fork")


def _receive(sinks: list[socket.socket], stop: Any) -> None:
    """Wait on every sink and read what arrives, as a viewer process does."""
    selector = selectors.DefaultSelector()
    for sink in sinks:
        selector.register(sink, selectors.EVENT_READ)
    while not stop.is_set():
        for key, _ in selector.select(0.2):
            _drain(key.fileobj)  # type: ignore[arg-type]


def _drain(sink: socket.socket) -> None:
    while True:
        try:
            sink.recv(4096)
        except BlockingIOError:
            return
