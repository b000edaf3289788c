"""How a selling format opens its record on a stream: the steps every format takes alike.

Auctions, group buys, knock-downs and giveaways start the same way around their own
start script: one start at a time per stream (:func:`one_start_at_a_time`), none while
one of the same kind runs (:func:`refuse_running`), and the new record indexed where the
sweeps and reads find it before its script runs, then listed on its stream, or the
index taken back when the script refuses (:func:`start_indexed`). What differs, the
script's arguments and what the record means, stays in each format's module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn, Protocol

import redis.asyncio as aioredis

from livecast.error_codes import ErrorCode
from livecast.errors import Conflict
from livecast.inventory._private import text
from livecast.inventory.errors import raise_for_status

__all__ = ["FormatStore", "StartKeys", "one_start_at_a_time", "refuse_running", "start_indexed"]

# How long a start may hold its stream's start lock: gone by itself if its node dies.
_LOCK_MS = 10_000


@asynccontextmanager
async def one_start_at_a_time(
    redis: aioredis.Redis, key: str, *, what: str, code: ErrorCode
) -> AsyncIterator[None]:
    """Hold the stream's start lock ``key`` for the block, so two hosts starting at once
    cannot both find none running: the second is 409 ``code``."""
    if not await redis.set(key, "1", nx=True, px=_LOCK_MS):
        raise Conflict(f"another {what} is starting on this stream", code=code)
    try:
        yield
    finally:
        await redis.delete(key)


def refuse_running(running_id: str | None, *, what: str, code: ErrorCode, id_field: str) -> None:
    """409 ``code`` naming the record of this kind still running on the stream, if any."""
    if running_id is not None:
        raise Conflict(
            f"{what} {running_id} is running on this stream", code=code, **{id_field: running_id}
        )


class FormatStore(Protocol):
    """What every format's store names alike: its id -> SKU index, its due set, and a
    stream's current record and list of records."""

    sku_index: str
    due_key: str

    def stream_key(self, stream_id: str) -> str: ...

    def stream_list_key(self, stream_id: str) -> str: ...


class StartKeys:
    """The keys a format's start writes besides its record: the id -> SKU index, the due
    set its sweep reads, the stream's current record and the stream's list of them."""

    @classmethod
    def of(cls, store: FormatStore, stream_id: str) -> StartKeys:
        return cls(
            sku_index=store.sku_index,
            due=store.due_key,
            stream_current=store.stream_key(stream_id),
            stream_list=store.stream_list_key(stream_id),
        )

    __slots__ = ("due", "sku_index", "stream_current", "stream_list")

    def __init__(self, *, sku_index: str, due: str, stream_current: str, stream_list: str):
        self.sku_index = sku_index
        self.due = due
        self.stream_current = stream_current
        self.stream_list = stream_list


def _refused(status: str, reply: list[Any], sku: str) -> NoReturn:
    raise_for_status(status, sku, sku=sku)


async def start_indexed(
    redis: aioredis.Redis,
    keys: StartKeys,
    *,
    record_id: str,
    sku: str,
    due_guess_ms: int | None,
    script: Callable[[], Awaitable[list[Any]]],
    due_at: Callable[[list[Any]], int] = lambda reply: int(reply[2]),
    refused: Callable[[str, list[Any], str], NoReturn] = _refused,
) -> list[Any]:
    """Run a start ``script`` whose reply is ``[status, started_ms, ...]``.

    The record is indexed first (its SKU, and its due time guessed, so a sweep finds it
    even if this node dies right after the script), then the script runs; on "ok" the
    due time becomes the script's (``due_at``), and the record is the stream's current one
    and joins its list; on a refusal the index is taken back and ``refused`` raises.
    ``due_guess_ms`` None: the record has no due time (a giveaway drawn by hand)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.sku_index, record_id, sku)
        if due_guess_ms is not None:
            pipe.zadd(keys.due, {record_id: due_guess_ms})
        await pipe.execute()
    reply = await script()
    status = text(reply[0])
    if status != "ok":
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hdel(keys.sku_index, record_id)
            pipe.zrem(keys.due, record_id)
            await pipe.execute()
        refused(status, reply, sku)
    async with redis.pipeline(transaction=False) as pipe:
        if due_guess_ms is not None:
            pipe.zadd(keys.due, {record_id: due_at(reply)})
        pipe.set(keys.stream_current, record_id)
        pipe.zadd(keys.stream_list, {record_id: int(reply[1])})
        await pipe.execute()
    return reply
