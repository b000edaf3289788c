"""The sweeper with two nodes (two apps on one Redis): expired holds come back exactly
once, deals end at their end time and are announced and counted once, even a deal whose
node crashed between carving its stock and indexing it. (``redis_client`` is asked for
so the run's keys are deleted afterwards.)"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from livecast.app import create_app
from livecast.config import Settings
from livecast.events import EventPublisher
from livecast.inventory import deals as deals_module
from livecast.inventory.deals import Deals
from livecast.inventory.money import Money
from livecast.inventory.service import INVENTORY
from livecast.inventory.sweeper import Sweeper
from livecast.redisdb import load_lua
from livecast.timeline import Timeline
from tests.conftest import AiohttpClient
from tests.inventory.conftest import Services, listen


def _fast(settings: Settings) -> Settings:
    inventory = dataclasses.replace(
        settings.inventory, sweep_interval_s=0.05, event_interval_s=0.05
    )
    return dataclasses.replace(settings, inventory=inventory)


async def _two_nodes(
    aiohttp_client: AiohttpClient, settings: Settings
) -> tuple[web.Application, web.Application]:
    nodes = (create_app(_fast(settings)), create_app(_fast(settings)))
    for node in nodes:
        await aiohttp_client(node)
    return nodes


async def test_two_sweepers_return_each_expired_hold_once(
    aiohttp_client: AiohttpClient, settings: Settings, redis_client: aioredis.Redis
) -> None:
    one, two = await _two_nodes(aiohttp_client, settings)
    from livecast.inventory.catalog import ProductFields

    await one[INVENTORY].catalog.put(
        "SWEEP-1",
        ProductFields(title="Lamp", price=Money(amount_minor=3000, currency="EUR"), stock=100),
    )
    reserved = await asyncio.gather(
        *(
            (one if n % 2 else two)[INVENTORY].reservations.reserve(
                "SWEEP-1", 1, f"buyer-{n}", f"s{n}", ttl_s=0.3
            )
            for n in range(60)
        )
    )
    assert len(reserved) == 60
    levels = await one[INVENTORY].reservations.stock("SWEEP-1")
    assert levels is not None
    assert (levels.available, levels.held) == (40, 60)

    async with asyncio.timeout(10):
        while levels.held:
            await asyncio.sleep(0.05)
            levels = await one[INVENTORY].reservations.stock("SWEEP-1")
            assert levels is not None
    await asyncio.sleep(0.3)  # more sweeps from both nodes change nothing
    levels = await two[INVENTORY].reservations.stock("SWEEP-1")
    assert levels is not None
    assert (levels.available, levels.held, levels.sold) == (100, 0, 0)
    states = {
        hold.state.value
        for n in range(60)
        if (hold := await one[INVENTORY].reservations.get_hold("SWEEP-1", f"s{n}"))
    }
    assert states == {"expired"}
    schedule = one[INVENTORY].sweeper.due_key
    assert await redis_client.zscore(schedule, "SWEEP-1") is None  # nothing left to sweep


async def test_a_deal_ends_at_its_time_announced_once(
    aiohttp_client: AiohttpClient, settings: Settings, redis_client: aioredis.Redis
) -> None:
    one, two = await _two_nodes(aiohttp_client, settings)
    from livecast.inventory.catalog import ProductFields

    await one[INVENTORY].catalog.put(
        "SWEEP-2",
        ProductFields(title="Vase", price=Money(amount_minor=3000, currency="EUR"), stock=10),
    )
    async with listen(one, "stream-x") as log:
        deal = await two[INVENTORY].deals.start(
            stream_id="stream-x",
            sku="SWEEP-2",
            price=Money(amount_minor=1000, currency="EUR"),
            quantity=6,
            duration_s=1,
            per_buyer_limit=1,
        )
        await log.wait_for("deal.ended")
        await asyncio.sleep(0.3)
        assert len(log.of("deal.ended")) == 1
        assert log.of("deal.ended")[0]["id"] == deal.id
        assert log.of("deal.ended")[0]["ended_reason"] == "time"
    levels = await one[INVENTORY].reservations.stock("SWEEP-2")
    assert levels is not None
    assert (levels.available, levels.deal_reserved) == (10, 0)


def _services_sweeper(services: Services, deals: Deals) -> Sweeper:
    return Sweeper(
        services.redis,
        services.keys,
        services.reservations,
        deals,
        catalog_index_key=services.catalog.index_key,
        interval_s=1,
        full_interval_s=60,
    )


def _deals(services: Services) -> Deals:
    return Deals(
        services.redis,
        services.keys,
        services.reservations,
        services.catalog,
        EventPublisher(services.redis, services.keys),
        Timeline(services.redis, services.keys, max_entries=100, retention_s=0),
    )


@pytest.mark.parametrize("indexed", ["nothing", "due_only"])
async def test_a_deal_whose_node_crashed_right_after_the_carve_returns_its_stock(
    services: Services, indexed: str
) -> None:
    """A node runs the carve (``deal_start.lua``) and dies before writing any index, or
    after writing only ``deals:due``: the sweeper neither strands the deal's units nor
    fails on the unresolvable id; the deal ends at its time and can be found again."""
    deals = _deals(services)
    sweeper = _services_sweeper(services, deals)
    await services.add_product("CRASH-1", 10)
    carve = load_lua(services.redis, Path(deals_module.__file__).parent / "deal_start.lua")
    deal_id = "crashed-deal"
    reply = await carve(
        keys=[services.reservations.base("CRASH-1")],
        args=[deal_id, "stream-c", 6, 500, "EUR", 0, 1000, 1],
    )
    assert reply[0] == b"ok"
    ends = int(reply[2])
    if indexed == "due_only":  # the index pipeline got as far as deals:due
        await services.redis.zadd(deals.due_key, {deal_id: ends})
    levels = await services.reservations.stock("CRASH-1")
    assert levels is not None
    assert (levels.available, levels.deal_reserved) == (4, 6)

    await asyncio.sleep(max(0, ends - await services.now_ms()) / 1000 + 0.05)
    # The fast path cannot resolve the id (if it has it at all): it drops it instead of
    # failing on every pass.
    report = await sweeper.sweep_once()
    assert report.deals_ended == 0
    assert await services.redis.zscore(deals.due_key, deal_id) is None
    # The SKU's own deal schedule, written with the carve, ends it.
    report = await sweeper.sweep_once(full=True)
    assert report.deals_ended == 1
    levels = await services.reservations.stock("CRASH-1")
    assert levels is not None
    assert (levels.available, levels.held, levels.deal_reserved) == (10, 0, 0)
    deal = await deals.get(deal_id)
    assert (deal.state.value, deal.ended_reason, deal.stream_id) == ("ended", "time", "stream-c")
    assert [d.id for d in await deals.for_stream("stream-c")] == [deal_id]
    # Nothing is left to sweep and later sweeps change nothing.
    assert (await sweeper.sweep_once(full=True)).deals_ended == 0
    assert await services.reservations.stock("CRASH-1") == levels


async def test_a_deal_ended_by_another_node_is_not_counted_again(services: Services) -> None:
    deals = _deals(services)
    one, two = _services_sweeper(services, deals), _services_sweeper(services, deals)
    await services.add_product("COUNT-1", 5)
    euro = Money(amount_minor=300, currency="EUR")
    deal = await deals.start(
        stream_id="s-count", sku="COUNT-1", price=euro, quantity=3, duration_s=1,
        per_buyer_limit=0,
    )  # fmt: skip
    await asyncio.sleep(max(0, deal.ends_at_ms - await services.now_ms()) / 1000 + 0.05)
    due = await deals.due(await services.now_ms())
    assert due == [deal.id]
    assert (await one.sweep_once()).deals_ended == 1
    # Node two read deals:due before node one took the deal off it.
    await services.redis.zadd(deals.due_key, {deal.id: deal.ends_at_ms})
    assert (await two.sweep_once()).deals_ended == 0
    assert (await two.sweep_once(full=True)).deals_ended == 0
    levels = await services.reservations.stock("COUNT-1")
    assert levels is not None
    assert (levels.available, levels.deal_reserved) == (5, 0)
