"""The AsyncAPI 3.0 description of the live-events socket, generated from its types.

Every server event is an :class:`~livecast.events.Event` Struct declared beside the code
that sends it; every client frame is a Struct of :mod:`livecast.chat.wire`.
:data:`ServerEvent` and :data:`ClientFrame` list them; :func:`build_asyncapi` turns them
into one document (payload schemas from :func:`msgspec.json.schema_components`, a message
per ``type`` whose summary is the Struct's docstring), with the socket's address, query,
subprotocols, the operations in each direction (a client frame's replies included) and
the close codes of :class:`~livecast.error_codes.CloseCode`. It is served at
``GET /api/asyncapi.json``; ``tests/test_asyncapi.py`` keeps a snapshot of it and
validates every event the test suite receives against these types.

To add an event: declare its Struct next to where it is published, add it to
:data:`ServerEvent`, and refresh the snapshot (the test's docstring has the command).
"""

from __future__ import annotations

import inspect
import json
from typing import Any, get_args

import msgspec
from aiohttp import web

from livecast.cart.stats import StatsEvent
from livecast.chat.events import (
    AuthOk,
    ChatAck,
    ChatDeleted,
    ChatMessage,
    ChatSettingsChanged,
    ErrorEvent,
    Hello,
    Likes,
    ModAck,
    Pong,
    StreamStateChanged,
    Viewers,
)
from livecast.chat.hub import HOST_ONLY_EVENTS
from livecast.chat.wire import (
    JSON_PROTOCOL,
    MSGPACK_PROTOCOL,
    OFFSET_PATTERN,
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
)
from livecast.error_codes import CloseCode, ErrorCode
from livecast.ingest.media import MediaStateChanged
from livecast.inventory.deals import DealEnded, DealStarted, DealUpdated
from livecast.inventory.notify import StockChanged
from livecast.inventory.pins import PinCleared, PinSet
from livecast.selling.auction_types import (
    AuctionBid,
    AuctionCancelled,
    AuctionEnded,
    AuctionExtended,
    AuctionStarted,
)
from livecast.selling.giveaway_types import (
    GiveawayCancelled,
    GiveawayDrawn,
    GiveawayEntries,
    GiveawayStarted,
)
from livecast.selling.groupbuy_types import GroupBuyEnded, GroupBuyStarted, GroupBuyUpdated
from livecast.selling.knockdown_types import KnockdownEnded, KnockdownStarted, KnockdownUpdated
from livecast.selling.poll_types import PollCancelled, PollClosed, PollStarted, PollTotals

__all__ = [
    "CLIENT_FRAME_TYPES",
    "SERVER_EVENT_TYPES",
    "ClientFrame",
    "ServerEvent",
    "asyncapi_route",
    "build_asyncapi",
]

# Every event the server sends, in the order the document lists them.
ServerEvent = (
    Hello
    | ChatMessage
    | ChatDeleted
    | ChatSettingsChanged
    | Likes
    | Viewers
    | StreamStateChanged
    | MediaStateChanged
    | PinSet
    | PinCleared
    | DealStarted
    | DealUpdated
    | DealEnded
    | StockChanged
    | AuctionStarted
    | AuctionBid
    | AuctionExtended
    | AuctionEnded
    | AuctionCancelled
    | PollStarted
    | PollTotals
    | PollClosed
    | PollCancelled
    | GiveawayStarted
    | GiveawayEntries
    | GiveawayDrawn
    | GiveawayCancelled
    | GroupBuyStarted
    | GroupBuyUpdated
    | GroupBuyEnded
    | KnockdownStarted
    | KnockdownUpdated
    | KnockdownEnded
    | StatsEvent
    | ChatAck
    | ModAck
    | AuthOk
    | Pong
    | ErrorEvent
)
SERVER_EVENT_TYPES: tuple[type[msgspec.Struct], ...] = get_args(ServerEvent)
CLIENT_FRAME_TYPES: tuple[type[msgspec.Struct], ...] = get_args(ClientFrame)

# What the server answers each client frame with, besides an ``error`` when it refuses it.
_REPLIES: dict[type[msgspec.Struct], tuple[type[msgspec.Struct], ...]] = {
    Auth: (AuthOk,),
    ChatSend: (ChatAck,),
    Like: (),
    Ping: (Pong,),
    ChatDelete: (ModAck,),
    ModBan: (ModAck,),
    ModUnban: (ModAck,),
    ModSlow: (ModAck,),
    ModWords: (ModAck,),
}
# Sent only to the socket it answers; everything else goes to every viewer of the stream.
_TO_ONE_SOCKET = frozenset({Hello, ChatAck, ModAck, AuthOk, Pong, ErrorEvent})

_CHANNEL = "liveEvents"
_SCHEMAS = "#/components/schemas/{name}"

_DESCRIPTION = f"""\
One WebSocket per viewer and stream. Ask for subprotocol `{JSON_PROTOCOL}` (JSON in text \
frames, `application/json`; also used when none is asked for) or `{MSGPACK_PROTOCOL}` \
(msgpack in binary frames, `application/msgpack`): both carry the same messages, described \
here by their JSON schemas. A frame of the other kind closes the socket with 1003.

Every server event is `{{"type", "stream", "data"}}`; `chat.message` and `chat.deleted` also \
carry `offset`. The server sends `hello` first. Identify with `?token=` or a first `auth` \
frame; anonymous viewers only read. After a close whose code says to reconnect, reconnect \
with backoff and `?since=` the last offset seen: the missed chat entries follow the hello \
(`recovered: true`), or the hello carries fresh history.

A refused frame gets an `error` event and changes nothing; its `code` is one of the error \
registry's (the README's error table). The upgrade itself is refused over HTTP \
(`404 stream_not_found`, `400 unsupported_subprotocol`, `401 token_invalid`, ...); the close \
codes are in `x-close-codes`, each with whether the client should reconnect."""


