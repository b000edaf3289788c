"""The server events of the live-events package itself, one :class:`~livecast.events.Event`
per ``type``.

Two kinds:

* broadcast to every viewer of a stream through Redis: ``chat.message`` and
  ``chat.deleted`` (published by ``post.lua`` and ``delete.lua``, with the chat entry's
  ``offset``; replayed after a reconnect), ``likes`` (``likes.lua``), ``viewers``
  (``presence.lua``), ``chat.settings`` and ``stream.state``;
* sent to one socket only, in answer to it: ``hello``, ``pong``, ``auth.ok``, ``chat.ack``,
  ``mod.ack`` and ``error``.

The Lua scripts build their events as msgpack maps; the Structs here are their contract
(the test suite decodes every event it receives into them) and the source of the AsyncAPI
document (:mod:`livecast.asyncapi`). A field added to a script is added here too.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from livecast.auth import Role
from livecast.error_codes import ErrorCode
from livecast.events import Event
from livecast.inventory.deals import Deal
from livecast.inventory.pins import PinCard
from livecast.streams.registry import StreamState

__all__ = [
    "AuthOk",
    "AuthOkData",
    "ChatAck",
    "ChatAckData",
    "ChatAuthor",
    "ChatDeleted",
    "ChatDeletedData",
    "ChatMessage",
    "ChatMessageData",
    "ChatSettingsChanged",
    "ChatSettingsData",
    "ErrorData",
    "ErrorEvent",
    "Hello",
    "HelloData",
    "HelloStream",
    "Likes",
    "LikesData",
    "ModAck",
    "ModAckData",
    "Pong",
    "PongData",
    "StreamStateChanged",
    "StreamStateData",
    "Viewers",
    "ViewersData",
    "You",
]

UNSET = msgspec.UNSET
UnsetType = msgspec.UnsetType

Offset = Annotated[
    str,
    msgspec.Meta(
        description="The chat entry's offset: reconnect with ?since= the last one received."
    ),
]


class _Data(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``data`` of an event."""


# -- broadcast -------------------------------------------------------------------------


class ChatAuthor(_Data, frozen=True, kw_only=True):
    """Who posted a chat message, as their token named them when they did."""

    id: str
    name: str
    role: Role


class ChatMessageData(_Data, frozen=True, kw_only=True):
    """A chat message, as the ``chat.message`` event carries it: ``ts`` is when it was
    posted (epoch ms); ``id`` is its offset. ``text`` is plain text: render it as text,
    never as HTML."""

    user: ChatAuthor
    text: str
    ts: int
    client_id: str
    id: str


class ChatMessage(Event, tag="chat.message", frozen=True, kw_only=True):
    """A message was posted (to everyone, and in order of ``offset``)."""

    offset: Offset
    data: ChatMessageData


class ChatDeletedData(_Data, frozen=True, kw_only=True):
    """``id``: the offset of the message removed."""

    id: str


class ChatDeleted(Event, tag="chat.deleted", frozen=True, kw_only=True):
    """A host removed a message; it is gone from history too."""

    offset: Offset
    data: ChatDeletedData


class ChatSettingsData(_Data, frozen=True, kw_only=True):
    """Slow mode: seconds each user waits between messages (0: off)."""

    slow_mode_s: int


class ChatSettingsChanged(Event, tag="chat.settings", frozen=True, kw_only=True):
    """A host changed the chat's slow mode."""

    data: ChatSettingsData


class LikesData(_Data, frozen=True, kw_only=True):
    total: int


class Likes(Event, tag="likes", frozen=True, kw_only=True):
    """The stream's like total, a few times a second at most while likes come in."""

    data: LikesData


class ViewersData(_Data, frozen=True, kw_only=True):
    count: int


class Viewers(Event, tag="viewers", frozen=True, kw_only=True):
    """Viewers connected across all nodes, when it changes."""

    data: ViewersData


