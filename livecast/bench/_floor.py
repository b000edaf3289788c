"""The floor of relaying one packet to one viewer, measured on this machine, now.

Whatever else a relay does, each packet it sends costs at least one SRTP protect and
one UDP send. :func:`measure_floor` times exactly that, in the calling process, the way
the relay does it: a ``pylibsrtp`` session with the policy aiortc gives a connection's
sending side (the profile aiortc peers negotiate, repeats allowed, a 1024-packet
window), one RTP packet of ``payload_size`` bytes per sequence number, and
``sendto`` on a uvloop datagram transport to a socket on loopback. CPU time of the
measuring thread counts, not wall time, so a busy machine lengthens the run rather than
the figure; the median of several batches is the floor.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import struct
import time
from typing import Any

__all__ = ["measure_floor"]

_HEADER = struct.Struct(">BBHII")
_BATCH = 500


def measure_floor(packets: int = 20_000, payload_size: int = 1200) -> dict[str, Any]:
    """``floor_us_per_packet``: the median CPU µs of protect plus send per packet."""
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_measure(packets, payload_size))
    finally:
        loop.close()


async def _measure(packets: int, payload_size: int) -> dict[str, Any]:
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
    protect = Session(policy).protect

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    addr = sink.getsockname()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    sendto = transport.sendto
    payload = os.urandom(payload_size)
    per_packet: list[float] = []
    seq = 0
    try:
        for _ in range(max(1, packets // _BATCH)):
            batch = [
                _HEADER.pack(0x80, 96, (seq + i) & 0xFFFF, (seq + i) * 3000, 0x1234) + payload
                for i in range(_BATCH)
            ]
            seq += _BATCH
            started = time.thread_time()
            for packet in batch:
                sendto(protect(packet), addr)
            per_packet.append((time.thread_time() - started) / _BATCH)
            _drain(sink)
            await asyncio.sleep(0)  # let a queued send go out, as the relay's loop would
    finally:
        transport.close()
        sink.close()
    return {
        "floor_us_per_packet": round(statistics.median(per_packet) * 1e6, 2),
        "floor_us_per_packet_min": round(min(per_packet) * 1e6, 2),
        "floor_srtp_profile": profile.openssl_profile.decode(),
        "floor_packet_bytes": payload_size + _HEADER.size,
    }


def _drain(sink: socket.socket) -> None:
    while True:
        try:
            sink.recv(4096)
        except BlockingIOError:
            return
