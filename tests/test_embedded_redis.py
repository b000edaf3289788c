"""The embedded redis-server: start, persistence across restarts, one owner per data dir,
and its supervisor: a redis-server killed under a running app is started again, one that
keeps dying stops `livecast serve` with a non-zero exit."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import redis
from aiohttp import ClientWebSocketResponse, WSMsgType, WSServerHandshakeError, web

from livecast.aio import cancel_and_wait
from livecast.app import ABORT, create_app
from livecast.appkeys import REDIS, TOKENS
from livecast.auth import Role
from livecast.embedded_redis import DataDirBusy, EmbeddedRedis, EmbeddedRedisError, Supervisor
from tests.conftest import AiohttpClient, Client, bearer, make_settings, next_event
from tests.ingest.conftest import eventually
from tests.test_cli import Server, _redis_pids


def test_data_survives_a_restart(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        client.set("order:1", "paid")
        client.close()
    assert (tmp_path / "livecast.aof").exists() or (tmp_path / "appendonlydir").exists()
    assert not (tmp_path / "redis.sock").exists()

    with EmbeddedRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        assert client.get("order:1") == b"paid"
        client.close()


def test_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as first:
        client = redis.Redis.from_url(first.url)
        client.set("k", "v")
        with pytest.raises(DataDirBusy, match="in use by another livecast process"):
            EmbeddedRedis(tmp_path).start()
        # the refusal did not disturb the running server
        assert client.get("k") == b"v"
        client.close()
    # once the first has stopped, the directory is free again
    with EmbeddedRedis(tmp_path) as again:
        client = redis.Redis.from_url(again.url)
        assert client.get("k") == b"v"
        client.close()


def test_stop_ends_the_process(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    server.start()
    pid = server.pid
    assert pid is not None
    server.stop()
    assert server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_fsync_policy_is_the_one_asked_for(tmp_path: Path) -> None:
    for policy in ("everysec", "no"):
        with EmbeddedRedis(tmp_path, appendfsync=policy) as server:
            client = redis.Redis.from_url(server.url, decode_responses=True)
            assert client.config_get("appendfsync") == {"appendfsync": policy}
            client.close()
    with pytest.raises(ValueError, match="appendfsync"):
        EmbeddedRedis(tmp_path, appendfsync="sometimes")


def test_overlong_socket_path_is_a_clear_error(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    with pytest.raises(EmbeddedRedisError, match="too long"):
        EmbeddedRedis(deep).start()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A data dir whose socket path fits in sun_path whatever the test's name."""
    directory = Path(tempfile.mkdtemp(prefix="lc-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def _redis_pid(app: web.Application) -> int:
    info = await app[REDIS].info("server")
    pid: int = info["process_id"]
    return pid


async def _hello(client: Client, stream_id: str) -> ClientWebSocketResponse:
    ws = await client.ws_connect(f"/ws/streams/{stream_id}", protocols=("livecast.v1.json",))
    message = await ws.receive(timeout=5)
    assert message.type is WSMsgType.TEXT, message
    assert msgspec.json.decode(message.data)["type"] == "hello"
    return ws


async def test_a_killed_embedded_redis_is_restarted_and_the_app_carries_on(
    aiohttp_client: AiohttpClient, short_dir: Path
) -> None:
    """kill -9 of the embedded redis-server under a running app: it is started again
    from its append-only file, what was written before is there, the API answers again
    within seconds (Lua scripts included), and chat sockets reconnect and get events."""
    settings = make_settings("", "livecast:", short_dir, redis__embedded_appendfsync="always")
    app = create_app(settings)
    client = await aiohttp_client(app)
    assert await app[REDIS].config_get("appendfsync") == {"appendfsync": "always"}
    issue = app[TOKENS].issue
    seller = issue(sub="ana", name="Ana", role=Role.SELLER, streams=frozenset(), ttl_s=600)
    buyer = issue(sub="bo", name="Bo", role=Role.VIEWER, streams=frozenset(), ttl_s=600)
    resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(seller))
    stream = await resp.json()
    await client.post(f"/api/streams/{stream['id']}/start", headers=bearer(seller))
    for sku in ("TEE", "CAP"):
        resp = await client.put(
            f"/api/products/{sku}",
            json={"title": sku, "price": {"amount_minor": 1500, "currency": "EUR"}, "stock": 5},
            headers=bearer(seller),
        )
        assert resp.status == 201, await resp.text()
    add = {"stream_id": stream["id"], "sku": "TEE", "quantity": 2}
    assert (await client.post("/api/cart/items", json=add, headers=bearer(buyer))).status == 201
    resp = await client.post("/api/checkout", headers={**bearer(buyer), "Idempotency-Key": "k1"})
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    watcher = await _hello(client, stream["id"])

    killed = await _redis_pid(app)
    os.kill(killed, signal.SIGKILL)

    # the chat socket is told to reconnect (its events may have a gap to recover)
    closing = await watcher.receive(timeout=5)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1012)

    async def answers() -> bool:
        resp = await client.get(f"/api/orders/{order['id']}", headers=bearer(buyer))
        return resp.status == 200

    await eventually(answers, within=10)
    assert await _redis_pid(app) != killed
    resp = await client.get(f"/api/orders/{order['id']}", headers=bearer(buyer))
    assert await resp.json() == order
    resp = await client.get(f"/api/streams/{stream['id']}")
    assert (await resp.json())["state"] == "live"
    resp = await client.get("/api/products/TEE")
    assert {k: (await resp.json())[k] for k in ("stock", "held", "sold")} == {
        "stock": 3,
        "held": 0,
        "sold": 2,
    }
    # scripts run again (loaded anew on NOSCRIPT): a reservation, a checkout
    add = {"stream_id": stream["id"], "sku": "CAP", "quantity": 1}
    resp = await client.post("/api/cart/items", json=add, headers=bearer(buyer))
    assert resp.status == 201, await resp.text()
    resp = await client.post("/api/checkout", headers={**bearer(buyer), "Idempotency-Key": "k2"})
    assert resp.status == 201, await resp.text()
    resp = await client.get(f"/api/streams/{stream['id']}/stats", headers=bearer(seller))
    stats = await resp.json()
    assert (stats["orders"], stats["units_sold"]) == (2, 3)

    # a chat socket gets events again: the next one the host sends
    async def reconnects() -> bool:
        try:
            watchers.append(await _hello(client, stream["id"]))
        except (AssertionError, WSServerHandshakeError):
            return False
        return True

    watchers: list[ClientWebSocketResponse] = []
    await eventually(reconnects, within=10)
    resp = await client.post(
        f"/api/streams/{stream['id']}/pin", json={"sku": "CAP"}, headers=bearer(seller)
    )
    assert resp.status == 200, await resp.text()
    assert (await next_event(watchers[-1], "pin.set"))["sku"] == "CAP"
    for ws in watchers:
        await ws.close()
    assert app[ABORT].reason is None
    metrics = await (await client.get("/metrics")).text()
    assert "\nlivecast_embedded_redis_restarts 1.0\n" in metrics


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", ["1", "2"], ids=["one-process", "two-workers"])
def test_serve_exits_non_zero_when_its_redis_keeps_dying(short_dir: Path, workers: str) -> None:
    """Killed again as soon as it is back, six times within the window: `livecast serve`
    stops (its process manager restarts the service) with a message saying why, as a
    single process and with workers. The window is wide
    (`redis.embedded_restart_window_s`) so that slow restarts on a busy machine still
    fall within it. The output goes to a file, as it would to a journal (see
    :class:`tests.test_cli.Server`)."""
    config = short_dir / "livecast.toml"
    config.write_text("[redis]\nembedded_restart_window_s = 600.0\n")
    server = Server(short_dir, "--config", str(config), "--workers", workers)
    try:
        server.wait_ready(timeout=30)
        killed: list[int] = []
        deadline = time.monotonic() + 45
        while server.process.poll() is None:
            assert time.monotonic() < deadline, server.output()[-4000:]
            try:
                client = redis.Redis(unix_socket_path=str(short_dir / "redis.sock"))
                pid = int(client.info("server")["process_id"])
                client.close()
            except redis.ConnectionError:
                time.sleep(0.05)
                continue
            if pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        assert server.process.wait(timeout=20) == 1
        assert len(killed) == 6
        output = server.output()
        assert "embedded redis-server started again" in output
        assert "livecast: the embedded redis-server failed 6 times within 600 s" in output
        # The outage is said once per background loop, not a traceback per interval.
        assert output.count("Traceback") <= 2, output[-4000:]
        assert not _redis_pids(short_dir)
    finally:
        # A serve that does not stop in time is killed (its workers follow it within a
        # second), and its Redis too, so that nothing outlives the test.
        try:
            server.stop()
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=20)
        for pid in _redis_pids(short_dir):
            os.kill(pid, signal.SIGKILL)


async def test_a_server_that_will_not_start_again_makes_the_supervisor_give_up(
    short_dir: Path,
) -> None:
    """Killed, and its append-only file then damaged: every start fails, and after the
    allowed restarts the supervisor gives up, saying why (Redis's own words included)."""
    server = EmbeddedRedis(short_dir)
    await asyncio.to_thread(server.start)
    reasons: list[str] = []
    supervisor = Supervisor(
        server, on_give_up=reasons.append, check_interval_s=0.02, max_restarts=2, retry_pause_s=0
    )
    task = asyncio.create_task(supervisor.run())
    try:
        client = redis.Redis.from_url(server.url)
        client.set("order:1", "paid")
        client.close()
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        await eventually(lambda: supervisor.restarts == 1)
        with (short_dir / "livecast.aof").open("ab") as aof:
            aof.write(b"not a command\r\n")
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        async with asyncio.timeout(30):
            await task
    finally:
        await cancel_and_wait(task)
        await asyncio.to_thread(server.stop)
    (reason,) = reasons
    assert reason == supervisor.gave_up
    assert "failed 3 times within 60 s" in reason
    assert "Bad file format reading the append only file" in reason
