"""The relay's fast path: one fan-out per source and frame, straight to viewers' sockets.

Left to aiortc, every viewer's sender is a coroutine woken per frame that builds an
``RtpPacket`` per packet, serializes it, encrypts it and hands it down through the
DTLS and ICE transports' coroutines. Here a :class:`FanOut` (one per
:class:`~livecast.ingest.relay.MediaSource`) is handed each frame as the publisher's
receiver pushes it, already packetized once, and for every viewer it writes only what
is that viewer's own: a 12-byte RTP header (its sequence number, SSRC, timestamp origin
and payload type), the header extension block its connection negotiated (shared by
every viewer whose block is byte-equal), SRTP with the connection's session, and a
send on the socket of its selected ICE candidate pair. Nothing is awaited and no
object is made per viewer and packet beyond the bytes that go out: each packet is
built and protected in place (libsrtp directly) in one buffer all writers share. The
packets of a frame come in runs of one size (the packetizer splits a NAL unit or a VP8
frame evenly; fragments a byte shorter get a byte of RTP padding): a video viewer's run
leaves in one ``sendmsg`` with UDP segmentation offload (:func:`send_segmented`), which
the kernel splits into the same datagrams for much less than one ``sendto`` each;
single packets (Opus) take the transport's ``sendto``.

Each viewer is a :class:`RtpWriter` over a :class:`~livecast.ingest._aiortc.SenderWire`
(what aiortc knows of the sender and its connection, read once when the sender starts)
and the viewer's :class:`~livecast.ingest.relay.ViewerTrack`, whose cursor keeps every
rule of the relay: a viewer starts at a keyframe or with the GOP cache's catch-up burst,
follows a new publisher's timeline and codec, and skips ahead when it falls behind. A
viewer whose connection runs over a TURN relay is not written here: aiortc's sender
pulls its frames from the same track as before.

What aiortc still does for a written viewer: RTCP both ways. Its sender reports count
what the writer sent (:meth:`SenderWire.report_sent`); a NACK is answered from the
packets this writer sent, which it remembers as references into the shared frames
(sequence number -> frame and packet index), wrapped as RTX when RTX was negotiated;
PLI and FIR reach the relay's keyframe handling. A viewer whose socket backs up (more
than ``_MAX_QUEUED`` bytes waiting in the transport) skips frames as a slow one does,
and whatever goes wrong with one writer stops that viewer only.
"""

from __future__ import annotations

import logging
import secrets
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from aiortc.mediastreams import MediaStreamError

from livecast.ingest._aiortc import (
    PacketBuffer,
    SenderWire,
    SendPath,
    ntp_time,
    raise_srtp_error,
)

if TYPE_CHECKING:
    from livecast.ingest.relay import EncodedFrame, ViewerTrack

