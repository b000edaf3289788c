"""Stock updates to viewers survive a moment without Redis: a flush that fails keeps its
changes for the next one instead of dropping them."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import WSMsgType

from livecast.app import create_app
from livecast.appkeys import REDIS, TOKENS
from livecast.auth import Role
from livecast.inventory.service import INVENTORY
from livecast.redisdb import UNAVAILABLE_ERRORS
from tests.conftest import AiohttpClient, bearer, make_settings


@pytest.fixture
def short_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="lc-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def test_a_stock_change_is_sent_after_redis_comes_back(
    aiohttp_client: AiohttpClient, short_dir: Path
) -> None:
    """The embedded Redis stops answering (here: SIGSTOP) just as the node flushes a
    reservation's stock update; once it answers again, the viewers get that update."""
    settings = make_settings(
        "",
        "livecast:",
        short_dir,
        redis__command_timeout_s=0.5,
        inventory__event_interval_s=3600.0,  # the test flushes by itself
    )
    app = create_app(settings)
    client = await aiohttp_client(app)
    issue = app[TOKENS].issue
    seller = issue(sub="ana", name="Ana", role=Role.SELLER, streams=frozenset(), ttl_s=600)
    buyer = issue(sub="bo", name="Bo", role=Role.VIEWER, streams=frozenset(), ttl_s=600)
    stream_id = (
        await (
            await client.post("/api/streams", json={"title": "D"}, headers=bearer(seller))
        ).json()
    )["id"]
    await client.post(f"/api/streams/{stream_id}/start", headers=bearer(seller))
    product = {"title": "Tee", "price": {"amount_minor": 900, "currency": "EUR"}, "stock": 5}
    await client.put("/api/products/TEE", json=product, headers=bearer(seller))
    pin = await client.post(
        f"/api/streams/{stream_id}/pin", json={"sku": "TEE"}, headers=bearer(seller)
    )
    assert pin.status == 200, await pin.text()
    notifier = app[INVENTORY].notifier
    await notifier.flush()
    ws = await client.ws_connect(f"/ws/streams/{stream_id}", protocols=("livecast.v1.json",))
    hello = msgspec.json.decode((await ws.receive(timeout=5)).data)
    assert hello["data"]["pinned"]["stock_left"] == 5

    add = {"stream_id": stream_id, "sku": "TEE", "quantity": 1}
    assert (await client.post("/api/cart/items", json=add, headers=bearer(buyer))).status == 201
    pid = (await app[REDIS].info("server"))["process_id"]
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(UNAVAILABLE_ERRORS):
            await notifier.flush()
    finally:
        os.kill(pid, signal.SIGCONT)
    await notifier.flush()

    async with asyncio.timeout(5):
        while True:
            message = await ws.receive()
            assert message.type is WSMsgType.TEXT, message
            event: dict[str, Any] = msgspec.json.decode(message.data)
            if event["type"] == "stock":
                break
    assert event["data"] == {"sku": "TEE", "left": 4, "sold_out": False}
    await ws.close()
