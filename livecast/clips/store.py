"""Product clips: their records in Redis, made when a replay is finalized.

Each pinned span of an ended stream (a pin to the next pin or unpin, see
:mod:`livecast.replay.moments`) becomes a clip: a slice of the replay's own segment
files (:mod:`livecast.replay.slices`), no re-encode. A clip is **published** when it is
made (the replay it is cut from is already out; the seller hides what should not show),
and moves between ``draft``, ``published`` and ``hidden`` at the seller's hand; its
seller may trim it within the recorded span.

Keys, under one hash tag::

    <prefix>{clips}:clip:<clip id>     hash: stream_id, sku, span_start_s, span_end_s,
                                       start_s, end_s, state, created_ms
    <prefix>{clips}:stream:<stream id> set of the stream's clip ids
    <prefix>{clips}:published          sorted set of published clip ids by created_ms
    <prefix>{clips}:sku:<sku>          sorted set of published clip ids of a SKU

Clips are deleted with their replay (its ``DELETE`` and the retention sweep).
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, Final, cast

import msgspec
import redis.asyncio as aioredis
from aiohttp import web

from livecast.ids import new_id
from livecast.redisdb import KeySpace
from livecast.replay.moments import pinned_spans
from livecast.replay.store import ReplayRecord
from livecast.timeline.store import Timeline

__all__ = ["CLIPS", "Clip", "ClipState", "Clips"]

_MIN_S: Final = 0.5  # the shortest clip, and the shortest trim


class ClipState(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    HIDDEN = "hidden"


class Clip(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    stream_id: str
    sku: str
    span_start_s: float  # the pinned span as recorded: trims stay within it
    span_end_s: float
    start_s: float
    end_s: float
    state: ClipState
    created_ms: int


def _clip(clip_id: str, raw: dict[bytes, bytes]) -> Clip:
    row = {k.decode(): v.decode() for k, v in raw.items()}
    return Clip(
        id=clip_id,
        stream_id=row["stream_id"],
        sku=row["sku"],
        span_start_s=float(row["span_start_s"]),
        span_end_s=float(row["span_end_s"]),
        start_s=float(row["start_s"]),
        end_s=float(row["end_s"]),
        state=ClipState(row["state"]),
        created_ms=int(row["created_ms"]),
    )


class Clips:
    def __init__(self, redis: aioredis.Redis, keys: KeySpace, timeline: Timeline) -> None:
        self._redis = redis
        self._keys = keys
        self._timeline = timeline

    def _key(self, *parts: str) -> str:
        return self._keys.key("{clips}", *parts)

    async def make(self, record: ReplayRecord) -> list[Clip]:
        """The clips of a finalized replay, one per pinned span (made once: none if the
        stream has clips already)."""
        entries = await self._timeline.entries(record.stream_id, limit=self._timeline.max_entries)
        spans = [s for s in pinned_spans(entries, record) if s.end_s - s.start_s >= _MIN_S]
        if not spans or not await self._redis.set(
            self._key("made", record.stream_id), "1", nx=True
        ):
            return []
        now = int(time.time() * 1000)
        made = []
        async with self._redis.pipeline(transaction=True) as pipe:
            for index, span in enumerate(spans):
                clip = Clip(
                    id=new_id(),
                    stream_id=record.stream_id,
                    sku=span.sku,
                    span_start_s=span.start_s,
                    span_end_s=span.end_s,
                    start_s=span.start_s,
                    end_s=span.end_s,
                    state=ClipState.PUBLISHED,
                    created_ms=now + index,
                )
                made.append(clip)
                self._save(pipe, clip)
                pipe.sadd(self._key("stream", clip.stream_id), clip.id)
            await pipe.execute()
        return made

    def _save(self, pipe: Any, clip: Clip) -> None:
        row = msgspec.structs.asdict(clip)
        del row["id"]
        pipe.hset(self._key("clip", clip.id), mapping={k: str(v) for k, v in row.items()})
        if clip.state is ClipState.PUBLISHED:
            pipe.zadd(self._key("published"), {clip.id: clip.created_ms})
            pipe.zadd(self._key("sku", clip.sku), {clip.id: clip.created_ms})
        else:
            pipe.zrem(self._key("published"), clip.id)
            pipe.zrem(self._key("sku", clip.sku), clip.id)

    async def get(self, clip_id: str) -> Clip | None:
        if not clip_id.isascii() or not clip_id.replace("-", "").replace("_", "").isalnum():
            return None
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(self._key("clip", clip_id)))
        return _clip(clip_id, raw) if raw else None

    async def _many(self, ids: list[bytes]) -> list[Clip]:
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for raw in ids:
                pipe.hgetall(self._key("clip", raw.decode()))
            rows = await pipe.execute()
        return [_clip(i.decode(), row) for i, row in zip(ids, rows, strict=True) if row]

    async def published(self, limit: int, sku: str | None = None) -> list[Clip]:
        """Published clips, newest first (of one SKU, or all)."""
        key = self._key("sku", sku) if sku is not None else self._key("published")
        return await self._many(cast(list[bytes], await self._redis.zrevrange(key, 0, limit - 1)))

    async def of_stream(self, stream_id: str) -> list[Clip]:
        """Every clip of the stream, in order on its replay."""
        ids = cast(set[bytes], await self._redis.smembers(self._key("stream", stream_id)))
        return sorted(await self._many(sorted(ids)), key=lambda c: c.start_s)

    async def update(self, clip: Clip) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            self._save(pipe, clip)
            await pipe.execute()

    async def delete_stream(self, stream_id: str) -> int:
        """Delete every clip of the stream (its replay is gone); how many there were."""
        clips = await self.of_stream(stream_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            for clip in clips:
                pipe.delete(self._key("clip", clip.id))
                pipe.zrem(self._key("published"), clip.id)
                pipe.zrem(self._key("sku", clip.sku), clip.id)
            pipe.delete(self._key("stream", stream_id), self._key("made", stream_id))
            await pipe.execute()
        return len(clips)


CLIPS = web.AppKey("clips", Clips)
