"""REST routes for the host's control panel: chat moderation and live numbers.

Every route needs a token that may manage the stream (its seller, a host or seller
granted it, or an admin). The same actions exist as WebSocket frames for hosts.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.chat.service import CHAT
from livecast.chat.wire import is_offset
from livecast.error_codes import ErrorCode
from livecast.errors import NotFound
from livecast.http import identity, json_response, read_json
from livecast.streams.registry import Stream

__all__ = ["routes"]

routes = web.RouteTableDef()

_SUBJECT = msgspec.Meta(pattern=r"^[A-Za-z0-9._:@-]{1,64}$")
Word = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class BanBody(msgspec.Struct, forbid_unknown_fields=True):
    user: Annotated[str, _SUBJECT]
    seconds: Annotated[int, msgspec.Meta(ge=1, le=31_536_000)] | None = None


class SlowModeBody(msgspec.Struct, forbid_unknown_fields=True):
    seconds: Annotated[int, msgspec.Meta(ge=0, le=3600)]


class WordsBody(msgspec.Struct, forbid_unknown_fields=True):
    words: Annotated[list[Word], msgspec.Meta(max_length=500)]


async def _managed_stream(request: web.Request) -> Stream:
    caller = identity(request)
    caller.require_identity()
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    caller.require_manage(stream.id, stream.seller_id)
    return stream


@routes.get("/api/streams/{stream_id}/chat")
async def recent_chat(request: web.Request) -> web.Response:
    """The last messages and the newest offset (anyone may read, like the socket)."""
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    snapshot = await request.app[CHAT].history.snapshot(stream.id)
    return json_response({"messages": snapshot.chat, "offset": snapshot.offset})


@routes.delete("/api/streams/{stream_id}/chat/{offset}")
async def delete_message(request: web.Request) -> web.Response:
    stream = await _managed_stream(request)
    offset = request.match_info["offset"]
    if not is_offset(offset):
        raise NotFound(f"no chat message {offset!r}", code=ErrorCode.MESSAGE_NOT_FOUND)
    deletion = await request.app[CHAT].history.delete(stream.id, offset)
    return json_response({"deleted": offset, "offset": deletion})


@routes.get("/api/streams/{stream_id}/moderation")
async def moderation_settings(request: web.Request) -> web.Response:
    stream = await _managed_stream(request)
    return json_response(await request.app[CHAT].moderation.settings(stream.id))


@routes.post("/api/streams/{stream_id}/moderation/bans")
async def ban_user(request: web.Request) -> web.Response:
    stream = await _managed_stream(request)
    body = await read_json(request, BanBody)
    until = await request.app[CHAT].moderation.ban(stream.id, body.user, body.seconds)
    return json_response({"user": body.user, "until_ms": until or None}, status=201)


@routes.delete("/api/streams/{stream_id}/moderation/bans/{user}")
async def unban_user(request: web.Request) -> web.Response:
    stream = await _managed_stream(request)
    user = request.match_info["user"]
    if not await request.app[CHAT].moderation.unban(stream.id, user):
        raise NotFound(f"{user!r} is not banned", code=ErrorCode.BAN_NOT_FOUND)
    return web.Response(status=204)


@routes.put("/api/streams/{stream_id}/moderation/slow-mode")
async def set_slow_mode(request: web.Request) -> web.Response:
    stream = await _managed_stream(request)
    body = await read_json(request, SlowModeBody)
    await request.app[CHAT].moderation.set_slow_mode(stream.id, body.seconds)
    return json_response({"slow_mode_s": body.seconds})


@routes.put("/api/streams/{stream_id}/moderation/words")
async def set_words(request: web.Request) -> web.Response:
    stream = await _managed_stream(request)
    body = await read_json(request, WordsBody)
    words = await request.app[CHAT].moderation.set_words(stream.id, body.words)
    return json_response({"words": words})
