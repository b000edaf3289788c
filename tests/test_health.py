"""Probes: /healthz says the process is up, /readyz that Redis answers."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web

from livecast.app import create_app
from livecast.appkeys import NODE
from livecast.config import load_settings
from livecast.embedded_redis import EmbeddedRedis
from tests.conftest import AiohttpClient, Client


async def test_up_and_ready(client: Client) -> None:
    resp = await client.get("/healthz")
    body = await resp.json()
    assert (resp.status, body["status"], body["worker"]) == (200, "ok", None)
    assert body["node"] == client.app[NODE].id
    resp = await client.get("/readyz")
    assert (resp.status, await resp.json()) == (200, {"status": "ready"})


async def test_not_ready_when_redis_goes_away(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    redis_server = EmbeddedRedis(tmp_path / "r")
    redis_server.start()
    try:
        settings = load_settings(
            env={}, overrides={"redis.url": redis_server.url, "data.dir": str(tmp_path)}
        )
        app: web.Application = create_app(settings)
        client = await aiohttp_client(app)
        assert (await client.get("/readyz")).status == 200
    finally:
        redis_server.stop()
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "redis_unavailable"
    assert (await client.get("/healthz")).status == 200
    # Every Redis-backed route says the same, as a JSON 503 the client may retry.
    resp = await client.get("/api/streams?state=live")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert (await resp.json())["error"]["code"] == "redis_unavailable"


async def test_an_error_redis_answers_is_a_500_not_a_retry(
    client: Client, redis_client: aioredis.Redis, key_prefix: str
) -> None:
    # A key of the wrong type stands for a defect (WRONGTYPE, CROSSSLOT, a script error):
    # retrying cannot help, so it is not reported as Redis being unavailable.
    await redis_client.rpush(f"{key_prefix}{{streams}}:stream:broken", "x")
    resp = await client.get("/api/streams/broken")
    assert resp.status == 500
    assert "Retry-After" not in resp.headers
    assert (await resp.json())["error"]["code"] == "internal"
