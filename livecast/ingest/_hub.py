"""What both sides of :class:`~livecast.ingest.hub.MediaHub` share: :class:`HubBase`.

The registry of this node's streams and sessions, each session's lifecycle (connect
timeout, trickle ICE, close), the stream's ``media.state`` events, the stream's origin
claim (kept while this node publishes or waits for its publisher, released after),
the listeners told when a stream's media here changes hands (:meth:`HubBase.on_media_change`)
and shutdown. The publisher side (:mod:`livecast.ingest.publisher`) and the viewer side
(:mod:`livecast.ingest.viewer`) build on it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from livecast.aio import cancel_and_wait
from livecast.config import WebRtcSettings
from livecast.error_codes import ErrorCode
from livecast.errors import NotFound, Unprocessable
from livecast.events import Event
from livecast.ingest import _aiortc
from livecast.ingest.errors import PreconditionFailed
from livecast.ingest.media import (
    PUBLISHER,
    VIEWER,
    MediaState,
    MediaStateChanged,
    MediaStateData,
    MediaStateName,
    Session,
    StreamMedia,
)
from livecast.ingest.nodes import session_id
from livecast.ingest.origin import OriginRegistry
from livecast.ingest.recorder import Recorder
from livecast.ingest.relay import RelayTuning
from livecast.ingest.sdp import TrickleFragment

__all__ = ["SHUTDOWN_CLOSE_S", "EventSink", "HubBase", "MediaListener", "close_within"]

log = logging.getLogger(__name__)

EventSink = Callable[[Event], Awaitable[None]]
MediaListener = Callable[[str], None]

# At shutdown, how long peer connections get to close. aiortc's close waits on every
# transport of the connection; one still closing then is abandoned to the process exit
# (and logged), so a stuck transport never holds the shutdown.
SHUTDOWN_CLOSE_S = 3.0


async def close_within(closing: Mapping[str, Awaitable[None]], timeout_s: float) -> list[str]:
    """Run the ``closing`` awaitables together for at most ``timeout_s``; cancel the ones
    still running then and return their names. Errors are logged, not raised."""
    futures = {name: asyncio.ensure_future(aw) for name, aw in closing.items()}
    if not futures:
        return []
    await asyncio.wait(futures.values(), timeout=timeout_s)
    late = [name for name, future in futures.items() if not future.done()]
    for name, future in futures.items():
        if future.done() and not future.cancelled() and (exc := future.exception()) is not None:
            log.warning("%s did not close cleanly: %r", name, exc)
    await cancel_and_wait(*(futures[name] for name in late))
    return late


class HubBase:
    """The streams and sessions of this node, their lifecycle and their origin claims."""

    def __init__(
        self,
        settings: WebRtcSettings,
        publish_event: EventSink,
        origins: OriginRegistry,
        recorder: Recorder | None = None,
    ) -> None:
        self._settings = settings
        self._recorder = recorder
        self._publish_event = publish_event
        self.origins = origins
        self._tuning = RelayTuning(
            frame_buffer=settings.frame_buffer,
            keyframe_min_interval_s=settings.keyframe_min_interval_ms / 1000,
            keyframe_retry_s=settings.keyframe_retry_ms / 1000,
            gop_cache_s=settings.gop_cache_s,
            gop_cache_bytes=settings.gop_cache_bytes,
        )
        self.streams: dict[str, StreamMedia] = {}
        self.sessions: dict[str, Session] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._end_stream: Callable[[str], Awaitable[None]] | None = None
        self._going_stale: Callable[[Session], None] | None = None
        self._live_streams: Callable[[], Awaitable[list[str]]] | None = None
        self._orphans_failing = False  # Redis did not answer the last look for them
        self._media_listeners: list[MediaListener] = []
        _aiortc.check_compatible()
        _aiortc.use_fast_clock()
        _aiortc.cache_host_addresses()
        _aiortc.bind_host_candidates_directly()
        _aiortc.accept_any_dtls_peer()
        _aiortc.quiet_ice_logs()

    # -- configuration ----------------------------------------------------------------

    def configuration(self) -> RTCConfiguration:
        servers = [
            RTCIceServer(
                urls=url,
                username=self._settings.ice_username or None,
                credential=self._settings.ice_credential or None,
            )
            if url.startswith("turn")
            else RTCIceServer(urls=url)
            for url in self._settings.ice_servers
        ]
        # An empty list (not None): aiortc would otherwise use a public STUN server.
        return RTCConfiguration(iceServers=servers)

    # -- queries ------------------------------------------------------------------------

    def media(self, stream_id: str) -> StreamMedia | None:
        return self.streams.get(stream_id)

    def viewer_count(self, stream_id: str) -> int:
        media = self.streams.get(stream_id)
        return len(media.viewers) if media else 0

    def node_viewers(self) -> int:
        """WHEP sessions of this node over all its streams, other nodes' pulls left out."""
        return sum(
            not viewer.edge for media in self.streams.values() for viewer in media.viewers.values()
        )

    def session(self, session_id: str, role: str, stream_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None or session.role != role or session.stream_id != stream_id:
            raise NotFound("no such session (it may have ended)", code=ErrorCode.SESSION_NOT_FOUND)
        return session

    def stream_media(self, stream_id: str) -> StreamMedia:
        """The stream's media on this node, made if there is none yet."""
        media = self.streams.get(stream_id)
        if media is None:
            media = self.streams[stream_id] = StreamMedia(stream_id, self._tuning)
        return media

    # -- listeners ----------------------------------------------------------------------

    def on_media_change(self, listener: MediaListener) -> Callable[[], None]:
        """Have ``listener(stream_id)`` called whenever the stream's media on this node
        changes hands: a publisher was accepted (its sources carry its codecs), this
        node lost or let go of the stream's origin claim, or the stream's
        :class:`StreamMedia` left this node. It is called synchronously, after the
        change, and must not raise (what it raises is logged). Returns the function
        that stops the calls."""
        self._media_listeners.append(listener)
        return lambda: self._media_listeners.remove(listener)

    def _media_changed(self, stream_id: str) -> None:
        for listener in list(self._media_listeners):
            try:
                listener(stream_id)
            except Exception:
                log.exception("stream %s: a media listener failed", stream_id)

    # -- sessions -----------------------------------------------------------------------

    def _new_session(
        self, role: str, stream_id: str, pc: RTCPeerConnection, subject: str
    ) -> Session:
        session = Session(
            # the node's id after the random part: any node finds the one holding it
            id=session_id(self.origins.node.node_id),
            role=role,
            stream_id=stream_id,
            pc=pc,
            etag=f'"{secrets.token_hex(8)}"',
            subject=subject,
            created_at=time.monotonic(),
        )
        self.sessions[session.id] = session
        return session

    def _watch(self, session: Session, media: StreamMedia) -> None:
        pc = session.pc

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            if state == "connected" and not session.connected:
                session.connected = True
                session.connected_at = time.monotonic()
                if session.role == PUBLISHER:
                    self._set_state(media, MediaState.LIVE)
                    media.sources["video"].request_keyframe()
            elif state in ("failed", "closed"):
                self._close_soon(session)

        def check_connected() -> None:
            if not session.connected and not session.closed:
                log.info("%s session %s never connected; closing", session.role, session.id)
                self._close_soon(session)

        asyncio.get_running_loop().call_later(self._settings.connect_timeout_s, check_connected)

    async def patch(
        self, session: Session, fragment: TrickleFragment, if_match: str | None
    ) -> None:
        """Trickle ICE (RFC 9725 4.3.1). ICE restarts are refused with 422."""
        if if_match is not None and if_match != "*" and if_match != session.etag:
            raise PreconditionFailed("If-Match does not name this session's current ETag")
        remote = session.pc.remoteDescription
        current_ufrag = ""
        if remote is not None:
            for line in remote.sdp.splitlines():
                if line.startswith("a=ice-ufrag:"):
                    current_ufrag = line.split(":", 1)[1].strip()
                    break
        if if_match == "*" or (fragment.ice_ufrag and fragment.ice_ufrag != current_ufrag):
            raise Unprocessable(
                "ICE restarts are not supported", code=ErrorCode.ICE_RESTART_UNSUPPORTED
            )
        mids = [t.mid for t in session.pc.getTransceivers()]
        for mid, candidate in fragment.candidates:
            candidate.sdpMid = mid or (mids[0] if mids else None)
            await session.pc.addIceCandidate(candidate)
        if fragment.end_of_candidates:
            await session.pc.addIceCandidate(None)

    async def end(self, session: Session) -> None:
        """End one session (DELETE): close its peer connection and let go of it."""
        await self._close(session)

    def _close_soon(self, session: Session) -> None:
        if not session.closed:
            self._keep(asyncio.ensure_future(self._close(session)))

    async def _close(self, session: Session) -> None:
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.id, None)
        media = self.streams.get(session.stream_id)
        for track in session.tracks:
            track.stop()
        if media is not None:
            if session.role == PUBLISHER and media.publisher is session:
                media.publisher = None
                for source in media.sources.values():
                    source.detach()
                # also when it never connected: publishing made the stream live, and
                # the reconnect grace is what ends a stream nobody publishes to; only
                # the origin waits (a node that lost its claim has nothing to wait for)
                origin = session.stream_id in self.origins.claimed
                if origin and media.state in (MediaState.LIVE, MediaState.IDLE):
                    self._set_state(media, MediaState.RECONNECTING)
            elif session.role == VIEWER:
                media.viewers.pop(session.id, None)
        try:
            await _aiortc.close_peer(session.pc)
        finally:
            for drain in session.drains:
                drain.cancel()
            if media is not None:
                self.forget_if_idle(media)

    def forget_if_idle(self, media: StreamMedia) -> None:
        """Let go of a stream nobody publishes, watches or pulls on this node, and of
        its origin claim once this node no longer publishes or waits for a publisher."""
        idle = media.publisher is None and not media.viewers and media.upstream is None
        waiting = media.state == MediaState.RECONNECTING
        if idle and not waiting and self.streams.get(media.stream_id) is media:
            del self.streams[media.stream_id]
            self._close_media(media)
            self._media_changed(media.stream_id)
        self._settle_origin(media.stream_id)

    def _close_media(self, media: StreamMedia) -> None:
        for source in media.sources.values():
            source.close()
        if self._recorder is not None:
            self._recorder.finish(media.stream_id)

    def _needs_origin(self, stream_id: str) -> bool:
        """Whether this node must keep the stream's origin claim: it has its publisher,
        or waits for it to come back."""
        media = self.streams.get(stream_id)
        return media is not None and (
            media.publisher is not None or media.state == MediaState.RECONNECTING
        )

    def _settle_origin(self, stream_id: str) -> None:
        if stream_id in self.origins.claimed and not self._needs_origin(stream_id):
            self._keep(asyncio.ensure_future(self._release_origin(stream_id)))

    async def _release_origin(self, stream_id: str) -> None:
        try:
            async with self.origins.exclusive(stream_id):
                # decided before; a publisher may have claimed the stream since
                if stream_id in self.origins.claimed and not self._needs_origin(stream_id):
                    await self.origins.release(stream_id)
                    self._media_changed(stream_id)
        except Exception:
            log.exception("stream %s: could not release the origin claim", stream_id)

    def lose_origin(self, stream_id: str) -> None:
        """Another node holds the stream's origin claim now: stop publishing and
        recording here, and let go of the stream unless viewers remain."""
        media = self.streams.get(stream_id)
        if media is None:
            return
        if media.publisher is not None:
            self._close_soon(media.publisher)
        self._set_state(media, MediaState.IDLE)
        if self._recorder is not None:
            self._recorder.finish(stream_id)
        self._media_changed(stream_id)
        self.forget_if_idle(media)

    async def close_stream(self, stream_id: str) -> None:
        """The stream ended: close every session of it."""
        media = self.streams.get(stream_id)
        if media is None:
            self._settle_origin(stream_id)
            return
        self._set_state(media, MediaState.ENDED)
        sessions = list(media.viewers.values())
        if media.publisher is not None:
            sessions.append(media.publisher)
        pending = [self._close(s) for s in sessions]
        if media.upstream is not None:
            pending.append(media.upstream.close())
        await asyncio.gather(*pending, return_exceptions=True)
        if self.streams.get(stream_id) is media:
            del self.streams[stream_id]
        self._close_media(media)
        self._media_changed(stream_id)
        self._settle_origin(stream_id)

    # -- state ---------------------------------------------------------------------------

    def _set_state(self, media: StreamMedia, state: str, *, announce: bool = True) -> None:
        if media.state == state:
            return
        media.state = state
        media.state_since = time.monotonic()
        if announce:
            data = MediaStateData(state=cast(MediaStateName, state), video_codec=media.video_codec)
            event = MediaStateChanged(stream=media.stream_id, data=data)
            self._keep(asyncio.ensure_future(self._emit(event)))

    def follow_origin(self, media: StreamMedia, state: str) -> None:
        """On an edge: the stream's media state as this node's pull sees it. Viewers
        (on every node) are told ``reconnecting``: the origin may be dead and unable to
        tell them. ``live`` is not announced: an origin that is alive says so itself."""
        self._set_state(media, state, announce=state != MediaState.LIVE)

    async def _emit(self, event: MediaStateChanged) -> None:
        try:
            await self._publish_event(event)
        except Exception:
            log.exception("stream %s: could not publish %s", event.stream, event)

    def _keep(self, future: asyncio.Future[Any]) -> None:
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Close every peer connection (app shutdown), giving them
        :data:`SHUTDOWN_CLOSE_S` together."""
        named = {
            f"{session.role} session {session.id} of stream {session.stream_id}": (
                self._close(session)
            )
            for session in list(self.sessions.values())
        }
        for name in await close_within(named, SHUTDOWN_CLOSE_S):
            log.warning("%s still closing after %s s: abandoned", name, SHUTDOWN_CLOSE_S)
        closed = list(self.streams.values())
        self.streams.clear()
        for media in closed:
            self._close_media(media)
            self._media_changed(media.stream_id)
        await cancel_and_wait(self._watchdog, *self._tasks)
