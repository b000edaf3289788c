"""Chat history, posting and recovery, kept in one Redis Stream per stream.

Every chat entry (a message, or the notice that a host deleted one) is appended with
``XADD``; its id is the entry's *offset*, and the same Lua script publishes the event with
that offset, so offsets reach viewers in order. The stream is capped at
``chat.history_length`` entries (exact ``MAXLEN``); before trimming, the script records
the newest trimmed id as the *floor*. A client reconnecting with offset ``o`` recovers
exactly the entries after ``o`` when ``o`` is at or after the floor and not past the
newest entry; otherwise recovery is impossible and it gets a fresh hello.

A deleted message is removed with ``XDEL`` (gone from history) and a ``chat.deleted``
entry is appended, so a client that was away when it happened replays the deletion.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis

from livecast.auth import Identity
from livecast.chat._keys import VIEW_SOURCES, LiveKeys
from livecast.chat.wire import parse_offset
from livecast.config import ChatSettings
from livecast.error_codes import ErrorCode
from livecast.errors import Forbidden, NotFound, TooManyRequests, Unprocessable
from livecast.events import EventPublisher
from livecast.redisdb import KeySpace, load_lua

__all__ = ["ChatHistory", "PostResult", "Snapshot", "word_tokens"]

_HERE = Path(__file__).parent
_unpack = msgspec.msgpack.Decoder().decode
_WORD = re.compile(r"\w+")
# A link is a scheme, "www.", a host with a path ("evil.example/x"), or a host whose last
# label is a common top-level domain. A bare "word.word" with an unknown ending is let
# through, so a missing space after a full stop ("great.love it") is not refused.
_TLDS = (
    "com|net|org|io|co|shop|store|app|link|ly|me|xyz|info|biz|gg|tv|to|de|uk|fr|es|it|nl|ru|"
    "cn|in|us|ca|au|br|pl|tr|ir|jp|kr|id|vn|eu|ai|dev|site|online|top|club|live|page|click|"
    "buzz|fun|icu|vip|today|tech|cc|ws|su|pw|tk|ml|ga|cf|gq|sale|deals|market|bid|win|lol"
)
_LINK = re.compile(
    r"(?i)(?:\b[a-z][a-z0-9+.-]*://|\bwww\.|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}/"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:" + _TLDS + r")\b)"
)
_ZERO = "0-0"

# Format characters that are part of ordinary text: the zero-width (non-)joiner that builds
# emoji sequences and shapes Indic and Persian script, and the tag characters of flags.
_KEPT_FORMAT = {"\u200c", "\u200d"} | {chr(c) for c in range(0xE0020, 0xE0080)}
# The filters look through them, so "fa\u200dke" or "shop\u200d.com" is no way around.
_UNJOIN = str.maketrans(dict.fromkeys(_KEPT_FORMAT))


def word_tokens(text: str) -> str:
    """``"Buy NOW!"`` -> ``" buy now "``: how the word filter sees a message."""
    return " " + " ".join(_WORD.findall(text.translate(_UNJOIN).casefold())) + " "


def _clean(text: str) -> str:
    """Plain text: control characters, surrogates and invisible format characters (bidi
    overrides, zero-width spaces) removed except newline and the joiners, tabs as spaces,
    ends stripped.

    Unassigned code points are kept: they are emoji newer than this Python's Unicode
    tables, and the viewers' browsers know them.
    """
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char == "\n" or category not in ("Cc", "Cf", "Cs") or char in _KEPT_FORMAT:
            kept.append(char)
        elif char in "\t\r":
            kept.append(" ")
    return "".join(kept).strip()


@dataclass(frozen=True, slots=True)
class PostResult:
    offset: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    state: dict[str, Any]
    likes: int
    viewers: int
    chat: list[dict[str, Any]]
    offset: str
    slow_mode_s: int


class ChatHistory:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        events: EventPublisher,
        settings: ChatSettings,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._events = events
        self._settings = settings
        self._post = load_lua(redis, _HERE / "post.lua")
        self._delete = load_lua(redis, _HERE / "delete.lua")
        self._banned_words = {" ".join(word_tokens(w).split()) for w in settings.banned_words}
        self._banned_words.discard("")

    def keys(self, stream_id: str) -> LiveKeys:
        return LiveKeys(self._keys, stream_id)

    async def post(
        self, stream_id: str, author: Identity, text: str, client_id: str, *, is_host: bool
    ) -> PostResult:
        """Post ``text`` as ``author``; raises a 4xx ApiError with the reason if refused.

        Codes: ``empty``, ``too_long``, ``links_not_allowed``, ``word_filtered`` (422),
        ``banned``, ``timed_out`` (403), ``slow_mode``, ``rate_limited`` (429, with
        ``retry_after_ms``).
        """
        author.require_identity()
        text = _clean(text)
        if not text:
            raise Unprocessable("message is empty", code=ErrorCode.EMPTY)
        limit = self._settings.max_message_chars
        if len(text) > limit:
            raise Unprocessable(f"message is over {limit} characters", code=ErrorCode.TOO_LONG)
        if not is_host and _LINK.search(text.translate(_UNJOIN)):
            raise Unprocessable("only hosts may post links", code=ErrorCode.LINKS_NOT_ALLOWED)
        tokens = word_tokens(text)
        if not is_host:
            for word in self._banned_words:
                if f" {word} " in tokens:
                    raise Unprocessable(
                        "message contains a banned word", code=ErrorCode.WORD_FILTERED
                    )
        keys = self.keys(stream_id)
        status, detail = await self._post(
            keys=[
                keys.chat,
                keys.chat_floor,
                keys.dedupe(author.sub, client_id),
                keys.rate(author.sub),
                keys.slow(author.sub),
                keys.mod,
                keys.bans,
                keys.words,
                keys.messages,
            ],
            args=[
                author.sub,
                author.name,
                author.role.value,
                text,
                tokens,
                client_id,
                int(is_host),
                self._settings.rate_limit_messages,
                int(self._settings.rate_limit_window_s * 1000),
                self._settings.history_length,
                self._settings.dedupe_window_s * 1000,
                self._events.channel(stream_id),
                stream_id,
            ],
        )
        status, detail = status.decode(), detail.decode()
        if status == "ok":
            return PostResult(detail, duplicate=False)
        if status == "dup":
            return PostResult(detail, duplicate=True)
        if status == "banned":
            raise Forbidden("you are banned from this chat", code=ErrorCode.BANNED)
        if status == "timed_out":
            raise Forbidden(
                "you are timed out in this chat",
                code=ErrorCode.TIMED_OUT,
                retry_after_ms=int(detail),
            )
        if status == "word_filtered":
            raise Unprocessable("message contains a banned word", code=ErrorCode.WORD_FILTERED)
        if status == "slow_mode":
            raise TooManyRequests(
                "slow mode: wait before your next message",
                code=ErrorCode.SLOW_MODE,
                retry_after_ms=int(detail),
            )
        raise TooManyRequests(
            "too many messages; wait a little",
            code=ErrorCode.RATE_LIMITED,
            retry_after_ms=int(detail),
        )

    async def delete(self, stream_id: str, offset: str) -> str:
        """Remove a message for everyone and from history; the deletion's own offset."""
        keys = self.keys(stream_id)
        result = await self._delete(
            keys=[keys.chat, keys.chat_floor],
            args=[
                offset,
                self._settings.history_length,
                self._events.channel(stream_id),
                stream_id,
            ],
        )
        if not result:
            raise NotFound(f"no chat message {offset!r}", code=ErrorCode.MESSAGE_NOT_FOUND)
        return cast(bytes, result).decode()

    async def snapshot(self, stream_id: str, *, with_chat: bool = True) -> Snapshot:
        """Current state, like total, viewer count and the last messages, read atomically."""
        keys = self.keys(stream_id)
        count = self._settings.hello_messages if with_chat else 0
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.state)
            pipe.get(keys.likes)
            pipe.hgetall(keys.viewers)
            pipe.time()
            pipe.xrevrange(keys.chat, "+", "-", count=max(count, 1))
            pipe.hget(keys.mod, "slow_mode_s")
            state_raw, likes, viewers_raw, now, entries, slow = await pipe.execute()
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        viewers = 0
        for value in cast(dict[bytes, bytes], viewers_raw).values():
            count_text, _, expires = value.partition(b":")
            if int(expires) >= now_ms:
                viewers += int(count_text)
        state = {
            slot.decode(): _unpack(doc) for slot, doc in cast(dict[bytes, bytes], state_raw).items()
        }
        offset = entries[0][0].decode() if entries else _ZERO
        chat = []
        if with_chat:
            for entry_id, fields in reversed(entries[:count]):
                if fields.get(b"t") == b"chat.message":
                    data = _unpack(fields[b"d"])
                    data["id"] = entry_id.decode()
                    chat.append(data)
        return Snapshot(state, int(likes or 0), viewers, chat, offset, int(slow or 0))

    async def replay(self, stream_id: str, since: str) -> list[dict[str, Any]] | None:
        """The chat events after offset ``since``, or None when they cannot all be had."""
        keys = self.keys(stream_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(keys.chat_floor)
            pipe.xrange(keys.chat, "(" + since, "+")
            pipe.xrevrange(keys.chat, "+", "-", count=1)
            floor_raw, entries, newest = await pipe.execute()
        since_key = parse_offset(since)
        floor = parse_offset(floor_raw.decode()) if floor_raw else (0, 0)
        newest_key = parse_offset(newest[0][0].decode()) if newest else (0, 0)
        if since_key < floor or since_key > newest_key:
            return None
        events = []
        for entry_id, fields in entries:
            offset = entry_id.decode()
            data = _unpack(fields[b"d"])
            if fields[b"t"] == b"chat.message":
                data["id"] = offset
            events.append(
                {"type": fields[b"t"].decode(), "stream": stream_id, "offset": offset, "data": data}
            )
        return events

    async def count_unique(self, stream_id: str, viewer_key: str, source: str = "live") -> None:
        """Count a viewer of the stream live, on its replay or on one of its clips."""
        await self._redis.pfadd(self.keys(stream_id).uniques_from(source), viewer_key)

    async def stats(self, stream_id: str) -> dict[str, int]:
        keys = self.keys(stream_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.peak)
            pipe.pfcount(keys.uniques)
            pipe.get(keys.likes)
            pipe.get(keys.messages)
            for source in VIEW_SOURCES:
                pipe.pfcount(keys.uniques_from(source))
            peak, uniques, likes, messages, *others = await pipe.execute()
        snapshot = await self.snapshot(stream_id, with_chat=False)
        return {
            "viewers": snapshot.viewers,
            "peak_viewers": int(peak or 0),
            "unique_viewers": int(uniques),
            "likes": int(likes or 0),
            "chat_messages": int(messages or 0),
            **{f"views:{source}": int(n) for source, n in zip(VIEW_SOURCES, others, strict=True)},
        }
