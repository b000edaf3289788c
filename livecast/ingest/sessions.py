"""Who opened each WHIP/WHEP session of this node, and how each one ended.

:class:`SessionBook` keeps, per session the HTTP layer opened, its :class:`SessionKind`,
the subject of the token it was opened with (empty: anonymous) and the remote address.
The session URL handlers ask it who may act on a session
(:func:`livecast.ingest._signaling.authorize_session`).

It also tells operators what happened: one ``INFO`` line when a session is opened and
one when it ends, naming kind, stream, session (its first characters only: a session
URL is a capability) and remote address, the end with its :class:`EndReason`; and the
``livecast_webrtc_sessions_started_total{kind}`` and
``livecast_webrtc_sessions_ended_total{kind,reason}`` counters.

How a reason is known: whoever ends a session on purpose says why first (:meth:`mark`:
``DELETE``, the stream ended, shutdown, the origin moved, a publisher that sent no media
for ``publisher_stale_s``). Otherwise it is read from the peer connection's public state
and events as it happens: a DTLS transport that went ``failed``; ICE that never
completed (unreachable peer, connect timeout); an ICE agent that closed itself under a
connected session (the peer stopped answering consent checks, RFC 7675); a peer that
closed DTLS itself; a viewer dropped because the stream's video codec changed. A DTLS
failure names its cause (:func:`livecast.ingest._aiortc.dtls_failure`): OpenSSL's
reason, the peer's alert included, or a certificate that does not match its fingerprint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum

from aiortc import RTCDtlsTransport
from prometheus_client import CollectorRegistry, Counter

from livecast.ingest import _aiortc
from livecast.ingest.hub import MediaHub
from livecast.ingest.media import PUBLISHER, MediaState, Session

__all__ = ["EndReason", "SessionBook", "SessionKind", "SessionRecord", "short_id"]

log = logging.getLogger(__name__)

# Characters of a session id that logs show: enough to tell sessions apart, far too few
# to use its URL.
_SHOWN = 8


class SessionKind(StrEnum):
    WHIP = "whip"  # a publisher
    WHEP = "whep"  # a viewer
    EDGE = "edge"  # another node pulling the stream (a WHEP session with an edge token)


class EndReason(StrEnum):
    CLIENT_LEFT = "client_left"  # DELETE on the session URL, or the peer closed DTLS
    CONSENT_EXPIRED = "consent_expired"  # connected, then stopped answering ICE consent
    ICE_FAILED = "ice_failed"  # ICE never completed (unreachable, or connect timeout)
    DTLS_FAILED = "dtls_failed"  # ICE completed, the DTLS handshake did not
    PUBLISHER_STALE = "publisher_stale"  # sent no media for publisher_stale_s
    CODEC_CHANGED = "codec_changed"  # a returning publisher changed the video codec
    ORIGIN_MOVED = "origin_moved"  # another node took over the stream's origin
    STREAM_ENDED = "stream_ended"
    SERVER_SHUTDOWN = "server_shutdown"


def short_id(session_id: str) -> str:
    """What logs show of a session id."""
    return session_id[:_SHOWN]


@dataclass(slots=True)
class SessionRecord:
    """What the HTTP layer knew when it opened a session, and what happened since."""

    session_id: str
    kind: SessionKind
    stream_id: str
    subject: str  # of the token it was opened with; "" when opened anonymously
    remote: str
    opened_at: float
    connected_at: float | None = None
    ice_completed: bool = False
    reason: EndReason | None = None
    detail: str = ""


class SessionBook:
    """The records of this node's sessions, their start and end lines and counters."""

    def __init__(self, hub: MediaHub, registry: CollectorRegistry) -> None:
        self._hub = hub
        self._records: dict[str, SessionRecord] = {}
        self.started = Counter(
            "livecast_webrtc_sessions_started",
            "WHIP/WHEP sessions opened on this node, by kind (whip, whep, edge)",
            ["kind"],
            registry=registry,
        )
        self.ended = Counter(
            "livecast_webrtc_sessions_ended",
            "WHIP/WHEP sessions ended on this node, by kind and reason",
            ["kind", "reason"],
            registry=registry,
        )
        for kind in SessionKind:
            self.started.labels(kind.value)
            for reason in EndReason:
                self.ended.labels(kind.value, reason.value)

    def get(self, session_id: str) -> SessionRecord | None:
        return self._records.get(session_id)

    def opened(self, session: Session, kind: SessionKind, subject: str, remote: str) -> None:
        """Record a session the HTTP layer just answered 201 for; log it; watch its end.

        Call before the next ``await``: the session cannot have connected yet, since
        the peer learns the answer only from the response."""
        record = SessionRecord(
            session_id=session.id,
            kind=kind,
            stream_id=session.stream_id,
            subject=subject,
            remote=remote,
            opened_at=time.monotonic(),
        )
        self._records[session.id] = record
        self.started.labels(kind.value).inc()
        log.info(
            "%s session started: stream=%s session=%s remote=%s subject=%s",
            kind.value,
            record.stream_id,
            short_id(session.id),
            remote,
            subject or "-",
        )
        self._follow(session, record)

    def mark(self, session: Session, reason: EndReason, detail: str = "") -> None:
        """The session is about to be ended for ``reason`` (the first reason given wins)."""
        record = self._records.get(session.id)
        if record is not None and record.reason is None:
            record.reason = reason
            record.detail = detail

    def mark_stream(self, stream_id: str, reason: EndReason) -> None:
        """Every session of ``stream_id`` on this node is about to end for ``reason``."""
        for session in list(self._hub.sessions.values()):
            if session.stream_id == stream_id:
                self.mark(session, reason)

    def mark_all(self, reason: EndReason) -> None:
        for session in list(self._hub.sessions.values()):
            self.mark(session, reason)

    # -- following a peer connection --------------------------------------------------------

    def _follow(self, session: Session, record: SessionRecord) -> None:
        pc = session.pc

        @pc.on("iceconnectionstatechange")
        def on_ice() -> None:
            if pc.iceConnectionState == "completed":
                record.ice_completed = True
            elif pc.iceConnectionState == "failed" and record.reason is None:
                if record.ice_completed:
                    record.reason = EndReason.CONSENT_EXPIRED
                else:
                    record.reason = EndReason.ICE_FAILED

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            if state == "connected" and record.connected_at is None:
                record.connected_at = time.monotonic()
            elif state == "closed":
                self._ended(session, record)

        dtls_transports = {
            id(t.receiver.transport): t.receiver.transport for t in pc.getTransceivers()
        }
        for dtls in dtls_transports.values():
            _follow_dtls(dtls, record)

    def _ended(self, session: Session, record: SessionRecord) -> None:
        if self._records.pop(session.id, None) is None:
            return
        reason = record.reason or self._infer(session, record)
        self.ended.labels(record.kind.value, reason.value).inc()
        now = time.monotonic()
        connected = (
            f"{now - record.connected_at:.1f}s" if record.connected_at is not None else "never"
        )
        log.info(
            "%s session ended: stream=%s session=%s remote=%s reason=%s%s connected=%s",
            record.kind.value,
            record.stream_id,
            short_id(session.id),
            record.remote,
            reason.value,
            f" ({record.detail})" if record.detail else "",
            connected,
        )

    def _infer(self, session: Session, record: SessionRecord) -> EndReason:
        """The reason of an end nobody announced and no transport failure explains."""
        media = self._hub.media(session.stream_id)
        if media is not None and media.state == MediaState.ENDED:
            return EndReason.STREAM_ENDED  # however this node learnt it (an edge, too)
        if (
            session.role != PUBLISHER
            and media is not None
            and session.video_codec is not None
            and media.video_codec is not None
            and session.video_codec != media.video_codec
        ):
            return EndReason.CODEC_CHANGED
        if record.connected_at is None:
            return EndReason.DTLS_FAILED if record.ice_completed else EndReason.ICE_FAILED
        record.detail = "peer closed the connection"
        return EndReason.CLIENT_LEFT


def _follow_dtls(dtls: RTCDtlsTransport, record: SessionRecord) -> None:
    @dtls.on("statechange")
    def on_state() -> None:
        if record.reason is not None:
            return
        if dtls.state == "failed":
            record.reason = EndReason.DTLS_FAILED
            record.detail = _aiortc.dtls_failure(dtls)
        elif dtls.state == "closed":
            # The ICE agent closes itself (dropping its candidates) only when consent
            # expired; DTLS then closes under a transport that still says "completed".
            ice = dtls.transport
            if ice.state == "completed" and not ice.iceGatherer.getLocalCandidates():
                record.reason = EndReason.CONSENT_EXPIRED
