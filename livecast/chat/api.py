"""REST routes for the host's control panel: chat moderation and live numbers.

Every route but the chat read needs a token that may manage the stream (its seller, a
host or seller granted it, or an admin). The same actions exist as WebSocket frames for
hosts. The live-events socket's own route is described here too (its events are in
``/api/asyncapi.json``).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.chat import socket
from livecast.chat.events import ChatMessageData
from livecast.chat.moderation import Ban, ModerationSettings
from livecast.chat.service import CHAT
from livecast.chat.wire import is_offset
from livecast.error_codes import ErrorCode
from livecast.errors import NotFound
from livecast.http import json_response, read_json
from livecast.openapi import Auth, Param, Reply, contract
from livecast.streams.access import managed_stream

__all__ = ["routes"]

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

_SUBJECT = msgspec.Meta(pattern=r"^[A-Za-z0-9._:@-]{1,64}$")
Word = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class BanRequest(msgspec.Struct, forbid_unknown_fields=True):
    user: Annotated[str, _SUBJECT]
    seconds: (
        Annotated[
            int, msgspec.Meta(ge=1, le=31_536_000, description="a time-out; absent for a ban")
        ]
        | None
    ) = None


class SlowMode(msgspec.Struct, forbid_unknown_fields=True):
    seconds: Annotated[int, msgspec.Meta(ge=0, le=3600)]


class BannedWords(msgspec.Struct, forbid_unknown_fields=True):
    words: Annotated[list[Word], msgspec.Meta(max_length=500)]


class ChatHistory(msgspec.Struct, frozen=True):
    messages: list[ChatMessageData]
    offset: Annotated[str, msgspec.Meta(description="the newest offset (for ?since=)")]


class Deletion(msgspec.Struct, frozen=True):
    deleted: Annotated[str, msgspec.Meta(description="the offset of the message removed")]
    offset: Annotated[str, msgspec.Meta(description="offset of the chat.deleted event")]


class SlowModeSet(msgspec.Struct, frozen=True):
    slow_mode_s: int


_HOST = {ErrorCode.FORBIDDEN: "not a host of this stream", ErrorCode.STREAM_NOT_FOUND: ""}
_OFFSET = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$")]

contract(
    summary="Live events WebSocket (chat, likes, pins, deals, stock, viewers, stream state)",
    description="Upgrade to a WebSocket. Subprotocols: `livecast.v1.json` (JSON in text "
    "frames; the default when none is asked for) and `livecast.v1.msgpack` (msgpack in "
    'binary frames). Identify with `?token=` or a first `{"type": "auth", "token": '
    "...}` frame; anonymous viewers may only read. Reconnect with `?since=<offset>` to "
    "recover missed chat events. The events, frames, error codes and close codes are "
    "described by the AsyncAPI document at /api/asyncapi.json.",
    params=[
        Param("stream_id", "path", Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]),
        Param("token", description="a bearer token, for clients that cannot send headers"),
        Param("since", type=_OFFSET, description="offset of the last chat event received"),
        Param(
            "source",
            type=Literal["live", "replay", "clip"],
            description="where the page watches, for the stats' views by source: `clip` on a "
            "clip's page; a socket to an ended stream counts as `replay` otherwise, to a stream "
            "not ended as `live`",
        ),
    ],
    responses={101: Reply(None, "switching protocols; events follow, `hello` first")},
    errors={
        ErrorCode.BAD_REQUEST: "a bad `since`",
        ErrorCode.INVALID_QUERY: "a `source` other than live, replay or clip",
        ErrorCode.UNSUPPORTED_SUBPROTOCOL: "",
        ErrorCode.STREAM_NOT_FOUND: "",
    },
    auth=Auth.OPTIONAL,
)(socket.stream_socket)


@routes.get("/api/streams/{stream_id}/chat")
@contract(
    summary="The last chat messages and the newest offset",
    responses={200: Reply(ChatHistory, "recent messages")},
    errors=[ErrorCode.STREAM_NOT_FOUND],
)
async def recent_chat(request: web.Request) -> web.Response:
    """The last messages and the newest offset (anyone may read, like the socket)."""
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    snapshot = await request.app[CHAT].history.snapshot(stream.id)
    return json_response(ChatHistory(_messages(stream.id, snapshot.chat), snapshot.offset))


def _messages(stream_id: str, stored: list[dict[str, Any]]) -> list[ChatMessageData]:
    """The stored messages as the contract types them; one that no longer fits (written
    by another version) is left out and logged, not fatal to the whole history."""
    messages = []
    for message in stored:
        try:
            messages.append(msgspec.convert(message, ChatMessageData))
        except msgspec.ValidationError as exc:
            log.warning("stream %s: stored chat message left out: %s", stream_id, exc)
    return messages


@routes.delete("/api/streams/{stream_id}/chat/{offset}")
@contract(
    summary="Delete a message for everyone and from history (host)",
    responses={200: Reply(Deletion, "deleted; viewers get chat.deleted")},
    errors={**_HOST, ErrorCode.MESSAGE_NOT_FOUND: ""},
    auth=Auth.REQUIRED,
)
async def delete_message(request: web.Request) -> web.Response:
    stream = await managed_stream(request)
    offset = request.match_info["offset"]
    if not is_offset(offset):
        raise NotFound(f"no chat message {offset!r}", code=ErrorCode.MESSAGE_NOT_FOUND)
    deletion = await request.app[CHAT].history.delete(stream.id, offset)
    return json_response(Deletion(offset, deletion))


@routes.get("/api/streams/{stream_id}/moderation")
@contract(
    summary="Slow mode, banned words and active bans (host)",
    responses={200: Reply(ModerationSettings, "moderation settings")},
    errors=_HOST,
    auth=Auth.REQUIRED,
)
async def moderation_settings(request: web.Request) -> web.Response:
    stream = await managed_stream(request)
    return json_response(await request.app[CHAT].moderation.settings(stream.id))


@routes.post("/api/streams/{stream_id}/moderation/bans")
@contract(
    summary="Ban a user from chat, or time them out for `seconds` (host)",
    body=BanRequest,
    responses={201: Reply(Ban, "banned; holds on every node and across reconnects")},
    errors=_HOST,
    auth=Auth.REQUIRED,
)
async def ban_user(request: web.Request) -> web.Response:
    stream = await managed_stream(request)
    body = await read_json(request, BanRequest)
    until = await request.app[CHAT].moderation.ban(stream.id, body.user, body.seconds)
    return json_response(Ban(user=body.user, until_ms=until or None), status=201)


@routes.delete("/api/streams/{stream_id}/moderation/bans/{user}")
@contract(
    summary="Lift a ban or time-out (host)",
    responses={204: Reply(None, "lifted")},
    errors={**_HOST, ErrorCode.BAN_NOT_FOUND: ""},
    auth=Auth.REQUIRED,
)
async def unban_user(request: web.Request) -> web.Response:
    stream = await managed_stream(request)
    user = request.match_info["user"]
    if not await request.app[CHAT].moderation.unban(stream.id, user):
        raise NotFound(f"{user!r} is not banned", code=ErrorCode.BAN_NOT_FOUND)
    return web.Response(status=204)


@routes.put("/api/streams/{stream_id}/moderation/slow-mode")
@contract(
    summary="Seconds each user waits between messages; 0 turns slow mode off (host)",
    body=SlowMode,
    responses={200: Reply(SlowModeSet, "set")},
    errors=_HOST,
    auth=Auth.REQUIRED,
)
async def set_slow_mode(request: web.Request) -> web.Response:
    stream = await managed_stream(request)
    body = await read_json(request, SlowMode)
    await request.app[CHAT].moderation.set_slow_mode(stream.id, body.seconds)
    return json_response(SlowModeSet(body.seconds))


@routes.put("/api/streams/{stream_id}/moderation/words")
@contract(
    summary="Replace the stream's banned words (whole words, case-insensitive; host)",
    body=BannedWords,
    responses={200: Reply(BannedWords, "the normalized list")},
    errors=_HOST,
    auth=Auth.REQUIRED,
)
async def set_words(request: web.Request) -> web.Response:
    stream = await managed_stream(request)
    body = await read_json(request, BannedWords)
    words = await request.app[CHAT].moderation.set_words(stream.id, body.words)
    return json_response(BannedWords(words))
