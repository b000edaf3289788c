"""Edge cascade: viewers on a node that is not a stream's origin, served by one pull.

When a viewer of a stream arrives at a node that does not hold its publisher, and the
stream's origin record (:mod:`livecast.ingest.origin`) names another node, this node
pulls the stream from the origin ONCE, as a WHEP client (a receive-only
``RTCPeerConnection``), and relays it to all of its viewers. On this node the pull is
what a publisher would be: its receivers feed the stream's
:class:`~livecast.ingest.relay.MediaSource` objects through the same frame tap, without
decoding, and its viewers read from them as usual. Their keyframe requests, merged by
the source, go up the pull as PLI to the origin, which forwards them to the publisher.

The pull authenticates with a short-lived edge token (:class:`EdgeTokens`) granted that
one stream, signed with the deployment's shared ``auth.secret`` under an issuer of its
own, so private streams cascade too, and the origin can tell a pull from a viewer: pulls
are exempt from ``max_viewers_per_stream``. Its ``DELETE`` carries a fresh one: the
pull's session URL at the origin needs an edge token of the node that opened it. Its
video codec is the origin's; edge viewers negotiate it, since the first viewer's answer
waits for the pull's.

Lifecycle, kept by :meth:`EdgeRelay.run` (owned by the app):

* the pull closes (``DELETE`` at the origin) ``webrtc.edge_linger_s`` after the stream's
  last viewer on this node left;
* if the pull drops (the origin closed it, or its connection failed), or the origin
  record comes to name another node, the viewers keep their connections and tracks, as
  through a publisher's reconnect, and the stream is pulled again, from wherever its
  origin is then;
* a viewer that arrived before any node published is pulled for as soon as an origin
  appears; a stream that ended (at its origin or anywhere) is ended here too, its
  viewers' connections closed;
* a pull that fails (refused, unreachable, never connected) is tried again after an
  exponential backoff with jitter (1 s doubling up to 30 s), by arriving viewers too,
  reset once a pull connects.

The stream's media state here follows the origin's as the pull sees it
(:meth:`~livecast.ingest.hub.MediaHub.follow_origin`): ``live`` while media arrives,
``reconnecting`` once none has for ``webrtc.publisher_stale_s``, or the origin's record
is gone (its node died: the record expired), or the pull dropped and no origin can be
found; ``reconnecting`` is announced to viewers at once, since a dead origin cannot,
and the hub's reconnect grace then ends the stream unless a publisher returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from redis.exceptions import RedisError
from yarl import URL

from livecast.aio import cancel_and_wait
from livecast.auth import ANONYMOUS, Identity, Role, TokenIssuer
from livecast.config import WebRtcSettings
from livecast.error_codes import ErrorCode
from livecast.errors import Unauthorized
from livecast.ingest import _aiortc
from livecast.ingest._hub import SHUTDOWN_CLOSE_S, close_within
from livecast.ingest.hub import MediaHub
from livecast.ingest.media import MediaState, StreamMedia
from livecast.ingest.origin import Origin, OriginRegistry
from livecast.ingest.publisher import drain_track
from livecast.ingest.sdp import AUDIO_CODEC, codec_preferences

__all__ = ["EdgePull", "EdgeRelay", "EdgeTokens", "PullState"]

log = logging.getLogger(__name__)

_SDP = "application/sdp"
_TICK_S = 0.5
# Viewers waiting for a stream nobody publishes look its origin up this often.
_LOOKUP_S = 1.0
# A failed pull is tried again after 1, 2, 4 ... s (at most 30), each 50-100 % of it.
_RETRY_S = 1.0
_RETRY_MAX_S = 30.0
# Refusals that will not go away by themselves: logged as a warning, once per stream.
_PERMANENT = frozenset({401, 403, 422, 429})
_DELETE_TIMEOUT_S = 2.0
# A viewer's WHEP answer waits this long at most for the pull's (an origin that stopped
# answering must not hold viewers up; the pull goes on in the background).
_PREPARE_WAIT_S = 5.0
# How often a pull checks that its origin is still the stream's origin.
_ORIGIN_CHECK_S = 1.0
_TOKEN_TTL_S = 300


class PullState(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


_MOVES = {
    PullState.CONNECTING: {PullState.CONNECTED, PullState.CLOSED},
    PullState.CONNECTED: {PullState.CLOSED},
    PullState.CLOSED: set[PullState](),
}


class EdgeTokens:
    """The tokens nodes pull streams from each other with.

    Signed with the deployment's shared secret like every token, but under an issuer of
    their own (``<auth.issuer>/edge``), which viewer tokens never carry: a token that
    verifies here was minted by a node to pull, whatever subject a viewer's may have.
    """

    def __init__(self, tokens: TokenIssuer, node_id: str) -> None:
        self._issuer = tokens.sub_issuer("edge")
        self._sub = f"edge:{node_id}"

    def issue(self, stream_id: str) -> str:
        """What this node shows an origin to pull ``stream_id``, private ones too."""
        return self._issuer.issue(
            sub=self._sub,
            name="livecast edge",
            role=Role.VIEWER,
            streams={stream_id},
            ttl_s=_TOKEN_TTL_S,
        )

    def verify(self, authorization: str | None) -> Identity | None:
        """The pulling node's identity if ``authorization`` carries an edge token."""
        try:
            who = self._issuer.identity_from_header(authorization)
        except Unauthorized:
            return None  # not an edge token: the caller checks it as a viewer's
        return None if who is ANONYMOUS else who


