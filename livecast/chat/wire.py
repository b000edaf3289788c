"""The live-events wire format: subprotocols, client frames, and server frames.

Two subprotocols carry the same events:

* ``livecast.v1.json`` - UTF-8 JSON in text frames (the browser default);
* ``livecast.v1.msgpack`` - msgpack in binary frames.

Every server event is an :class:`~livecast.events.Event`, ``{"type": str, "stream": str,
"data": {...}}``, plus ``"offset"`` on the events a client can miss and recover
(``chat.message`` and ``chat.deleted``); those of this package are
:mod:`livecast.chat.events`. Client frames are ``{"type": ..., ...fields}`` and are
validated here into the :class:`msgspec.Struct` of their type. :mod:`livecast.asyncapi`
describes both directions.

Server frames are built once per event and subprotocol: a server frame is never masked,
so the complete WebSocket frame (header and payload) is the same bytes for every socket.
"""

from __future__ import annotations

import re
import struct
from typing import Annotated, Any

import msgspec
from msgspec import UNSET

from livecast.chat.events import ErrorData, ErrorEvent
from livecast.error_codes import ErrorCode
from livecast.errors import ApiError, BadRequest, Unprocessable
from livecast.events import Event

__all__ = [
    "CLIENT_FRAMES",
    "JSON_PROTOCOL",
    "MSGPACK_PROTOCOL",
    "OFFSET_PATTERN",
    "PROTOCOLS",
    "Auth",
    "ChatDelete",
    "ChatSend",
    "ClientFrame",
    "Like",
    "ModBan",
    "ModSlow",
    "ModUnban",
    "ModWords",
    "Ping",
    "decode_client_frame",
    "encode_event",
    "error_event",
    "is_offset",
    "parse_offset",
    "ws_frame",
]

JSON_PROTOCOL = "livecast.v1.json"
MSGPACK_PROTOCOL = "livecast.v1.msgpack"
PROTOCOLS = (JSON_PROTOCOL, MSGPACK_PROTOCOL)

OFFSET_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}$"
_OFFSET = re.compile(OFFSET_PATTERN)
_SUBJECT_PATTERN = r"^[A-Za-z0-9._:@-]{1,64}$"

ClientId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Offset = Annotated[str, msgspec.Meta(pattern=OFFSET_PATTERN)]
Subject = Annotated[str, msgspec.Meta(pattern=_SUBJECT_PATTERN)]
# Generous bound at the boundary; the configured limit gives the clearer `too_long` error.
Text = Annotated[str, msgspec.Meta(max_length=4000)]
Word = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _Frame(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True):
    """Every client frame: ``{"type": <tag>, ...fields}``."""


class Auth(_Frame, tag="auth", frozen=True):
    """Identify an anonymous connection; allowed once."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class ChatSend(_Frame, tag="chat.send", frozen=True):
    """Post a message. A resend with the same ``client_id`` is not posted twice."""

    text: Text
    client_id: ClientId


class Like(_Frame, tag="like", frozen=True):
    count: Annotated[int, msgspec.Meta(ge=1)] = 1


class Ping(_Frame, tag="ping", frozen=True):
    id: int | str | None = None


class ChatDelete(_Frame, tag="chat.delete", frozen=True):
    """Host: remove a message for everyone and from history."""

    offset: Offset


class ModBan(_Frame, tag="mod.ban", frozen=True):
    """Host: ban ``user`` from chat; for ``seconds`` (a time-out) or, without it, for good."""

    user: Subject
    seconds: Annotated[int, msgspec.Meta(ge=1, le=31_536_000)] | None = None


class ModUnban(_Frame, tag="mod.unban", frozen=True):
    user: Subject


class ModSlow(_Frame, tag="mod.slow", frozen=True):
    """Host: seconds each user must wait between messages; 0 turns slow mode off."""

    seconds: Annotated[int, msgspec.Meta(ge=0, le=3600)]


class ModWords(_Frame, tag="mod.words", frozen=True):
    """Host: replace this stream's banned words."""

    words: Annotated[list[Word], msgspec.Meta(max_length=500)]


ClientFrame = Auth | ChatSend | Like | Ping | ChatDelete | ModBan | ModUnban | ModSlow | ModWords
CLIENT_FRAMES: dict[str, type[ClientFrame]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (Auth, ChatSend, Like, Ping, ChatDelete, ModBan, ModUnban, ModSlow, ModWords)
}

_json_decoder = msgspec.json.Decoder()
_msgpack_decoder = msgspec.msgpack.Decoder()
_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


def decode_client_frame(payload: bytes | str, *, binary: bool) -> ClientFrame:
    """Validate one client frame.

    Raises :class:`BadRequest` with code ``malformed_json`` (not JSON/msgpack, or not an
    object with a string ``type``) or ``unknown_type``, :class:`Unprocessable` with
    ``invalid_field``.
    """
    try:
        if isinstance(payload, str):
            raw: Any = _json_decoder.decode(payload)
        elif binary:
            raw = _msgpack_decoder.decode(payload)
        else:
            raw = _json_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        kind = "msgpack" if binary else "JSON"
        raise BadRequest(
            f"frame is not valid {kind}: {exc}", code=ErrorCode.MALFORMED_JSON
        ) from None
    except RecursionError:
        # A few KB of "[[[[..." nests deeper than the decoder may recurse.
        raise BadRequest("frame is nested too deeply", code=ErrorCode.MALFORMED_JSON) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise BadRequest('a frame is an object with a string "type"', code=ErrorCode.MALFORMED_JSON)
    cls = CLIENT_FRAMES.get(raw["type"])
    if cls is None:
        raise BadRequest(f"unknown frame type {raw['type']!r}", code=ErrorCode.UNKNOWN_TYPE)
    try:
        return msgspec.convert(raw, type=cls, strict=True)
    except msgspec.ValidationError as exc:
        raise Unprocessable(str(exc), code=ErrorCode.INVALID_FIELD) from None


def encode_event(event: Event, *, binary: bool) -> bytes:
    """One event as the payload of its subprotocol."""
    return _msgpack_encoder.encode(event) if binary else _json_encoder.encode(event)


def error_event(stream_id: str, error: ApiError) -> ErrorEvent:
    """The ``error`` event of a refused frame: its code, message and ``retry_after_ms``."""
    retry_after_ms = error.details.get("retry_after_ms", UNSET)
    data = ErrorData(code=error.code, message=error.message, retry_after_ms=retry_after_ms)
    return ErrorEvent(stream=stream_id, data=data)


_LEN1 = struct.Struct("!BB").pack
_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack


def ws_frame(payload: bytes, *, binary: bool) -> bytes:
    """A complete, unmasked, uncompressed final WebSocket frame carrying ``payload``."""
    first = 0x82 if binary else 0x81
    size = len(payload)
    if size < 126:
        return _LEN1(first, size) + payload
    if size < 65536:
        return _LEN2(first, 126, size) + payload
    return _LEN3(first, 127, size) + payload


def parse_offset(offset: str) -> tuple[int, int]:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``, for ordering offsets."""
    ms, _, seq = offset.partition("-")
    return int(ms), int(seq)


def is_offset(value: str) -> bool:
    return bool(_OFFSET.match(value))
