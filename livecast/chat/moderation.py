"""Chat moderation state of a stream: bans and time-outs, slow mode, banned words.

It lives in Redis, so every node enforces it (the post script reads it atomically with
each message) and it survives reconnects and restarts.
"""

from __future__ import annotations

from typing import Annotated, cast

import msgspec
import redis.asyncio as aioredis

from livecast.chat._keys import LiveKeys
from livecast.chat.events import ChatSettingsChanged, ChatSettingsData
from livecast.chat.history import word_tokens
from livecast.events import EventPublisher
from livecast.redisdb import KeySpace

__all__ = ["Ban", "Moderation", "ModerationSettings"]


class Ban(msgspec.Struct, frozen=True, kw_only=True):
    user: str
    until_ms: Annotated[
        int | None, msgspec.Meta(description="end of a time-out (epoch ms); null for a ban")
    ]


class ModerationSettings(msgspec.Struct, frozen=True, kw_only=True):
    slow_mode_s: int
    words: list[str]
    bans: list[Ban]


class Moderation:
    def __init__(self, redis: aioredis.Redis, keys: KeySpace, events: EventPublisher) -> None:
        self._redis = redis
        self._keys = keys
        self._events = events

    async def _now_ms(self) -> int:
        seconds, micros = await self._redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def ban(self, stream_id: str, user: str, seconds: int | None) -> int:
        """Ban ``user`` for good (``seconds`` None) or time them out; the end (epoch ms; 0)."""
        until = 0 if seconds is None else await self._now_ms() + seconds * 1000
        await self._redis.hset(LiveKeys(self._keys, stream_id).bans, user, until)
        return until

    async def unban(self, stream_id: str, user: str) -> bool:
        removed = await self._redis.hdel(LiveKeys(self._keys, stream_id).bans, user)
        return bool(removed)

    async def set_slow_mode(self, stream_id: str, seconds: int) -> None:
        """Set slow mode and tell viewers (``chat.settings``), so their UI can show it."""
        await self._redis.hset(LiveKeys(self._keys, stream_id).mod, "slow_mode_s", seconds)
        settings = ChatSettingsData(slow_mode_s=seconds)
        await self._events.publish(ChatSettingsChanged(stream=stream_id, data=settings))

    async def set_words(self, stream_id: str, words: list[str]) -> list[str]:
        """Replace the stream's banned words (whole words or phrases, case-insensitive)."""
        normalized = sorted({" ".join(word_tokens(w).split()) for w in words} - {""})
        key = LiveKeys(self._keys, stream_id).words
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if normalized:
                pipe.sadd(key, *normalized)
            await pipe.execute()
        return normalized

    async def settings(self, stream_id: str) -> ModerationSettings:
        keys = LiveKeys(self._keys, stream_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys.mod, "slow_mode_s")
            pipe.smembers(keys.words)
            pipe.hgetall(keys.bans)
            pipe.time()
            slow, words, bans, now = await pipe.execute()
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        active = []
        for user, until_raw in cast(dict[bytes, bytes], bans).items():
            until = int(until_raw)
            if until == 0 or until > now_ms:
                active.append(Ban(user=user.decode(), until_ms=until or None))
        return ModerationSettings(
            slow_mode_s=int(slow or 0),
            words=sorted(w.decode() for w in words),
            bans=sorted(active, key=lambda ban: ban.user),
        )
