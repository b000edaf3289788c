"""Batched EVALSHA: a server that lost its scripts (restart, failover, SCRIPT FLUSH) gets
them again and each call still runs exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from livecast.embedded_redis import EmbeddedRedis
from livecast.inventory.batch import ScriptBatcher
from livecast.inventory.catalog import Catalog, ProductFields
from livecast.inventory.money import Money
from livecast.inventory.reserve import Reservations
from livecast.redisdb import KeySpace


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("own"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def own_client(own_redis: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(own_redis.url)
    yield client
    await client.aclose()


async def test_scripts_reload_after_script_flush(own_client: aioredis.Redis) -> None:
    keys = KeySpace("noscript:")
    reservations = Reservations(own_client, keys)
    catalog = Catalog(own_client, keys, reservations)
    fields = ProductFields(title="Pen", price=Money(amount_minor=150, currency="EUR"), stock=30)
    await catalog.put("PEN-1", fields)
    await reservations.reserve("PEN-1", 1, "ann", "first")

    await own_client.script_flush()
    holds = await asyncio.gather(
        *(reservations.reserve("PEN-1", 1, f"buyer-{n}", f"n{n}") for n in range(20))
    )
    assert [h.replayed for h in holds] == [False] * 20
    assert reservations.batcher.calls_sent >= 21
    levels = await reservations.stock("PEN-1")
    assert levels is not None
    assert (levels.available, levels.held) == (9, 21)

    await own_client.script_flush()
    await catalog.put("PEN-2", fields)  # the unbatched scripts reload too
    await own_client.script_flush()
    assert (await reservations.expire_due("PEN-1")).expired == 0
    await reservations.batcher.aclose()


async def test_scripts_reload_after_a_restart(
    own_redis: EmbeddedRedis, own_client: aioredis.Redis
) -> None:
    keys = KeySpace("restart:")
    reservations = Reservations(own_client, keys)
    catalog = Catalog(own_client, keys, reservations)
    fields = ProductFields(title="Ink", price=Money(amount_minor=90, currency="EUR"), stock=5)
    await catalog.put("INK-1", fields)
    await reservations.reserve("INK-1", 2, "ann", "before")

    await asyncio.to_thread(own_redis.stop)
    await asyncio.to_thread(own_redis.start)  # same data dir: the append-only file survives
    await own_client.connection_pool.disconnect()

    hold = await reservations.reserve("INK-1", 1, "bob", "after")
    assert hold.left == 2
    again = await reservations.reserve("INK-1", 2, "ann", "before")
    assert again.replayed
    levels = await reservations.stock("INK-1")
    assert levels is not None
    assert (levels.available, levels.held) == (2, 3)
    await reservations.batcher.aclose()


async def test_calls_in_one_tick_share_a_script_run_and_stay_exact(
    own_client: aioredis.Redis,
) -> None:
    """Reservations folded into one reserve.lua run are each checked on their own: the
    same hold id reserves once, the last unit goes to exactly one buyer, other SKUs and
    bad calls in the same tick are unaffected."""
    keys = KeySpace("group:")
    reservations = Reservations(own_client, keys)
    catalog = Catalog(own_client, keys, reservations)
    price = Money(amount_minor=500, currency="EUR")
    await catalog.put("GRP-1", ProductFields(title="One", price=price, stock=3))
    await catalog.put("GRP-2", ProductFields(title="Two", price=price, stock=10))
    scripts_before = reservations.batcher.scripts_sent

    calls = [
        *(reservations.reserve("GRP-1", 1, "ann", "same") for _ in range(5)),
        *(reservations.reserve("GRP-1", 1, f"b{n}", f"g{n}") for n in range(4)),
        *(reservations.reserve("GRP-2", 2, f"c{n}", f"k{n}") for n in range(3)),
        reservations.reserve("GRP-1", 1, "dan", "lim", per_user_limit=1),
        reservations.reserve("NOPE-1", 1, "eve", "x"),
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert reservations.batcher.scripts_sent - scripts_before == 3  # GRP-1, GRP-2, NOPE-1

    same = results[:5]
    assert [getattr(r, "replayed", None) for r in same] == [False, True, True, True, True]
    grp1 = [r for r in results[5:9] if not isinstance(r, BaseException)]
    refused = [r for r in results[5:9] if isinstance(r, BaseException)]
    assert len(grp1) == 2
    assert [getattr(r, "code", None) for r in refused] == ["sold_out", "sold_out"]
    assert all(not isinstance(r, BaseException) for r in results[9:12])
    assert getattr(results[12], "code", None) == "sold_out"
    assert getattr(results[13], "code", None) == "unknown_sku"
    one, two = await reservations.stock("GRP-1"), await reservations.stock("GRP-2")
    assert one is not None
    assert two is not None
    assert (one.available, one.held, two.available, two.held) == (0, 3, 4, 6)
    await reservations.batcher.aclose()


async def test_batches_in_flight_are_bounded_and_nothing_is_lost(
    own_client: aioredis.Redis,
) -> None:
    keys = KeySpace("bounded:")
    reservations = Reservations(
        own_client, keys, batcher=ScriptBatcher(own_client, max_inflight=1, max_group=7)
    )
    catalog = Catalog(own_client, keys, reservations)
    price = Money(amount_minor=500, currency="EUR")
    for n in range(5):
        await catalog.put(f"B-{n}", ProductFields(title="Item", price=price, stock=40))

    async def buyer(n: int) -> int:
        made = 0
        for round_ in range(10):
            await reservations.reserve(f"B-{(n + round_) % 5}", 1, f"u{n}", f"r{n}-{round_}")
            made += 1
        return made

    assert sum(await asyncio.gather(*(buyer(n) for n in range(20)))) == 200
    for n in range(5):
        levels = await reservations.stock(f"B-{n}")
        assert levels is not None
        assert (levels.available, levels.held) == (0, 40)
    await reservations.batcher.aclose()
