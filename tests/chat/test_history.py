"""Chat history in a Redis Stream, over every Redis of the run: offsets, the trim floor,
gap-free replay, deletions, and refusals that change nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from livecast.auth import Identity, Role
from livecast.chat.history import ChatHistory
from livecast.config import ChatSettings
from livecast.errors import ApiError
from livecast.events import EventPublisher
from livecast.redisdb import KeySpace

ALICE = Identity(sub="alice", name="Alice", role=Role.VIEWER)


@pytest.fixture
async def history(any_redis_url: str, key_prefix: str) -> AsyncIterator[ChatHistory]:
    redis = aioredis.Redis.from_url(any_redis_url)
    keys = KeySpace(key_prefix)
    settings = dataclasses.replace(ChatSettings(), history_length=10, rate_limit_messages=100)
    yield ChatHistory(redis, keys, EventPublisher(redis, keys), settings)
    async for key in redis.scan_iter(match=f"{key_prefix}*", count=1000):
        await redis.delete(key)
    await redis.aclose()


async def test_replay_is_exact_until_entries_are_trimmed(history: ChatHistory) -> None:
    offsets = [
        (await history.post("s1", ALICE, f"m{n}", f"c{n}", is_host=False)).offset for n in range(8)
    ]
    replayed = await history.replay("s1", offsets[2])
    assert replayed is not None
    assert [e["offset"] for e in replayed] == offsets[3:]
    assert [e["data"]["text"] for e in replayed] == [f"m{n}" for n in range(3, 8)]
    assert await history.replay("s1", offsets[-1]) == []

    offsets += [
        (await history.post("s1", ALICE, f"m{n}", f"c{n}", is_host=False)).offset
        for n in range(8, 14)
    ]
    # 14 posted, 10 kept: entries 0-3 were trimmed, so offsets before 3 cannot recover.
    assert await history.replay("s1", offsets[2]) is None
    replayed = await history.replay("s1", offsets[3])
    assert replayed is not None
    assert [e["offset"] for e in replayed] == offsets[4:]
    snapshot = await history.snapshot("s1")
    assert [m["id"] for m in snapshot.chat] == offsets[4:]
    assert snapshot.offset == offsets[-1]


async def test_delete_is_replayed_and_removed_from_history(history: ChatHistory) -> None:
    first = (await history.post("s1", ALICE, "keep", "a", is_host=False)).offset
    doomed = (await history.post("s1", ALICE, "oops", "b", is_host=False)).offset
    deletion = await history.delete("s1", doomed)
    replayed = await history.replay("s1", first)
    assert replayed is not None
    assert [(e["type"], e["offset"], e["data"]) for e in replayed] == [
        ("chat.deleted", deletion, {"id": doomed})
    ]
    assert [m["text"] for m in (await history.snapshot("s1")).chat] == ["keep"]
    with pytest.raises(ApiError) as not_found:
        await history.delete("s1", deletion)
    assert not_found.value.code == "message_not_found"


async def test_refusals_change_nothing(history: ChatHistory) -> None:
    anonymous = Identity(sub="", name="", role=Role.VIEWER)
    for author, text, code in [
        (anonymous, "hi", "unauthorized"),
        (ALICE, " \t ", "empty"),
        (ALICE, "x" * 301, "too_long"),
        (ALICE, "visit www.example.org", "links_not_allowed"),
    ]:
        with pytest.raises(ApiError) as refused:
            await history.post("s1", author, text, "c", is_host=False)
        assert refused.value.code == code
    snapshot = await history.snapshot("s1")
    assert snapshot.chat == []
    assert snapshot.offset == "0-0"
    assert await history.replay("s1", "0-0") == []


async def test_hello_without_history(any_redis_url: str, key_prefix: str) -> None:
    redis = aioredis.Redis.from_url(any_redis_url)
    keys = KeySpace(key_prefix)
    settings = dataclasses.replace(ChatSettings(), hello_messages=0)
    history = ChatHistory(redis, keys, EventPublisher(redis, keys), settings)
    try:
        newest = (await history.post("s1", ALICE, "hi", "c", is_host=False)).offset
        snapshot = await history.snapshot("s1")
        assert snapshot.chat == []
        assert snapshot.offset == newest
    finally:
        async for key in redis.scan_iter(match=f"{key_prefix}*", count=1000):
            await redis.delete(key)
        await redis.aclose()
