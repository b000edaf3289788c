"""The stored timeline over every Redis of the run: order, cursors, its bound, its expiry,
the append in the event's MULTI, and the media clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio as aioredis

from livecast.events import EventPublisher
from livecast.ingest.origin import Origin, OriginRegistry
from livecast.inventory.pins import PinCleared, PinClearedData
from livecast.redisdb import KeySpace
from livecast.timeline import Moment, MomentKind, ShownPrice, Timeline


@pytest.fixture
async def redis_and_keys(any_redis_url: str) -> AsyncIterator[tuple[aioredis.Redis, KeySpace]]:
    prefix = f"t-{uuid.uuid4().hex[:12]}:"
    client = aioredis.Redis.from_url(any_redis_url)
    yield client, KeySpace(prefix)
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()


def _pin(sku: str, media: int | None) -> Moment:
    return Moment(
        kind=MomentKind.PIN_SET,
        media_time_ms=media,
        sku=sku,
        title=f"Hat {sku}",
        price=ShownPrice(amount_minor=1200, currency="EUR"),
    )


async def _now_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_entries_in_order_from_any_cursor_and_bounded(
    redis_and_keys: tuple[aioredis.Redis, KeySpace],
) -> None:
    redis, keys = redis_and_keys
    timeline = Timeline(redis, keys, max_entries=10, retention_s=0)
    before = await _now_ms(redis)
    for n in range(14):
        await timeline.append("s1", _pin(f"SKU-{n}", 1_000 + n))
    entries = await timeline.entries("s1")
    # the oldest four went: ten are kept, oldest first
    assert [e.sku for e in entries] == [f"SKU-{n}" for n in range(4, 14)]
    assert [e.media_time_ms for e in entries] == list(range(1_004, 1_014))
    assert entries[0].title == "Hat SKU-4"
    assert entries[0].price == ShownPrice(amount_minor=1200, currency="EUR")
    assert all(before <= e.at_ms <= before + 5_000 for e in entries)
    # after an entry id
    after = await timeline.entries("s1", since=entries[6].id)
    assert [e.sku for e in after] == ["SKU-11", "SKU-12", "SKU-13"]
    assert await timeline.entries("s1", since=entries[-1].id) == []
    # a limit
    assert [e.sku for e in await timeline.entries("s1", limit=2)] == ["SKU-4", "SKU-5"]
    # from a time on: those recorded then or later
    assert await timeline.entries("s1", since=str(entries[0].at_ms)) == entries
    assert await timeline.entries("s1", since=str(entries[-1].at_ms + 1)) == []
    # other streams have their own
    assert await timeline.entries("s2") == []
    assert await redis.ttl(timeline.key("s1")) == -1  # kept like the stream's other keys


async def test_a_retention_expires_the_timeline_after_its_last_entry(
    redis_and_keys: tuple[aioredis.Redis, KeySpace],
) -> None:
    redis, keys = redis_and_keys
    timeline = Timeline(redis, keys, max_entries=100, retention_s=60)
    await timeline.append("s1", _pin("A", None))
    assert 0 < await redis.pttl(timeline.key("s1")) <= 60_000


async def test_the_entry_goes_with_its_event_in_one_multi(
    redis_and_keys: tuple[aioredis.Redis, KeySpace],
) -> None:
    redis, keys = redis_and_keys
    timeline = Timeline(redis, keys, max_entries=100, retention_s=0)
    events = EventPublisher(redis, keys)
    pubsub = redis.pubsub()
    await pubsub.subscribe(events.channel("s1"))
    try:
        await events.set_state(
            "pin",
            _pin("A", 5),
            PinCleared(stream="s1", data=PinClearedData(sku="first")),
            also=timeline.appending("s1", _pin("A", 5)),
        )
        await events.publish(
            PinCleared(stream="s1", data=PinClearedData(sku="second")),
            also=timeline.appending("s1", Moment(kind=MomentKind.PIN_CLEARED, media_time_ms=6)),
        )
        seen: list[str] = []
        async with asyncio.timeout(5):
            while len(seen) < 2:
                # None: the subscription's confirmation, or nothing yet
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    seen.append(msgspec.msgpack.decode(message["data"])["data"]["sku"])
        assert seen == ["first", "second"]
    finally:
        await pubsub.aclose()
    entries = await timeline.entries("s1")
    assert [(e.kind, e.media_time_ms) for e in entries] == [
        (MomentKind.PIN_SET, 5),
        (MomentKind.PIN_CLEARED, 6),
    ]
    assert await redis.hexists(events.state_key("s1"), "pin")


async def test_media_time_is_the_server_clock_while_the_stream_has_an_origin(
    redis_and_keys: tuple[aioredis.Redis, KeySpace],
) -> None:
    redis, keys = redis_and_keys
    timeline = Timeline(redis, keys, max_entries=100, retention_s=0)
    assert await timeline.media_now("s1") is None  # no media: null
    assert await timeline.media_now("s1", at_ms=123) is None
    origins = OriginRegistry(redis, keys, Origin("node-a", "http://127.0.0.1:1"), ttl_s=30)
    async with origins.exclusive("s1"):
        assert await origins.claim("s1") is None
    before = await _now_ms(redis)
    media = await timeline.media_now("s1")
    after = await _now_ms(redis)
    assert media is not None
    assert before <= media <= after
    assert await timeline.media_now("s1", at_ms=123) == 123  # due at a set time
    async with origins.exclusive("s1"):
        await origins.release("s1")
    assert await timeline.media_now("s1") is None