class StreamStateData(_Data, frozen=True, kw_only=True):
    state: StreamState
    previous: StreamState
    started_at: str | None
    ended_at: str | None


class StreamStateChanged(Event, tag="stream.state", frozen=True, kw_only=True):
    """The stream moved between scheduled, live and ended."""

    data: StreamStateData


# -- to one socket ---------------------------------------------------------------------


class HelloStream(_Data, frozen=True, kw_only=True):
    id: str
    title: str
    seller_name: str
    state: StreamState
    started_at: str | None
    ended_at: str | None


class You(_Data, frozen=True, kw_only=True):
    """The connection's identity; ``moderator``: it hosts this stream."""

    id: str
    name: str
    role: Role
    moderator: bool


class HelloData(_Data, frozen=True, kw_only=True):
    """The stream as it is now.

    ``pinned`` and ``deals`` are the pinned card and the running deals; ``state`` holds
    any other current-state document by slot name. ``chat`` is the last messages, oldest
    first, and empty when ``recovered``: then the missed ``chat.message`` and
    ``chat.deleted`` events follow the hello, in order. ``offset`` is the newest chat
    offset the hello (with what follows it) covers: reconnect with ``?since=`` the last
    offset seen.
    """

    stream: HelloStream
    you: You | None
    pinned: PinCard | None
    deals: list[Deal]
    state: dict[str, Any]
    likes: int
    viewers: int
    chat: list[ChatMessageData]
    slow_mode_s: int
    offset: str
    recovered: bool


class Hello(Event, tag="hello", frozen=True, kw_only=True):
    """The first event on every connection."""

    data: HelloData


class PongData(_Data, frozen=True, kw_only=True):
    """The ``id`` of the ping answered."""

    id: int | str | None


class Pong(Event, tag="pong", frozen=True, kw_only=True):
    """The answer to a ``ping``."""

    data: PongData


class AuthOkData(_Data, frozen=True, kw_only=True):
    you: You


class AuthOk(Event, tag="auth.ok", frozen=True, kw_only=True):
    """An ``auth`` frame's token was accepted: the connection now has this identity."""

    data: AuthOkData


class ChatAckData(_Data, frozen=True, kw_only=True):
    """``duplicate``: a message with this ``client_id`` was already posted (at ``offset``)
    and this one was not posted again."""

    client_id: str
    offset: str
    duplicate: bool


class ChatAck(Event, tag="chat.ack", frozen=True, kw_only=True):
    """A ``chat.send`` was posted: its offset."""

    data: ChatAckData


class ModAckData(_Data, frozen=True, kw_only=True):
    """What the acknowledged frame did; the fields present depend on the frame.

    ``chat.delete``: ``deleted`` (the message's offset) and ``offset`` (the deletion's);
    ``mod.ban``: ``user`` and ``until_ms`` (epoch ms, null for good); ``mod.unban``:
    ``user`` and ``removed`` (false: the user was not banned); ``mod.slow``:
    ``slow_mode_s``; ``mod.words``: ``words``, the banned words as stored.
    """

    deleted: str | UnsetType = UNSET
    offset: str | UnsetType = UNSET
    user: str | UnsetType = UNSET
    until_ms: int | UnsetType | None = UNSET
    removed: bool | UnsetType = UNSET
    slow_mode_s: int | UnsetType = UNSET
    words: list[str] | UnsetType = UNSET


class ModAck(Event, tag="mod.ack", frozen=True, kw_only=True):
    """A host's moderation frame was carried out."""

    data: ModAckData


class ErrorData(_Data, frozen=True, kw_only=True):
    """``code`` is one of the registry's error codes; ``retry_after_ms`` comes with
    ``slow_mode``, ``rate_limited`` and ``timed_out``."""

    code: ErrorCode
    message: str
    retry_after_ms: int | UnsetType = UNSET


class ErrorEvent(Event, tag="error", frozen=True, kw_only=True):
    """A frame was refused (and changed nothing), or could not be handled now."""

    data: ErrorData
