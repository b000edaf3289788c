"""Streams and their registry in Redis.

A stream moves ``scheduled -> live -> ended``; a scheduled stream may also be cancelled
(``scheduled -> ended``); ``ended`` is final. :meth:`StreamRegistry.transition` is the one
place a state changes, and a Lua script makes check-and-move atomic, so two hosts ending
a stream at once, or a publisher going live while it is ended, cannot both win.

Keys, all under the ``{streams}`` hash tag so the scripts are valid on Redis Cluster::

    <prefix>{streams}:stream:<id>        hash of the fields of Stream
    <prefix>{streams}:state:<state>      sorted set of ids (scheduled by start time,
                                         live by start, ended by end time)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, cast

import msgspec
import redis.asyncio as aioredis

from livecast.error_codes import ErrorCode
from livecast.errors import Conflict, NotFound
from livecast.ids import is_stream_id, new_id
from livecast.redisdb import KeySpace, load_lua

__all__ = ["Stream", "StreamRegistry", "StreamState", "iso_time"]

_HERE = Path(__file__).parent


class StreamState(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


# Which states each state may be entered from.
_ENTERED_FROM: dict[StreamState, frozenset[StreamState]] = {
    StreamState.SCHEDULED: frozenset(),
    StreamState.LIVE: frozenset({StreamState.SCHEDULED}),
    StreamState.ENDED: frozenset({StreamState.SCHEDULED, StreamState.LIVE}),
}


# An RFC 3339 UTC time, as iso_time writes it.
IsoTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]


class Stream(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    title: str
    description: str
    seller_id: str
    seller_name: str
    state: StreamState
    public: Annotated[
        bool, msgspec.Meta(description="Listed in the directory and watchable without a token.")
    ]
    featured_skus: list[str]
    scheduled_start: IsoTime | None
    created_at: IsoTime
    started_at: IsoTime | None = None
    ended_at: IsoTime | None = None
    updated_at: IsoTime | None = None

    @property
    def is_live(self) -> bool:
        return self.state is StreamState.LIVE


def iso_time(ms: int | None) -> str | None:
    """Epoch milliseconds as RFC 3339 UTC (``2026-11-22T10:00:00.000Z``)."""
    if ms is None:
        return None
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


StateListener = Callable[[Stream, StreamState], Awaitable[None]]
# check(seller_id, stream_id (None for a stream being created), featured SKUs): raises an
# ApiError to refuse them.
FeaturingCheck = Callable[[str, str | None, list[str]], Awaitable[None]]


class StreamRegistry:
    def __init__(self, redis: aioredis.Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys
        self._transition = load_lua(redis, _HERE / "transition.lua")
        self._update = load_lua(redis, _HERE / "update.lua")
        self._listeners: list[StateListener] = []
        self._featuring_checks: list[FeaturingCheck] = []

    def on_state_change(self, listener: StateListener) -> None:
        """Call ``listener(stream, previous_state)`` after every successful transition."""
        self._listeners.append(listener)

    def on_featuring(self, check: FeaturingCheck) -> None:
        """Run ``check`` before a stream is created with featured SKUs or its featured
        SKUs change (the catalog refuses products the stream may not sell)."""
        self._featuring_checks.append(check)

    async def _check_featuring(
        self, seller_id: str, stream_id: str | None, skus: list[str]
    ) -> None:
        if skus:
            for check in self._featuring_checks:
                await check(seller_id, stream_id, skus)

    def _stream_key(self, stream_id: str) -> str:
        return self._keys.key("{streams}", "stream", stream_id)

    def hash_key(self, stream_id: str) -> str:
        """The stream's hash (fields named as :class:`Stream`'s: ``state``, ``seller_id``...),
        for a caller that reads a field beside other commands in one pipeline."""
        return self._stream_key(stream_id)

    def _index_keys(self) -> list[str]:
        return [self._keys.key("{streams}", "state", s.value) for s in StreamState]

    async def create(
        self,
        *,
        title: str,
        description: str,
        seller_id: str,
        seller_name: str,
        scheduled_start_ms: int | None,
        featured_skus: list[str],
        public: bool = True,
    ) -> Stream:
        await self._check_featuring(seller_id, None, featured_skus)
        stream_id = new_id()
        now_ms = await self._now_ms()
        fields: dict[str, str | bytes | int] = {
            "id": stream_id,
            "title": title,
            "description": description,
            "seller_id": seller_id,
            "seller_name": seller_name,
            "state": StreamState.SCHEDULED.value,
            "public": int(public),
            "featured_skus": msgspec.json.encode(featured_skus),
            "created_at": now_ms,
            "updated_at": now_ms,
        }
        if scheduled_start_ms is not None:
            fields["scheduled_start"] = scheduled_start_ms
        scheduled_index = self._index_keys()[0]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._stream_key(stream_id), mapping=cast(Any, fields))
            pipe.zadd(scheduled_index, {stream_id: scheduled_start_ms or now_ms})
            await pipe.execute()
        return await self.get(stream_id)

    async def get(self, stream_id: str) -> Stream:
        stream = await self.find(stream_id)
        if stream is None:
            raise NotFound(f"no stream {stream_id!r}", code=ErrorCode.STREAM_NOT_FOUND)
        return stream

    async def find(self, stream_id: str) -> Stream | None:
        if not is_stream_id(stream_id):
            return None
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(self._stream_key(stream_id)))
        return _decode(raw) if raw else None

    async def list_streams(
        self, state: StreamState | None = None, *, limit: int = 50
    ) -> list[Stream]:
        """Live streams newest first, scheduled soonest first, ended most recent first."""
        states = [state] if state else [StreamState.LIVE, StreamState.SCHEDULED, StreamState.ENDED]
        ids: list[str] = []
        for s in states:
            key = self._keys.key("{streams}", "state", s.value)
            if s is StreamState.SCHEDULED:
                found: Any = await self._redis.zrange(key, 0, limit - 1)
            else:
                found = await self._redis.zrevrange(key, 0, limit - 1)
            ids.extend(i.decode() for i in cast(list[bytes], found))
        ids = ids[:limit]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id in ids:
                pipe.hgetall(self._stream_key(stream_id))
            rows = await pipe.execute()
        return [_decode(row) for row in rows if row]

    async def ids(self, state: StreamState) -> list[str]:
        """The id of every stream in ``state``, however many."""
        key = self._keys.key("{streams}", "state", state.value)
        return [i.decode() for i in cast(list[bytes], await self._redis.zrange(key, 0, -1))]

    async def ended_between(self, after_ms: int, upto_ms: int) -> list[str]:
        """The ids of the streams that ended after ``after_ms`` and at or before
        ``upto_ms`` (Redis server time, ms), in the order they ended."""
        key = self._keys.key("{streams}", "state", StreamState.ENDED.value)
        found = await self._redis.zrangebyscore(key, f"({after_ms}", upto_ms)
        return [i.decode() for i in cast(list[bytes], found)]

    async def update(self, stream_id: str, changes: dict[str, Any]) -> Stream:
        """Change editable fields (title, description, scheduled_start_ms, featured_skus,
        public); 409 once the stream has ended."""
        if not is_stream_id(stream_id):
            raise NotFound(f"no stream {stream_id!r}", code=ErrorCode.STREAM_NOT_FOUND)
        if "featured_skus" in changes:
            seller_id = (await self.get(stream_id)).seller_id
            await self._check_featuring(seller_id, stream_id, changes["featured_skus"])
        args: list[Any] = []
        for name, value in changes.items():
            if name == "featured_skus":
                args += [name, msgspec.json.encode(value)]
            elif name == "scheduled_start_ms":
                args += ["scheduled_start", value]
            elif name == "public":
                args += [name, int(value)]
            else:
                args += [name, value]
        if args:
            keys = [self._stream_key(stream_id), self._index_keys()[0]]
            status, state = await self._update(keys=keys, args=args)
            self._check_status(stream_id, status, state, "edit")
        return await self.get(stream_id)

    async def transition(self, stream_id: str, target: StreamState) -> Stream:
        """Move the stream to ``target``; 409 if its state does not allow that."""
        if not is_stream_id(stream_id):
            raise NotFound(f"no stream {stream_id!r}", code=ErrorCode.STREAM_NOT_FOUND)
        allowed = [s.value for s in _ENTERED_FROM[target]]
        keys = [self._stream_key(stream_id), *self._index_keys()]
        status: bytes
        previous: bytes
        status, previous = await self._transition(keys=keys, args=[target.value, *allowed])
        self._check_status(stream_id, status, previous, f"move to {target.value}")
        previous_state = StreamState(previous.decode())
        stream = await self.get(stream_id)
        for listener in self._listeners:
            await listener(stream, previous_state)
        return stream

    @staticmethod
    def _check_status(stream_id: str, status: bytes, state: bytes, action: str) -> None:
        if status == b"not_found":
            raise NotFound(f"no stream {stream_id!r}", code=ErrorCode.STREAM_NOT_FOUND)
        if status == b"illegal":
            raise Conflict(
                f"stream {stream_id!r} is {state.decode()}; cannot {action}",
                code=ErrorCode.ILLEGAL_STATE,
            )

    async def _now_ms(self) -> int:
        seconds, micros = await self._redis.time()
        return int(seconds) * 1000 + int(micros) // 1000


def _decode(raw: dict[bytes, bytes]) -> Stream:
    row = {k.decode(): v.decode() for k, v in raw.items()}

    def ms(name: str) -> int | None:
        return int(row[name]) if name in row else None

    return Stream(
        id=row["id"],
        title=row["title"],
        description=row["description"],
        seller_id=row["seller_id"],
        seller_name=row["seller_name"],
        state=StreamState(row["state"]),
        public=row.get("public", "1") == "1",
        featured_skus=msgspec.json.decode(row.get("featured_skus", "[]"), type=list[str]),
        scheduled_start=iso_time(ms("scheduled_start")),
        created_at=iso_time(ms("created_at")) or "",
        started_at=iso_time(ms("live_at")),
        ended_at=iso_time(ms("ended_at")),
        updated_at=iso_time(ms("updated_at")),
    )