@dataclass(slots=True)
class _Attempts:
    """A stream's pull attempts: when one may be tried again, after how many failures in
    a row, which permanent refusal was warned about, when its origin was last looked up."""

    retry_at: float = 0.0
    failures: int = 0
    warned: int | None = None
    looked_up_at: float = -_LOOKUP_S


_NEVER = _Attempts()


class PullRefused(Exception):
    """The origin answered the pull's WHEP POST with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class EdgePull:
    """One stream pulled from its origin: a WHEP session there, a feed of sources here."""

    def __init__(
        self,
        media: StreamMedia,
        origin: Origin,
        pc: RTCPeerConnection,
        hub: MediaHub,
        http: aiohttp.ClientSession,
        tokens: EdgeTokens,
    ) -> None:
        self.media = media
        self.origin = origin
        self.pc = pc
        self.state = PullState.CONNECTING
        self.location: str | None = None  # the WHEP session URL at the origin
        self.idle_since: float | None = None  # loop time the last viewer left
        self.connected_at = 0.0  # monotonic time the pull connected
        self.checked_at = 0.0  # loop time the origin record was last compared
        self.drains: list[asyncio.Task[None]] = []
        self._hub = hub
        self._http = http
        self._tokens = tokens

    @property
    def stream_id(self) -> str:
        return self.media.stream_id

    def move(self, state: PullState) -> None:
        if state not in _MOVES[self.state]:
            raise RuntimeError(f"edge pull cannot go from {self.state.value} to {state.value}")
        self.state = state

    async def close(self) -> None:
        """Stop pulling: the sources wait for the next feed, the origin's session ends."""
        if self.state is PullState.CLOSED:
            return
        self.move(PullState.CLOSED)
        media = self.media
        if media.upstream is self:
            media.upstream = None
            for source in media.sources.values():
                source.detach()
        for drain in self.drains:
            drain.cancel()
        try:
            await _aiortc.close_peer(self.pc)
            await self.delete()
        finally:
            self._hub.forget_if_idle(media)

    async def delete(self) -> None:
        """End the pull's session at the origin (best effort: it also times out there),
        once, with a fresh edge token (the session URL needs the token it was opened
        with, whose subject is this node)."""
        location, self.location = self.location, None
        if location is None:
            return
        timeout = aiohttp.ClientTimeout(total=_DELETE_TIMEOUT_S)
        headers = {"Authorization": f"Bearer {self._tokens.issue(self.stream_id)}"}
        try:
            async with self._http.delete(location, headers=headers, timeout=timeout) as resp:
                if resp.status not in (200, 204, 404):
                    log.info("stream %s: origin answered %s to DELETE", self.stream_id, resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("stream %s: could not DELETE the pull at the origin: %s", self.stream_id, exc)


class EdgeRelay:
    """Every pull of this node; started and closed with the app."""

    def __init__(
        self,
        hub: MediaHub,
        origins: OriginRegistry,
        settings: WebRtcSettings,
        tokens: EdgeTokens,
        has_ended: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.tokens = tokens
        self._hub = hub
        self._has_ended = has_ended
        self._origins = origins
        self._settings = settings
        self._http: aiohttp.ClientSession | None = None
        self._opening: dict[str, asyncio.Task[None]] = {}
        self._attempts: dict[str, _Attempts] = {}
        self._redis_unreachable = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self._closing: set[asyncio.Future[None]] = set()  # pulls closing: let them DELETE
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._settings.connect_timeout_s)
        )
        self._runner = asyncio.create_task(self.run(), name="media-edge-relay")

    async def close(self) -> None:
        """Close every pull (app shutdown) and stop the relay's tasks; pulls already
        closing get a moment to say DELETE to their origin."""
        await cancel_and_wait(self._runner, *self._opening.values(), *self._tasks)
        pulls = [m.upstream for m in self._hub.streams.values() if m.upstream is not None]
        named = {f"pull of stream {p.stream_id}": p.close() for p in pulls}
        for name in await close_within(named, SHUTDOWN_CLOSE_S + _DELETE_TIMEOUT_S):
            log.warning("%s still closing at shutdown: abandoned", name)
        if self._closing:
            _, late = await asyncio.wait(list(self._closing), timeout=_DELETE_TIMEOUT_S)
            await cancel_and_wait(*late)
        if self._http is not None:
            await self._http.close()

    # -- viewers arriving ---------------------------------------------------------------

    async def prepare(self, stream_id: str) -> None:
        """Before a viewer of ``stream_id`` joins: if another node is the stream's origin,
        have the pull from it negotiated (so the viewer gets its codec).

        A pull that cannot be made is logged, not raised: the viewer is let in and waits,
        as for a publisher, and the pull is tried again; not before its backoff is over,
        however many viewers arrive meanwhile.
        """
        opening = self._opening.get(stream_id)
        if opening is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(opening), _PREPARE_WAIT_S)
            return
        media = self._hub.streams.get(stream_id)
        if media is not None and (media.publisher is not None or media.upstream is not None):
            return
        if stream_id in self._origins.claimed:
            return
        if asyncio.get_running_loop().time() < self._retry_at(stream_id):
            return
        origin = await self._origins.lookup(stream_id)
        me = self._origins.node
        # (a record with this node's URL but another id: this node's previous run, whose
        # claim has not expired yet; nothing to pull from)
        if origin is None or origin.node_id == me.node_id or origin.url == me.url:
            return
        await self._pull(stream_id, origin)

    async def _pull(self, stream_id: str, origin: Origin) -> None:
        opening = self._opening.get(stream_id)
        if opening is None:
            opening = asyncio.create_task(self._open_logged(stream_id, origin))
            self._opening[stream_id] = opening
            opening.add_done_callback(lambda _: self._opening.pop(stream_id, None))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(opening), _PREPARE_WAIT_S)

    async def _open_logged(self, stream_id: str, origin: Origin) -> None:
        try:
            await self._open(stream_id, origin)
        except PullRefused as exc:
            self._back_off(stream_id)
            attempts = self._attempts.setdefault(stream_id, _Attempts())
            if exc.status in _PERMANENT and attempts.warned != exc.status:
                attempts.warned = exc.status
                log.warning("stream %s: origin %s refused the pull: %s", stream_id, origin.url, exc)
            else:
                log.info("stream %s: origin %s refused the pull: %s", stream_id, origin.url, exc)
            if exc.status == 409 and exc.code == ErrorCode.STREAM_ENDED:
                await self._hub.close_stream(stream_id)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            self._back_off(stream_id)
            log.info("stream %s: could not pull from %s: %s", stream_id, origin.url, exc)
        except Exception:
            self._back_off(stream_id)
            log.exception("stream %s: could not pull from %s", stream_id, origin.url)

    def _back_off(self, stream_id: str) -> None:
        """A pull of the stream failed: the next one waits twice as long as the last."""
        attempts = self._attempts.setdefault(stream_id, _Attempts())
        attempts.failures += 1
        delay = min(_RETRY_MAX_S, _RETRY_S * 2 ** (attempts.failures - 1))
        attempts.retry_at = asyncio.get_running_loop().time() + delay * random.uniform(0.5, 1.0)

    def _retry_at(self, stream_id: str) -> float:
        attempts = self._attempts.get(stream_id)
        return attempts.retry_at if attempts is not None else 0.0

    def _connected(self, stream_id: str) -> None:
        attempts = self._attempts.get(stream_id)
        if attempts is not None:
            attempts.retry_at, attempts.failures, attempts.warned = 0.0, 0, None

    async def _open(self, stream_id: str, origin: Origin) -> None:
        hub = self._hub
        media = hub.stream_media(stream_id)
        if media.publisher is not None or media.upstream is not None:
            return
        assert self._http is not None
        pc = _aiortc.peer_connection(hub.configuration())
        pull = EdgePull(media, origin, pc, hub, self._http, self.tokens)
        media.upstream = pull  # reserved before the first await: one pull per stream
        try:
            video = pc.addTransceiver("video", direction="recvonly")
            video.setCodecPreferences(self._video_preferences(media.video_codec))
            audio = pc.addTransceiver("audio", direction="recvonly")
            audio.setCodecPreferences(codec_preferences("audio", AUDIO_CODEC))
            pc.on("track", lambda track: pull.drains.append(drain_track(track)))
            await pc.setLocalDescription(await pc.createOffer())
            if not self._current(pull):
                await pull.close()
                return
            answer = await self._post(pull, pc.localDescription.sdp)
            if not self._current(pull):  # closed while the origin answered
                await pull.close()
                await pull.delete()  # a close before the answer knew no session to end
                return
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            if not self._current(pull):
                await pull.close()
                return
            for transceiver in pc.getTransceivers():
                family = hub.feed(media, transceiver)
                if transceiver.kind == "video" and family is not None:
                    hub.adopt_video_codec(media, family)
        except BaseException:
            await pull.close()
            raise
        self._watch(pull)
        log.info("stream %s: pulling from origin %s", stream_id, origin.url)

    @staticmethod
    def _current(pull: EdgePull) -> bool:
        """Whether ``pull`` still feeds its stream (it may have closed, and another pull
        or a publisher taken its place, at any await of :meth:`_open`)."""
        return pull.state is not PullState.CLOSED and pull.media.upstream is pull

    async def _post(self, pull: EdgePull, offer: str) -> str:
        """POST the offer to the origin's WHEP endpoint; the answer."""
        assert self._http is not None
        url = f"{pull.origin.url}/whep/{pull.stream_id}"
        if pull.media.sources["video"].head > 0:
            # a re-pull: the origin's catch-up burst would replay frames relayed already
            url += "?join=fresh"
        headers = {
            "Content-Type": _SDP,
            "Authorization": f"Bearer {self.tokens.issue(pull.stream_id)}",
        }
        async with self._http.post(url, data=offer, headers=headers) as resp:
            if resp.status != 201:
                code, message = "unknown", await resp.text()
                with contextlib.suppress(ValueError, KeyError, TypeError, aiohttp.ClientError):
                    error = (await resp.json())["error"]
                    code, message = str(error["code"]), str(error["message"])
                raise PullRefused(resp.status, code, message[:200])
            pull.location = str(resp.url.join(URL(resp.headers["Location"])))
            return await resp.text()

    def _video_preferences(self, first: str | None) -> list[RTCRtpCodecCapability]:
        order = [first] if first else []
        order += [c for c in self._settings.video_codecs if c not in order]
        return codec_preferences("video", *order)

    def _watch(self, pull: EdgePull) -> None:
        pc = pull.pc

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            if state == "connected" and pull.state is PullState.CONNECTING:
                pull.move(PullState.CONNECTED)
                pull.connected_at = time.monotonic()
                self._connected(pull.stream_id)
                pull.media.sources["video"].request_keyframe()
            elif state in ("failed", "closed") and pull.state is not PullState.CLOSED:
                log.info("stream %s: the pull from %s dropped", pull.stream_id, pull.origin.url)
                if pull.state is PullState.CONNECTING:
                    self._back_off(pull.stream_id)
                self._close_soon(pull)

        def check_connected() -> None:
            if pull.state is PullState.CONNECTING:
                log.info("stream %s: the pull never connected; closing", pull.stream_id)
                self._back_off(pull.stream_id)
                self._close_soon(pull)

        asyncio.get_running_loop().call_later(self._settings.connect_timeout_s, check_connected)

    # -- upkeep -------------------------------------------------------------------------

    async def run(self) -> None:
        """Close pulls nobody watches, and pull (again) for viewers left without one."""
        loop = asyncio.get_running_loop()
        linger = self._settings.edge_linger_s
        while True:
            await asyncio.sleep(_TICK_S)
            now = loop.time()
            streams = self._hub.streams
            self._forget_gone(streams.keys(), now)
            for stream_id, media in list(streams.items()):
                pull = media.upstream
                if pull is not None:
                    if media.viewers:
                        pull.idle_since = None
                    elif pull.idle_since is None:
                        pull.idle_since = now
                    elif now - pull.idle_since >= linger:
                        self._close_soon(pull)
                        continue
                    if pull.state is PullState.CONNECTED:
                        self._follow_media(pull)
                        if now - pull.checked_at >= _ORIGIN_CHECK_S:
                            pull.checked_at = now
                            self._keep(self._check_origin(pull))
                    continue
                if (
                    media.viewers
                    and media.publisher is None
                    and stream_id not in self._origins.claimed
                    and stream_id not in self._opening
                    and now >= self._retry_at(stream_id)
                    and now - self._attempts.get(stream_id, _NEVER).looked_up_at >= _LOOKUP_S
                ):
                    self._attempts.setdefault(stream_id, _Attempts()).looked_up_at = now
                    self._keep(self._serve_waiting(stream_id))

    def _follow_media(self, pull: EdgePull) -> None:
        """The stream is live here while the pull brings media, reconnecting once it
        has brought none for ``publisher_stale_s`` (not before it brought any: the
        publisher may still be connecting)."""
        media = pull.media
        quiet_since = max(media.last_media_at, pull.connected_at)
        quiet = time.monotonic() - quiet_since > self._settings.publisher_stale_s
        if quiet and media.state == MediaState.LIVE:
            log.info("stream %s: no media from origin %s", pull.stream_id, pull.origin.url)
            self._hub.follow_origin(media, MediaState.RECONNECTING)
        elif not quiet and media.state in (MediaState.IDLE, MediaState.RECONNECTING):
            self._hub.follow_origin(media, MediaState.LIVE)

    def _forget_gone(self, present: Iterable[str], now: float) -> None:
        """Forget the pull attempts of streams no longer here, once their backoff is over."""
        for stream_id in set(self._attempts).difference(present):
            if now >= self._attempts[stream_id].retry_at:
                del self._attempts[stream_id]

    async def _check_origin(self, pull: EdgePull) -> None:
        """Re-pull if another node became the stream's origin (the one pulled from lost
        its claim, or died and its connection has not timed out yet)."""
        try:
            origin = await self._origins.lookup(pull.stream_id)
        except (RedisError, OSError) as exc:
            self._redis_down(pull.stream_id, exc)
            return
        except Exception:
            log.exception("stream %s: could not look up the stream's origin", pull.stream_id)
            return
        self._redis_back()
        if pull.state is PullState.CLOSED:
            return
        if origin is None:
            # its node died (or let the stream go): no media will come from it
            log.info("stream %s: origin %s is gone", pull.stream_id, pull.origin.url)
            if pull.media.state == MediaState.LIVE:
                self._hub.follow_origin(pull.media, MediaState.RECONNECTING)
            self._close_soon(pull)
        elif origin.node_id != pull.origin.node_id:
            log.info("stream %s: origin moved to %s", pull.stream_id, origin.url)
            self._close_soon(pull)

    async def _serve_waiting(self, stream_id: str) -> None:
        """Viewers here and nothing feeding them: pull from the origin if there is one;
        if there is none because the stream ended (its origin let go of it, or it was
        ended through another node), end it here too."""
        try:
            await self.prepare(stream_id)
            media = self._hub.streams.get(stream_id)
            if (
                media is not None
                and media.upstream is None
                and media.publisher is None
                and stream_id not in self._origins.claimed
            ):
                if await self._has_ended(stream_id):
                    await self._hub.close_stream(stream_id)
                elif media.state == MediaState.LIVE and stream_id not in self._opening:
                    # the pull dropped and none could be made again
                    self._hub.follow_origin(media, MediaState.RECONNECTING)
        except (RedisError, OSError) as exc:
            self._redis_down(stream_id, exc)
            return
        except Exception:
            log.exception("stream %s: could not look up the stream's origin", stream_id)
            return
        self._redis_back()

    def _redis_down(self, stream_id: str, exc: Exception) -> None:
        """Redis out of reach: one warning until it answers again, not one per stream
        and second."""
        if not self._redis_unreachable:
            self._redis_unreachable = True
            log.warning("stream %s: cannot look up stream origins (%s); retrying", stream_id, exc)

    def _redis_back(self) -> None:
        if self._redis_unreachable:
            self._redis_unreachable = False
            log.info("stream origins can be looked up again")

    def _close_soon(self, pull: EdgePull) -> None:
        closing = asyncio.ensure_future(pull.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def _keep(self, coro: Coroutine[Any, Any, None]) -> None:
        future = asyncio.ensure_future(coro)
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)
