"""Stock writes when the reply is lost: Redis applied the write, the connection dropped
before its answer came back. The app's Redis client must not send it again by itself (a
stock delta would apply twice); a reservation retried by its caller reuses its hold id and
reserves once."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from livecast.config import RedisSettings
from livecast.inventory.catalog import Catalog, ProductFields, StockChange
from livecast.inventory.money import Money
from livecast.inventory.reserve import Reservations
from livecast.redisdb import KeySpace, open_redis


class ReplyDropper:
    """A TCP proxy in front of a unix-socket Redis. Once armed, it passes the next command
    on and then closes the connection in place of passing its reply back."""

    def __init__(self, socket_path: str) -> None:
        self._socket_path = socket_path
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self.armed = False
        self.dropped = 0
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}/0"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._pumps):
            task.cancel()
        for task in list(self._pumps):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self._socket_path)

        async def requests() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def replies() -> None:
            while data := await up_reader.read(65536):
                if self.armed:
                    self.armed = False
                    self.dropped += 1
                    break
                writer.write(data)
                await writer.drain()
            writer.close()
            up_writer.close()

        for pump in (requests(), replies()):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)


@pytest.fixture
async def dropper(redis_url: str) -> AsyncIterator[ReplyDropper]:
    if not redis_url.startswith("unix://"):
        pytest.skip("the proxy fronts the embedded (unix socket) Redis")
    proxy = ReplyDropper(redis_url.removeprefix("unix://"))
    await proxy.start()
    yield proxy
    await proxy.close()


async def _stock(redis: aioredis.Redis, keys: KeySpace, sku: str) -> int:
    reservations = Reservations(redis, keys)
    levels = await reservations.stock(sku)
    await reservations.batcher.aclose()
    assert levels is not None
    return levels.available


async def test_a_stock_delta_whose_reply_is_lost_applies_once(
    dropper: ReplyDropper, redis_client: aioredis.Redis, key_prefix: str
) -> None:
    keys = KeySpace(key_prefix)
    direct = Catalog(redis_client, keys, Reservations(redis_client, keys))
    fields = ProductFields(title="Tin", price=Money(amount_minor=250, currency="EUR"), stock=10)
    await direct.put("TIN-1", fields)

    app_redis = await open_redis(dropper.url, RedisSettings())  # as the app builds it
    try:
        catalog = Catalog(app_redis, keys, Reservations(app_redis, keys))
        await catalog.change_stock("TIN-1", StockChange(delta=0))  # connected, script loaded
        dropper.armed = True
        with pytest.raises(RedisConnectionError):
            await catalog.change_stock("TIN-1", StockChange(delta=5))
        assert dropper.dropped == 1
        assert await _stock(redis_client, keys, "TIN-1") == 15  # applied, and only once
    finally:
        await app_redis.aclose()

    # The proxy does make a retrying client send the write again: the control.
    retrying = aioredis.Redis.from_url(dropper.url, retry=Retry(NoBackoff(), 3))
    try:
        catalog = Catalog(retrying, keys, Reservations(retrying, keys))
        await catalog.change_stock("TIN-1", StockChange(delta=0))
        dropper.armed = True
        await catalog.change_stock("TIN-1", StockChange(delta=5))
        assert dropper.dropped == 2
        assert await _stock(redis_client, keys, "TIN-1") == 25  # 5 twice
    finally:
        await retrying.aclose()


async def test_a_reservation_whose_reply_is_lost_reserves_once_when_retried(
    dropper: ReplyDropper, redis_client: aioredis.Redis, key_prefix: str
) -> None:
    keys = KeySpace(key_prefix)
    direct = Catalog(redis_client, keys, Reservations(redis_client, keys))
    fields = ProductFields(title="Jar", price=Money(amount_minor=300, currency="EUR"), stock=10)
    await direct.put("JAR-1", fields)

    app_redis = await open_redis(dropper.url, RedisSettings())
    reservations = Reservations(app_redis, keys)
    try:
        await reservations.reserve("JAR-1", 1, "warm-up", "w-0")  # connected, script loaded
        hold_id = f"h-{uuid.uuid4().hex[:8]}"
        dropper.armed = True
        with pytest.raises(RedisConnectionError):
            await reservations.reserve("JAR-1", 3, "ann", hold_id)
        assert dropper.dropped == 1
        again = await reservations.reserve("JAR-1", 3, "ann", hold_id)  # the caller retries
        assert again.replayed
        levels = await reservations.stock("JAR-1")
        assert levels is not None
        assert (levels.available, levels.held) == (6, 4)
    finally:
        await reservations.batcher.aclose()
        await app_redis.aclose()
