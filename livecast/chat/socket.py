"""``GET /ws/streams/{id}``: one viewer's WebSocket.

Connect with subprotocol ``livecast.v1.json`` (text frames; also used when none is
asked for) or ``livecast.v1.msgpack`` (binary frames). Identify with ``?token=`` or a
first ``{"type": "auth", "token": ...}`` frame; anonymous viewers only read. Add
``?since=<offset>`` when reconnecting to recover the missed chat events.

The server sends one ``hello`` first (:class:`~livecast.chat.events.Hello`)::

    {"type": "hello", "stream": id, "data": {
        "stream": {...}, "you": {"id", "name", "role", "moderator"} | null,
        "pinned": {...} | null, "deals": [...], "state": {...},
        "likes": int, "viewers": int,
        "chat": [message, ...],        # the last messages; empty when recovered
        "slow_mode_s": int,            # 0 when off; changes arrive as chat.settings
        "offset": "<newest offset>", "recovered": bool}}

The stored pin, deals and chat entries it carries are read back as their types; one that
no longer fits them is logged and left out rather than failing the connection.

With ``recovered: true`` the missed ``chat.message``/``chat.deleted`` events follow, in
order; without it (no ``since``, or recovery impossible) ``chat`` is the fresh history.

Client frames: ``chat.send``, ``like``, ``ping``, ``auth``; hosts also ``chat.delete``,
``mod.ban``, ``mod.unban``, ``mod.slow``, ``mod.words``. A bad frame gets an ``error``
event (``malformed_json``, ``unknown_type``, ``invalid_field``, ``unauthorized``,
``forbidden``, or a chat refusal code; ``redis_unavailable`` when Redis did not answer)
and changes nothing. The codes, and the close codes with whether the client should
reconnect, are :mod:`livecast.error_codes`. Every event and frame is described by the
AsyncAPI document (:mod:`livecast.asyncapi`, ``GET /api/asyncapi.json``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypeVar

import msgspec
from aiohttp import WSMsgType, web
from redis.exceptions import RedisError

from livecast.appkeys import STREAMS, TOKENS
from livecast.auth import Identity
from livecast.chat._keys import VIEW_SOURCES
from livecast.chat.events import (
    AuthOk,
    AuthOkData,
    ChatAck,
    ChatAckData,
    ChatDeleted,
    ChatMessage,
    ChatMessageData,
    Hello,
    HelloData,
    HelloStream,
    ModAck,
    ModAckData,
    Pong,
    PongData,
    You,
)
from livecast.chat.hub import Viewer
from livecast.chat.service import CHAT, ChatService
from livecast.chat.wire import (
    MSGPACK_PROTOCOL,
    PROTOCOLS,
    Auth,
    ChatDelete,
    ChatSend,
    ClientFrame,
    Like,
    ModBan,
    ModSlow,
    ModUnban,
    ModWords,
    Ping,
    decode_client_frame,
    error_event,
    is_offset,
)
from livecast.error_codes import CloseCode, ErrorCode
from livecast.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    InternalError,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from livecast.events import Event
from livecast.http import identity
from livecast.inventory.deals import Deal
from livecast.inventory.pins import PinCard
from livecast.metrics import METRICS
from livecast.redisdb import UNAVAILABLE_ERRORS
from livecast.streams.registry import Stream, StreamState

__all__ = ["routes"]

log = logging.getLogger(__name__)
# Redis cannot serve now, or the socket's own transport failed: the client may come back.
_UNAVAILABLE: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, OSError)
# Refusals of a frame that count towards ``chat.max_bad_frames``.
_BAD_FRAME_CODES = frozenset(
    {ErrorCode.MALFORMED_JSON, ErrorCode.UNKNOWN_TYPE, ErrorCode.INVALID_FIELD}
)

routes = web.RouteTableDef()


@routes.get("/ws/streams/{stream_id}")
async def stream_socket(request: web.Request) -> web.StreamResponse:
    service = request.app[CHAT]
    stream_id = request.match_info["stream_id"]
    async with service.admission:
        stream = await request.app[STREAMS].find(stream_id)
    if stream is None:
        raise NotFound(f"no stream {stream_id!r}", code=ErrorCode.STREAM_NOT_FOUND)
    caller = identity(request, allow_query=True)
    _check_protocols(request)
    since = request.query.get("since")
    if since is not None and not is_offset(since):
        raise BadRequest(f"since={since!r} is not an offset like 1700000000000-0")
    source = request.query.get("source", "live")
    if source not in ("live", *VIEW_SOURCES):
        raise BadRequest(
            f"source={source[:40]!r} is not live, replay or clip", code=ErrorCode.INVALID_QUERY
        )
    settings = service.settings
    ws = web.WebSocketResponse(
        protocols=PROTOCOLS,
        compress=False,
        max_msg_size=settings.max_frame_bytes,
        heartbeat=settings.ping_interval_s or None,
    )
    await ws.prepare(request)
    binary = ws.ws_protocol == MSGPACK_PROTOCOL
    transport = request.transport
    if transport is None:
        return ws
    viewer = Viewer(ws, transport, stream_id, binary=binary)
    if stream.state is not StreamState.ENDED:
        source = "live"
    elif source == "live":
        source = "replay"
    session = _Session(request.app, stream, viewer, caller, request.remote or "", source)
    try:
        async with service.admission:
            await service.hub.join(viewer)
            await session.send_hello(since)
        await session.serve()
    except _UNAVAILABLE as exc:
        log.warning("live events socket for %s failed: %s", stream_id, exc)
        await ws.close(code=CloseCode.TRY_AGAIN_LATER, message=b"live events unavailable")
    except Exception:
        # The upgrade is done: an HTTP error page written now would corrupt the socket.
        log.exception("live events socket for %s failed", stream_id)
        await ws.close(code=CloseCode.INTERNAL_ERROR, message=b"internal error")
    finally:
        service.hub.leave(viewer)
    return ws


def _check_protocols(request: web.Request) -> None:
    """No subprotocol asked for means JSON; asking only for unknown ones is a 400."""
    offered = [
        p.strip()
        for header in request.headers.getall("Sec-WebSocket-Protocol", [])
        for p in header.split(",")
        if p.strip()
    ]
    if offered and not set(offered) & set(PROTOCOLS):
        raise BadRequest(
            f"none of the subprotocols {offered} is supported; use one of {list(PROTOCOLS)}",
            code=ErrorCode.UNSUPPORTED_SUBPROTOCOL,
        )


class _Session:
    """One connection's identity, moderation rights and frame handling."""

    def __init__(
        self,
        app: web.Application,
        stream: Stream,
        viewer: Viewer,
        caller: Identity,
        remote: str,
        source: str = "live",
    ) -> None:
        self.app = app
        self.source = source  # where the viewer watches: live, replay or clip
        self.service: ChatService = app[CHAT]
        self.stream = stream
        self.viewer = viewer
        self.caller = caller
        viewer.host = self.is_host
        self.remote = remote
        self.bad_frames = 0
        self.like_window_start = 0.0
        self.likes_in_window = 0

    @property
    def is_host(self) -> bool:
        return self.caller.can_manage(self.stream.id, self.stream.seller_id)

    def _you(self) -> You | None:
        if self.caller.is_anonymous:
            return None
        return You(
            id=self.caller.sub,
            name=self.caller.name,
            role=self.caller.role,
            moderator=self.is_host,
        )

    async def send_hello(self, since: str | None) -> None:
        history = self.service.history
        stream_id = self.stream.id
        missed = await history.replay(stream_id, since) if since is not None else None
        snapshot = await history.snapshot(stream_id, with_chat=missed is None)
        stream = await self.app[STREAMS].find(stream_id) or self.stream
        after: str = snapshot.offset
        if missed is not None and since is not None:
            after = str(missed[-1]["offset"]) if missed else since
        state = dict(snapshot.state)
        pinned = state.pop("pin", None)
        deals = [state.pop(slot) for slot in sorted(state) if slot.startswith("deal:")]
        hello = Hello(
            stream=stream_id,
            data=HelloData(
                stream=HelloStream(
                    id=stream.id,
                    title=stream.title,
                    seller_name=stream.seller_name,
                    state=stream.state,
                    started_at=stream.started_at,
                    ended_at=stream.ended_at,
                ),
                you=self._you(),
                pinned=None if pinned is None else _typed(stream_id, "pin", pinned, PinCard),
                deals=[d for d in (_typed(stream_id, "deal", d, Deal) for d in deals) if d],
                state=state,
                likes=snapshot.likes,
                viewers=snapshot.viewers,
                chat=[
                    m
                    for m in (_typed(stream_id, "chat", m, ChatMessageData) for m in snapshot.chat)
                    if m
                ],
                slow_mode_s=snapshot.slow_mode_s,
                offset=after,
                recovered=missed is not None,
            ),
        )
        self.viewer.send_event(hello)
        for raw in missed or ():
            kind: type[Event] = ChatMessage if raw["type"] == "chat.message" else ChatDeleted
            event = _typed(stream_id, "chat", raw, kind)
            if event is not None:
                self.viewer.send_event(event)
        self.service.hub.go_live(self.viewer, after)
        await history.count_unique(stream_id, self._viewer_key(), self.source)
        self.app[METRICS].source_views.labels(self.source).inc()

    def _viewer_key(self) -> str:
        return self.caller.sub if not self.caller.is_anonymous else f"anon:{self.remote}"

    async def serve(self) -> None:
        ws = self.viewer.ws
        binary = self.viewer.binary
        async for message in ws:
            if message.type is WSMsgType.TEXT and not binary:
                payload: bytes | str = message.data
            elif message.type is WSMsgType.BINARY and binary:
                payload = message.data
            elif message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                expected = "binary (msgpack)" if binary else "text (JSON)"
                await ws.close(
                    code=CloseCode.UNSUPPORTED_DATA,
                    message=f"this subprotocol takes {expected} frames".encode(),
                )
                return
            else:
                return
            if self.viewer.dropped:
                return
            try:
                frame = decode_client_frame(payload, binary=binary)
                if isinstance(frame, Ping | Like | Auth):
                    await self.handle(frame)
                else:
                    async with self.service.admission:
                        await self.handle(frame)
            except ApiError as exc:
                if exc.code in _BAD_FRAME_CODES:
                    self.bad_frames += 1
                self.viewer.send_event(error_event(self.stream.id, exc))
                if self.bad_frames >= self.service.settings.max_bad_frames:
                    await ws.close(
                        code=CloseCode.POLICY_VIOLATION, message=b"too many invalid frames"
                    )
                    return
            except UNAVAILABLE_ERRORS as exc:
                log.warning("frame on %s not handled: %s", self.stream.id, exc)
                unavailable = ServiceUnavailable("try again in a moment")
                self.viewer.send_event(error_event(self.stream.id, unavailable))
            except RedisError:
                # A defect (WRONGTYPE, a script error): a retry cannot help. The frame fails;
                # the socket, and the deals and pins it carries, go on.
                log.exception("frame on %s failed", self.stream.id)
                failed = InternalError("this could not be done; it has been logged")
                self.viewer.send_event(error_event(self.stream.id, failed))
            except _PolicyClose as exc:
                await ws.close(code=CloseCode.POLICY_VIOLATION, message=str(exc).encode())
                return

    async def handle(self, frame: ClientFrame) -> None:
        service = self.service
        stream_id = self.stream.id
        if isinstance(frame, Ping):
            self.viewer.send_event(Pong(stream=stream_id, data=PongData(id=frame.id)))
        elif isinstance(frame, Auth):
            await self._authenticate(frame)
        elif isinstance(frame, ChatSend):
            self._require_identity("chat")
            await self._require_not_ended()
            result = await service.history.post(
                stream_id, self.caller, frame.text, frame.client_id, is_host=self.is_host
            )
            ack = ChatAckData(
                client_id=frame.client_id, offset=result.offset, duplicate=result.duplicate
            )
            self.viewer.send_event(ChatAck(stream=stream_id, data=ack))
        elif isinstance(frame, Like):
            self._require_identity("like")
            count = self._likes_allowed(frame.count)
            if count:
                service.hub.add_likes(stream_id, count)
        else:
            await self._moderate(frame)

    async def _moderate(self, frame: ClientFrame) -> None:
        self._require_identity("moderate")
        if not self.is_host:
            raise Forbidden("only hosts of this stream may moderate", code=ErrorCode.FORBIDDEN)
        moderation = self.service.moderation
        stream_id = self.stream.id
        result: ModAckData
        if isinstance(frame, ChatDelete):
            offset = await self.service.history.delete(stream_id, frame.offset)
            result = ModAckData(deleted=frame.offset, offset=offset)
        elif isinstance(frame, ModBan):
            until = await moderation.ban(stream_id, frame.user, frame.seconds)
            result = ModAckData(user=frame.user, until_ms=until or None)
        elif isinstance(frame, ModUnban):
            removed = await moderation.unban(stream_id, frame.user)
            result = ModAckData(user=frame.user, removed=removed)
        elif isinstance(frame, ModSlow):
            await moderation.set_slow_mode(stream_id, frame.seconds)
            result = ModAckData(slow_mode_s=frame.seconds)
        elif isinstance(frame, ModWords):
            result = ModAckData(words=await moderation.set_words(stream_id, frame.words))
        else:  # pragma: no cover - every frame type is handled above
            raise BadRequest("unhandled frame", code=ErrorCode.UNKNOWN_TYPE)
        self.viewer.send_event(ModAck(stream=stream_id, data=result))

    def _likes_allowed(self, count: int) -> int:
        """How many of ``count`` taps fit this connection's per-second allowance."""
        now = time.monotonic()
        if now - self.like_window_start >= 1.0:
            self.like_window_start, self.likes_in_window = now, 0
        allowed = min(count, self.service.settings.max_likes_per_second - self.likes_in_window)
        self.likes_in_window += allowed
        return allowed

    async def _require_not_ended(self) -> None:
        """Chat closes with the stream; the ended stream's history stays readable."""
        stream = await self.app[STREAMS].find(self.stream.id)
        if stream is None or stream.state is StreamState.ENDED:
            raise Conflict("the stream has ended; chat is closed", code=ErrorCode.STREAM_ENDED)

    def _require_identity(self, action: str) -> None:
        if self.caller.expires_at and self.caller.expires_at < time.time():
            raise Unauthorized(
                "your token has expired: reconnect with a new one", code=ErrorCode.TOKEN_EXPIRED
            )
        if self.caller.is_anonymous:
            raise Unauthorized(
                f"anonymous viewers may not {action}: connect with ?token= or send an auth frame",
                code=ErrorCode.UNAUTHORIZED,
            )

    async def _authenticate(self, frame: Auth) -> None:
        if not self.caller.is_anonymous:
            raise BadRequest(
                "this connection already has an identity", code=ErrorCode.ALREADY_AUTHENTICATED
            )
        try:
            caller = self.app[TOKENS].verify(frame.token)
        except Unauthorized as exc:
            raise _PolicyClose(exc.message) from None
        self.caller = caller
        self.viewer.host = self.is_host
        you = self._you()
        assert you is not None  # a verified token names a subject
        self.viewer.send_event(AuthOk(stream=self.stream.id, data=AuthOkData(you=you)))


_T = TypeVar("_T")


def _typed(stream_id: str, what: str, value: Any, kind: type[_T]) -> _T | None:
    """A document read back from Redis as its type. One that does not fit (written by
    another version, say) is logged and left out of the hello; its next event brings it."""
    try:
        return msgspec.convert(value, type=kind)
    except msgspec.ValidationError as exc:
        log.error("stream %s: a stored %s does not fit %s: %s", stream_id, what, kind, exc)
        return None


class _PolicyClose(Exception):
    """Close the socket with 1008 (policy violation)."""