def build_asyncapi(*, version: str) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the live-events socket."""
    kinds = SERVER_EVENT_TYPES + CLIENT_FRAME_TYPES
    payloads, schemas = msgspec.json.schema_components(kinds, ref_template=_SCHEMAS)
    _describe_error_codes(schemas)
    messages: dict[str, Any] = {}
    for kind, payload in zip(kinds, payloads, strict=True):
        tag = _tag(kind)
        message: dict[str, Any] = {"name": tag, "title": kind.__name__}
        summary = _summary(kind)
        if summary:
            message["summary"] = summary
        if tag in HOST_ONLY_EVENTS:
            message["x-recipients"] = "hosts"
        elif kind in _TO_ONE_SOCKET:
            message["x-recipients"] = "sender"
        elif kind in SERVER_EVENT_TYPES:
            message["x-recipients"] = "viewers"
        message["payload"] = payload
        messages[tag] = message

    channel_ref = {"$ref": f"#/channels/{_CHANNEL}"}

    def message_refs(types: tuple[type[msgspec.Struct], ...]) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{_CHANNEL}/messages/{_tag(t)}"} for t in types]

    operations: dict[str, Any] = {
        "sendEvents": {
            "action": "send",
            "channel": channel_ref,
            "title": "Server events",
            "summary": "What the server sends: the hello, the stream's events, and answers.",
            "messages": message_refs(SERVER_EVENT_TYPES),
        }
    }
    for frame in CLIENT_FRAME_TYPES:
        operations[_tag(frame)] = {
            "action": "receive",
            "channel": channel_ref,
            "summary": _summary(frame) or f"A {_tag(frame)} frame.",
            "messages": message_refs((frame,)),
            "reply": {
                "channel": channel_ref,
                "messages": message_refs((*_REPLIES[frame], ErrorEvent)),
            },
        }

    return {
        "asyncapi": "3.0.0",
        "id": "urn:livecast:live-events",
        "info": {
            "title": "livecast live events",
            "version": version,
            "description": "A live-shopping stream's chat, likes, viewers, pinned cards, "
            "deals and stock, over one WebSocket per viewer. The REST API is described at "
            "/api/openapi.json; the error codes and close codes are the same registry's.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "livecast": {
                "host": "{host}",
                "protocol": "ws",
                "description": "A livecast node (`wss` behind TLS). Any node serves any stream.",
                "variables": {"host": {"default": "localhost:8080"}},
                "security": [{"$ref": "#/components/securitySchemes/token"}],
            }
        },
        "channels": {
            _CHANNEL: {
                "address": "/ws/streams/{stream_id}",
                "title": "A stream's live events",
                "description": _DESCRIPTION,
                "parameters": {"stream_id": {"description": "The stream's id."}},
                "messages": {tag: {"$ref": f"#/components/messages/{tag}"} for tag in messages},
                "bindings": {"ws": _ws_binding()},
                "x-subprotocols": {
                    JSON_PROTOCOL: "application/json",
                    MSGPACK_PROTOCOL: "application/msgpack",
                },
                "x-close-codes": [
                    {
                        "code": code.value,
                        "name": code.name,
                        "reconnect": code.reconnect,
                        "meaning": code.meaning,
                    }
                    for code in CloseCode
                ],
            }
        },
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "token": {
                    "type": "httpApiKey",
                    "name": "token",
                    "in": "query",
                    "description": "A livecast token (as `Authorization: Bearer` takes over "
                    "REST). Optional: without one the socket only reads; an `auth` frame "
                    "may bring it later.",
                }
            },
        },
    }


def _ws_binding() -> dict[str, Any]:
    return {
        "method": "GET",
        "query": {
            "type": "object",
            "properties": {
                "token": {"type": "string", "description": "A token; see `auth`."},
                "since": {
                    "type": "string",
                    "pattern": OFFSET_PATTERN,
                    "description": "Reconnecting: the last chat offset seen, to recover "
                    "the missed chat entries.",
                },
                "source": {
                    "type": "string",
                    "enum": ["live", "replay", "clip"],
                    "description": "Where the page is watching, for the stats' views by "
                    "source: a clip's page says `clip`; a socket to an ended stream counts "
                    "as `replay` unless it says `clip`; to a stream not ended, as `live`.",
                },
            },
        },
        "headers": {
            "type": "object",
            "properties": {
                "Sec-WebSocket-Protocol": {
                    "type": "string",
                    "enum": [JSON_PROTOCOL, MSGPACK_PROTOCOL],
                }
            },
        },
        "bindingVersion": "0.1.0",
    }


def _describe_error_codes(schemas: dict[str, Any]) -> None:
    """Give the ``ErrorCode`` schema each code's meaning and whether a retry can help."""
    schema = schemas.get(ErrorCode.__name__)
    if schema is not None:
        schema["x-codes"] = {
            code.value: {"meaning": code.meaning, "retry": code.retry} for code in ErrorCode
        }


def _tag(kind: type[msgspec.Struct]) -> str:
    tag = kind.__struct_config__.tag
    assert isinstance(tag, str), kind
    return tag


def _summary(kind: type[msgspec.Struct]) -> str:
    """The first paragraph of the Struct's docstring, on one line."""
    return " ".join(inspect.cleandoc(kind.__doc__ or "").split("\n\n", 1)[0].split())


def asyncapi_route(document: dict[str, Any]) -> web.RouteDef:
    body = json.dumps(document, indent=1).encode()

    async def serve_asyncapi(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return web.get("/api/asyncapi.json", serve_asyncapi)