__all__ = ["FanOut", "RtpWriter", "write_directly"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHII")  # V=2 P X CC, M PT, sequence number, timestamp, SSRC
_ORIGINAL_SEQUENCE = struct.Struct("!H")  # the first two bytes of an RTX payload
_U32: Final = 0xFFFFFFFF
# Packets per writer a NACK can still be answered for (aiortc keeps 128): a catch-up
# burst of a 2 s GOP at 1 Mbit/s is about 250.
_HISTORY: Final = 512
_HISTORY_MASK: Final = _HISTORY - 1
# Bytes waiting in a viewer's socket (libuv's send queue) past which it skips frames.
_MAX_QUEUED: Final = 1 << 20
# Linux UDP generic segmentation offload (UDP_SEGMENT, since 4.18): one sendmsg carries
# datagrams of one size (the last may be shorter), the kernel splits them. At most 64
# per call and 64 KB in all: 40 packets of a frame at most.
_UDP_SEGMENT: Final = 103
_MAX_SEGMENTS: Final = 40
_SEGMENT_SIZE = struct.Struct("=H")
# Packetizers split a NAL unit or a VP8 frame into fragments whose lengths differ by a
# byte (the larger ones first): a fragment up to this much shorter than the run's first
# is padded to its length (RTP padding, RFC 3550 5.1), so that the whole unit goes in
# one segmented send rather than two. _PADDINGS[n]: n bytes of padding, the last its count.
_MAX_PADDING: Final = 8
_PADDINGS: Final = tuple(bytes(n - 1) + bytes((n,)) if n else b"" for n in range(_MAX_PADDING + 1))
_PADDED: Final = 0x20  # the P bit of the first header byte
# A run's packets, protected, fit in 64 KB (the most one segmented send takes), and in
# the buffer every packet is built and protected in (one for all writers: a frame's
# packets go out before the next frame's are built).
_MAX_RUN_BYTES: Final = 62_000
# what a packet in a run adds to its payload at most: RTP header, extensions (longer
# ones go one by one), SRTP trailer
_MAX_HEAD: Final = 12 + 64
_PACKET_ROOM: Final = _MAX_HEAD + PacketBuffer.TRAILER
_PACKETS = PacketBuffer(1 << 16)


class _Segmentation:
    """Whether this kernel takes UDP_SEGMENT; the first refusal turns it off."""

    works = True


_segmentation = _Segmentation()


def segment_runs(payloads: list[bytes]) -> tuple[int, ...]:
    """Where the runs of ``payloads`` end that can go in one segmented send: packets
    of one length or up to ``_MAX_PADDING`` bytes shorter (the writer pads those to
    the first one's length), then at most one shorter one. The same per-viewer header
    is added to each, so their protected lengths compare the same way."""
    ends = []
    count = len(payloads)
    start = 0
    while start < count:
        size = len(payloads[start])
        end = start + 1
        most = min(_MAX_SEGMENTS, _MAX_RUN_BYTES // (size + _PACKET_ROOM))
        while end < count and end - start < most and 0 <= size - len(payloads[end]) <= _MAX_PADDING:
            end += 1
        if end < count and end - start < most and len(payloads[end]) < size:
            end += 1
        ends.append(end)
        start = end
    return tuple(ends)


def send_segmented(
    sock: socket.socket,
    packets: memoryview,
    segment: int,
    address: tuple[Any, ...],
    sendto: Callable[[bytes, Any], None],
) -> None:
    """Send ``packets`` (datagrams of ``segment`` bytes back to back, the last may be
    shorter) to ``address`` in one ``sendmsg`` the kernel splits; one ``sendto`` each
    where that cannot be done now."""
    try:
        sock.sendmsg(
            [packets], [(socket.SOL_UDP, _UDP_SEGMENT, _SEGMENT_SIZE.pack(segment))], 0, address
        )
        return
    except BlockingIOError:
        pass  # the socket's buffer is full: the transport queues them
    except OSError as exc:
        _segmentation.works = False
        log.warning("UDP segmentation offload refused (%s); sending datagrams one by one", exc)
    for offset in range(0, len(packets), segment):
        sendto(packets[offset : offset + segment].tobytes(), address)


class FanOut:
    """The writers of one source's viewers; :meth:`send` gives each one a frame."""

    __slots__ = ("writers",)

    def __init__(self) -> None:
        self.writers: tuple[RtpWriter, ...] = ()

    def add(self, writer: RtpWriter) -> None:
        self.writers = (*self.writers, writer)

    def remove(self, writer: RtpWriter) -> None:
        self.writers = tuple(w for w in self.writers if w is not writer)

    def send(self, frame: EncodedFrame, index: int) -> None:
        """The source just stored ``frame`` at ``index``: send it to every writer's
        viewer that is due to get it (and whatever else a viewer is due now)."""
        now = ntp_time()
        # the extension block of packets sent now, per extension key: writers whose
        # connections negotiated the same extensions share it
        blocks: dict[object, bytes] = {}
        for writer in self.writers:
            try:
                if writer.track.takes_next(index):
                    writer.write(frame, now, blocks)
                else:
                    writer.send_due(now, blocks)
            except Exception:
                writer.fail()


class RtpWriter:
    """Writes one viewer's RTP for one track: the fast path's per-viewer state."""

    __slots__ = (
        "_b0",
        "_codec",
        "_extension_key",
        "_fanout",
        "_octets",
        "_packets",
        "_pair",
        "_pairs",
        "_path",
        "_rtx_sequence",
        "_sent_frames",
        "_sent_index",
        "_sequence",
        "_srtp",
        "_ssrc",
        "_timestamp_origin",
        "_wire",
        "retransmitted",
        "track",
    )

    def __init__(
        self,
        wire: SenderWire,
        track: ViewerTrack,
        fanout: FanOut,
        *,
        sequence: int,
        timestamp_origin: int,
        rtx_sequence: int,
    ) -> None:
        self._wire = wire
        self.track = track
        self._fanout = fanout
        self._codec = wire.codec
        self._srtp = wire.srtp
        self._ssrc = wire.ssrc
        self._extension_key = wire.extension_key
        # the selected candidate pair (the peer may nominate another) and how to send on it
        self._pairs = wire.pairs
        self._pair: object = None
        self._path: SendPath | None = None
        # V=2, and X when the packets carry header extensions
        self._b0 = 0x90 if wire.extension_block(0) else 0x80
        self._sequence = sequence
        self._timestamp_origin = timestamp_origin
        self._rtx_sequence = rtx_sequence
        self._packets = 0
        self._octets = 0
        # sequence number -> (frame, packet index), for NACKs: references, not copies
        self._sent_frames: list[EncodedFrame | None] = [None] * _HISTORY
        self._sent_index = [0] * _HISTORY
        self.retransmitted = 0

    def start(self) -> None:
        """Take over the viewer's track: join the fan-out, send what is due at once
        (a joiner's catch-up burst), answer NACKs from now on."""
        self.track.on("ended", self.stop)
        self._wire.serve_retransmissions(self.retransmit)
        self._fanout.add(self)
        try:
            self.send_due(ntp_time(), {})
        except Exception:
            self.fail()

    def stop(self) -> None:
        self._fanout.remove(self)
        self._wire.close()

    def fail(self) -> None:
        """This writer broke: stop its viewer's track (and only that)."""
        self.stop()
        if self.track.readyState == "live":
            log.exception("relay writer of a %s viewer failed; stopping it", self.track.kind)
            self.track.stop()

    # -- sending ------------------------------------------------------------------------

    def send_due(self, now: int, blocks: dict[object, bytes]) -> None:
        """Send every frame the track's rules make due now (a joiner's catch-up burst,
        the keyframe a waiting viewer waits for)."""
        track = self.track
        while True:
            try:
                frame = track.poll()
            except MediaStreamError:
                self.stop()
                return
            if frame is None or not self.write(frame, now, blocks):
                return

    def write(self, frame: EncodedFrame, now: int, blocks: dict[object, bytes]) -> bool:
        """Send ``frame`` to the viewer now, unless its connection closed or its socket
        is backed up (then it skips ahead: False). Each packet is its header, the
        header extensions and the payload, built and protected in the shared buffer;
        runs of equal-sized packets go to the kernel in one call where it can split
        them (:func:`send_segmented`), the others one ``sendto`` each."""
        pair = self._pairs.get(1)
        if pair is not self._pair:
            self._pair = pair
            self._path = self._wire.path()
        path = self._path
        if path is None:
            return False
        queued = path[2]()
        if queued > _MAX_QUEUED:
            self.track.fall_behind()
            return False
        key = self._extension_key
        block = blocks.get(key)
        if block is None:
            block = blocks[key] = self._wire.extension_block(now)
        transport, address, _, segmenting = path
        payloads = frame.payloads
        last = len(payloads) - 1
        head = _HEADER.size + len(block)
        if segmenting is not None and (
            last == 0 or queued or head > _MAX_HEAD or not _segmentation.works
        ):
            # a single packet; queued datagrams must not be overtaken; a run must fit
            segmenting = None
        timestamp = (frame.timestamp + self._timestamp_origin) & _U32
        sequence = self._sequence
        payload_type = self._codec.payload_type
        b0 = self._b0
        ssrc = self._ssrc
        context = self._srtp
        buffer = _PACKETS
        data = buffer.data
        pointer = buffer.pointer
        cell = buffer.length_cell
        srtp_protect = buffer.srtp_protect
        pack_into = _HEADER.pack_into
        sent_frames = self._sent_frames
        sent_index = self._sent_index
        mask = _HISTORY_MASK
        if segmenting is None:
            send = transport.sendto
            data[_HEADER.size : head] = block
            for position, payload in enumerate(payloads):
                slot = sequence & mask
                sent_frames[slot] = frame
                sent_index[slot] = position
                second = payload_type | 0x80 if position == last else payload_type
                pack_into(data, 0, b0, second, sequence, timestamp, ssrc)
                size = head + len(payload)
                data[head:size] = payload
                cell[0] = size
                status = srtp_protect(context, pointer, cell)
                if status:
                    raise_srtp_error(status)
                send(data[0 : cell[0]], address)
                sequence = (sequence + 1) & 0xFFFF
        else:
            runs = frame.runs
            if runs is None:
                runs = frame.runs = segment_runs(payloads)
            view = buffer.view
            send = transport.sendto
            start = 0
            paddings = _PADDINGS
            for end in runs:
                offset = 0
                segment = 0
                width = len(payloads[start])
                for position in range(start, end):
                    slot = sequence & mask
                    sent_frames[slot] = frame
                    sent_index[slot] = position
                    second = payload_type | 0x80 if position == last else payload_type
                    payload = payloads[position]
                    length = len(payload)
                    body = offset + head
                    pad = width - length
                    if 0 < pad <= _MAX_PADDING:
                        pack_into(data, offset, b0 | _PADDED, second, sequence, timestamp, ssrc)
                        data[body + length : body + width] = paddings[pad]
                        size = head + width
                    else:
                        pack_into(data, offset, b0, second, sequence, timestamp, ssrc)
                        size = head + length
                    data[offset + _HEADER.size : body] = block
                    data[body : body + length] = payload
                    cell[0] = size
                    status = srtp_protect(context, pointer + offset, cell)
                    if status:
                        raise_srtp_error(status)
                    if not segment:
                        segment = cell[0]
                    offset += cell[0]
                    sequence = (sequence + 1) & 0xFFFF
                if end - start == 1:
                    send(data[0:offset], address)
                else:
                    send_segmented(segmenting, view[0:offset], segment, address, send)
                start = end
        self._sequence = sequence
        self._packets += last + 1
        self._octets += frame.size
        self._wire.report_sent(self._packets, self._octets, timestamp, now)
        return True

    # -- NACK -----------------------------------------------------------------------------

    def retransmit(self, sequence: int) -> None:
        """Send packet ``sequence`` again if it is among the last ``_HISTORY`` sent:
        as RTX when the viewer negotiated it, else as it was."""
        behind = (self._sequence - sequence) & 0xFFFF
        if not 0 < behind <= _HISTORY:
            return
        slot = sequence & _HISTORY_MASK
        frame = self._sent_frames[slot]
        path = self._wire.path()
        if frame is None or path is None:
            return
        transport, address = path[0], path[1]
        position = self._sent_index[slot]
        payload = frame.payloads[position]
        marker = 0x80 if position == len(frame.payloads) - 1 else 0
        timestamp = (frame.timestamp + self._timestamp_origin) & _U32
        block = self._wire.extension_block(ntp_time())
        rtx_payload_type = self._codec.rtx_payload_type
        data = _PACKETS.data
        head = _HEADER.size + len(block)
        data[_HEADER.size : head] = block
        if rtx_payload_type is None:
            _HEADER.pack_into(
                data,
                0,
                self._b0,
                self._codec.payload_type | marker,
                sequence,
                timestamp,
                self._ssrc,
            )
        else:
            _HEADER.pack_into(
                data,
                0,
                self._b0,
                rtx_payload_type | marker,
                self._rtx_sequence,
                timestamp,
                self._wire.rtx_ssrc,
            )
            self._rtx_sequence = (self._rtx_sequence + 1) & 0xFFFF
            _ORIGINAL_SEQUENCE.pack_into(data, head, sequence)
            head += _ORIGINAL_SEQUENCE.size
        size = head + len(payload)
        data[head:size] = payload
        transport.sendto(data[0 : _PACKETS.protect(self._srtp, 0, size)], address)
        self.retransmitted += 1


def write_directly(track: ViewerTrack, wire: SenderWire | None) -> None:
    """The sender of ``track`` starts: write its packets here if ``wire`` allows it
    (a plain UDP pair), else leave them to aiortc's sender."""
    if wire is None or not track.send_directly():
        return
    RtpWriter(
        wire,
        track,
        track.source.fanout,
        # random, sequence numbers in the lower half (as aiortc): no early wrap-around,
        # which some receivers' SRTP rollover guess gets wrong
        sequence=secrets.randbits(15),
        timestamp_origin=secrets.randbits(32),
        rtx_sequence=secrets.randbits(15),
    ).start()
