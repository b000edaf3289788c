"""The publisher side of :class:`~livecast.ingest.hub.MediaHub`: :class:`PublisherSide`.

Accepting a WHIP publisher (after claiming the stream's origin record), feeding its
received frames into the stream's sources, the stream's video codec, noticing a
publisher that went quiet and a reconnect grace that ran out; :func:`drain_track` for
received tracks.

Recording (:mod:`livecast.ingest.recorder`) follows the origin's publishers: each one
accepted here is recorded, and the stream's file is finalized when its media ends here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from aiortc import RTCRtpTransceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from redis.exceptions import RedisError

from livecast.error_codes import ErrorCode
from livecast.errors import Conflict, Unprocessable
from livecast.ingest import _aiortc
from livecast.ingest._hub import HubBase
from livecast.ingest.errors import PublishedElsewhere
from livecast.ingest.media import PUBLISHER, MediaState, Session, StreamMedia
from livecast.ingest.sdp import AUDIO_CODEC, Offer, codec_preferences, family_of

__all__ = ["PublisherSide", "drain_track"]

log = logging.getLogger(__name__)

# How often each node looks for live streams whose origin died unseen.
_ORPHANS_EVERY_S = 2.0


class PublisherSide(HubBase):
    """Publishing: :meth:`publish`, :meth:`feed`, :meth:`adopt_video_codec`, :meth:`watchdog`."""

    def on_grace_expired(
        self,
        end_stream: Callable[[str], Awaitable[None]],
        live_streams: Callable[[], Awaitable[list[str]]] | None = None,
    ) -> None:
        """``end_stream`` is called with a stream id whose publisher stayed away past
        ``reconnect_grace_s``; ``live_streams()`` lists every live stream's id, so that
        this node ends those whose origin died with nobody watching here."""
        self._end_stream = end_stream
        self._live_streams = live_streams

    def on_publisher_stale(self, going: Callable[[Session], None]) -> None:
        """Called with a publisher session just before it is closed for having sent no
        media for ``publisher_stale_s`` (by the watchdog, or to let a new one in)."""
        self._going_stale = going

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, stream_id: str, offer: Offer, subject: str) -> tuple[Session, str]:
        """Accept a publisher's offer; returns the session and the SDP answer.

        409 ``publisher_active`` while another publisher is connected and sending;
        :class:`PublishedElsewhere` while another node is the stream's origin. A
        publisher on this node that went quiet (``publisher_stale_s``) is replaced.
        """
        for kind, direction in offer.directions.items():
            if direction not in ("sendonly", "sendrecv"):
                raise Unprocessable(
                    f"the {kind} section is {direction}; a publisher must send",
                    code=ErrorCode.WRONG_DIRECTION,
                )
        async with self.origins.exclusive(stream_id):
            holder = await self.origins.claim(stream_id)
        if holder is not None and holder.url != self.origins.node.url:
            raise PublishedElsewhere(holder.url)
        if holder is not None:  # this node's previous run, whose claim has not expired
            raise Conflict(
                "this stream is published through another node",
                code=ErrorCode.PUBLISHER_ACTIVE,
                origin_url=holder.url,
            )
        media = self.stream_media(stream_id)
        try:
            video_codec = None
            if "video" in offer.codecs:
                video_codec = self._choose_publisher_codec(media, offer.codecs["video"])
            if "audio" in offer.codecs and AUDIO_CODEC not in offer.codecs["audio"]:
                raise Unprocessable("audio must be Opus", code=ErrorCode.CODEC_UNSUPPORTED)
            current = media.publisher
            if current is not None and not self._is_stale(media, current):
                raise Conflict(
                    "this stream already has a publisher", code=ErrorCode.PUBLISHER_ACTIVE
                )
        except Exception:
            self.forget_if_idle(media)
            raise
        if current is not None:
            log.info("stream %s: replacing quiet publisher %s", stream_id, current.id)
            self._close_stale(current)
        if media.upstream is not None:  # this node was an edge of a node now gone
            self._keep(asyncio.ensure_future(media.upstream.close()))

        pc = _aiortc.peer_connection(self.configuration())
        session = self._new_session(PUBLISHER, stream_id, pc, subject)
        session.video_codecs = () if video_codec is None else (video_codec,)
        media.publisher = session  # reserved before the first await: one publisher
        drains: list[asyncio.Task[None]] = []
        pc.on("track", lambda track: drains.append(drain_track(track)))
        try:
            for kind in offer.kinds:
                family = video_codec if kind == "video" else AUDIO_CODEC
                assert family is not None
                transceiver = pc.addTransceiver(kind, direction="recvonly")
                transceiver.setCodecPreferences(codec_preferences(kind, family))
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            # many encoders answer ICE consent checks only during the handshake
            _aiortc.keep_consent_while_receiving(pc)
            for transceiver in pc.getTransceivers():
                self.feed(media, transceiver)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception:
            if media.publisher is session:
                media.publisher = None
            self.sessions.pop(session.id, None)
            await _aiortc.close_peer(pc)
            self.forget_if_idle(media)
            raise
        session.drains = tuple(drains)
        if video_codec is not None:
            self.adopt_video_codec(media, video_codec)
        self._watch(session, media)
        self._media_changed(stream_id)
        self._keep(asyncio.ensure_future(self._note_published(stream_id)))
        if self._recorder is not None:
            try:
                self._recorder.record(stream_id, media.sources["video"], media.sources["audio"])
            except Exception:
                log.exception("stream %s: could not start recording", stream_id)
        return session, pc.localDescription.sdp

    async def _note_published(self, stream_id: str) -> None:
        try:
            await self.origins.note_published(stream_id)
        except (RedisError, OSError) as exc:  # the heartbeat cannot renew what is not there
            log.warning(
                "stream %s: not noted as published; if this node dies, only viewers on "
                "other nodes can end it: %s",
                stream_id,
                exc,
            )

    def _choose_publisher_codec(self, media: StreamMedia, offered: tuple[str, ...]) -> str:
        """The first of ``webrtc.video_codecs`` the offer has, preferring the stream's
        current codec, then one every viewer already negotiated (no viewer left out)."""
        relayed = [c for c in self._settings.video_codecs if c in offered]
        takers = [v.video_codecs for v in media.viewers.values() if v.video_codecs]
        if media.video_codec in relayed:
            relayed.remove(media.video_codec)
            relayed.insert(0, media.video_codec)
        for codec in relayed:
            if all(codec in codecs for codecs in takers):
                return codec
        if relayed:
            return relayed[0]
        wanted = ", ".join(self._settings.video_codecs)
        raise Unprocessable(
            f"the offer has no video codec this server relays ({wanted}; H.264 must use "
            "packetization-mode=1 with a baseline profile)",
            code=ErrorCode.CODEC_UNSUPPORTED,
        )

    def feed(self, media: StreamMedia, transceiver: RTCRtpTransceiver) -> str | None:
        """Let ``transceiver``'s received frames feed the stream's source of its kind.

        Call right after ``setRemoteDescription``. Keyframe requests of that source go
        to the sender as PLI. Returns the negotiated codec family.
        """
        source = media.sources[transceiver.kind]
        codecs = transceiver._codecs
        family = family_of(codecs[0].mimeType) if codecs else None
        if family is None:
            return None
        receiver = transceiver.receiver
        tap = _aiortc.tap_receiver(receiver, transceiver.kind, source.push)

        def request_keyframe() -> None:
            if tap.media_ssrc is not None:
                self._keep(_aiortc.send_pli(receiver, tap.media_ssrc))

        source.attach(family, request_keyframe if transceiver.kind == "video" else None)
        return family

    def adopt_video_codec(self, media: StreamMedia, codec: str) -> None:
        """The stream's video is ``codec`` from now on; viewers who did not negotiate it
        leave (the others' senders switch to it at its first keyframe)."""
        if codec == media.video_codec:
            return
        for viewer in list(media.viewers.values()):
            if viewer.video_codecs and codec not in viewer.video_codecs:
                log.info("stream %s: viewer %s cannot take %s", media.stream_id, viewer.id, codec)
                self._close_soon(viewer)
        media.video_codec = codec

    def _is_stale(self, media: StreamMedia, publisher: Session) -> bool:
        """Whether ``publisher`` has sent no media for ``publisher_stale_s`` (counted
        from when it connected, or was accepted if it has not yet)."""
        if publisher.closed:
            return True
        quiet_since = max(media.last_media_at, publisher.created_at, publisher.connected_at)
        return time.monotonic() - quiet_since > self._settings.publisher_stale_s

    def _close_stale(self, publisher: Session) -> None:
        if self._going_stale is not None and not publisher.closed:
            self._going_stale(publisher)
        self._close_soon(publisher)

    # -- watchdog ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the :meth:`watchdog`; :meth:`close` stops it."""
        self._watchdog = asyncio.create_task(self.watchdog(), name="media-watchdog")

    async def watchdog(self, interval_s: float = 0.5) -> None:
        """Close publishers that went quiet; end streams whose grace ran out.

        A connected publisher that has sent no media for ``publisher_stale_s`` (its
        encoder stopped, though its peer connection may still answer ICE consent) is
        closed, as if it had left: the stream turns ``reconnecting`` and its grace runs.

        The grace runs on every node where the stream is ``reconnecting``: on its origin,
        and on edges that saw the origin's media stop (its node may have died, and no
        other node would end the stream). Ending it is one state transition in Redis,
        which one node wins; a node that is not the origin first checks that no node
        has become the stream's origin since (that node decides then).

        A stream whose origin died while nobody watched it on another node has no edge
        to notice: every :data:`_ORPHANS_EVERY_S` each node also ends the live streams
        whose origin had accepted a publisher and that have had no origin past the
        record's TTL and the grace (:meth:`~livecast.ingest.origin.OriginRegistry.orphaned`).
        A stream made live with no publisher (a chat-only pre-show) stays.
        """
        grace = self._settings.reconnect_grace_s
        loop = asyncio.get_running_loop()
        orphans_at = loop.time() + _ORPHANS_EVERY_S
        sweeping: asyncio.Future[None] | None = None
        now = time.monotonic()
        while True:
            await asyncio.sleep(interval_s)
            before, now = now, time.monotonic()
            # a tick that came late found the loop busy: the media that arrived meanwhile
            # is still queued, so quiet is not judged until the next one
            on_time = now - before < 2 * interval_s
            if grace > 0 and loop.time() >= orphans_at and (sweeping is None or sweeping.done()):
                orphans_at = loop.time() + _ORPHANS_EVERY_S
                sweeping = asyncio.ensure_future(self._end_orphans(grace))
                self._keep(sweeping)
            for media in list(self.streams.values()):
                publisher = media.publisher
                if publisher is not None and publisher.connected:
                    if on_time and self._is_stale(media, publisher):
                        log.info(
                            "stream %s: the publisher sent no media for %s s; closing it",
                            media.stream_id,
                            self._settings.publisher_stale_s,
                        )
                        self._close_stale(publisher)
                elif (
                    media.state == MediaState.RECONNECTING
                    and grace > 0
                    and now - media.state_since > grace
                    and self._end_stream is not None
                ):
                    media.state_since = now  # one attempt per grace period
                    self._keep(asyncio.ensure_future(self._grace_over(media)))

    async def _end_orphans(self, grace: float) -> None:
        """End the live streams whose origin died and whose grace is over since."""
        if self._live_streams is None or self._end_stream is None:
            return
        try:
            live = await self._live_streams()
            candidates = [s for s in live if s not in self.origins.claimed]
            for stream_id, away_s in (await self.origins.orphaned(candidates, grace)).items():
                log.info(
                    "stream %s: no origin for %.1f s, no publisher back within the "
                    "reconnect grace; ending it",
                    stream_id,
                    away_s,
                )
                await self._end_stream(stream_id)
        except (RedisError, OSError) as exc:  # tried again at the next sweep
            if not self._orphans_failing:
                log.warning("cannot look for streams whose origin died: %s", exc)
            self._orphans_failing = True
            return
        except Exception:
            log.exception("could not look for streams whose origin died")
            return
        if self._orphans_failing:
            self._orphans_failing = False
            log.info("streams whose origin died can be looked for again")

    async def _grace_over(self, media: StreamMedia) -> None:
        stream_id = media.stream_id
        try:
            if stream_id not in self.origins.claimed:
                holder = await self.origins.lookup(stream_id)
                if holder is not None:  # published again, or waiting, through that node
                    if media.upstream is None and not media.viewers:
                        self._set_state(media, MediaState.IDLE, announce=False)
                        self.forget_if_idle(media)
                    return
            assert self._end_stream is not None
            await self._end_stream(stream_id)
        except (RedisError, OSError) as exc:  # tried again after another grace period
            log.warning("stream %s: not ended after the reconnect grace: %s", stream_id, exc)
        except Exception:
            log.exception("stream %s: could not end it after the reconnect grace", stream_id)


def drain_track(track: MediaStreamTrack) -> asyncio.Task[None]:
    """Read a received track until it ends, so nothing can queue on it unread."""

    async def drain() -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()

    return asyncio.ensure_future(drain())
