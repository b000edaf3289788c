"""``livecast serve --workers N`` as an operator runs it: real processes sharing one port,
the embedded Redis run by the main process, real aiortc peers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
import redis.asyncio as aioredis

from livecast.auth import Role, TokenIssuer, load_or_create_secret
from livecast.ingest.nodes import owner_of
from tests.conftest import Client, bearer, free_port
from tests.ingest.peers import Viewer, in_order, publish, view

pytestmark = pytest.mark.timeout(150)

TRICKLE = {"Content-Type": "application/trickle-ice-sdpfrag"}


class Workers:
    """``livecast serve --workers 2`` on a free loopback port, its output in a file."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "serve.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "livecast", "serve", "--workers", "2",
                 "--port", str(self.port), "--data-dir", str(data_dir), *extra],
                stdout=out, stderr=subprocess.STDOUT, env={**clean, **(env or {})},
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> list[int]:
        """The pids of the main process's children: its workers and its Redis."""
        children = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                children += [int(p) for p in (task / "children").read_text().split()]
        return children

    def worker_pids(self) -> list[int]:
        return [pid for pid in self.children() if b"--worker" in _cmdline(pid)]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=60)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def started() -> Iterator[list[Workers]]:
    servers: list[Workers] = []
    yield servers
    for server in servers:
        pids = server.children()
        if server.process.poll() is None:
            server.process.terminate()
            try:
                server.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
        for pid in pids:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def _fresh() -> aiohttp.ClientSession:
    """A client that opens a new connection per request: the kernel picks a worker for
    each, as for requests from many viewers."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def _ready(server: Workers, within: float = 60.0) -> set[int]:
    """Wait until both workers answer through the shared port; their worker numbers."""
    seen: set[int] = set()
    deadline = time.monotonic() + within
    async with _fresh() as http:
        while len(seen) < 2:
            assert server.process.poll() is None, server.output()
            assert time.monotonic() < deadline, f"workers seen: {seen}\n{server.output()}"
            try:
                async with http.get(f"{server.url}/healthz") as resp:
                    seen.add((await resp.json())["worker"])
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    return seen


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(unix_socket_path=str(tmp_path / "data" / "redis.sock"))
    yield client
    await client.aclose()


async def _node_urls(redis: aioredis.Redis) -> dict[str, str]:
    """Each worker's node id and private URL, as recorded in the embedded Redis."""
    urls = {}
    async for key in redis.scan_iter(match="livecast:media:node:*"):
        url = await redis.get(key)
        if url is not None:
            urls[_text(key).rsplit(":", 1)[1]] = _text(url)
    return urls


def _reached(viewer: Viewer, counter: int) -> bool:
    return bool(viewer.counters) and viewer.counters[-1] >= counter


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def test_workers_share_the_port_and_each_others_streams_and_sessions(
    tmp_path: Path, started: list[Workers], redis: aioredis.Redis
) -> None:
    data_dir = tmp_path / "data"
    issuer = TokenIssuer(load_or_create_secret("", data_dir))
    server = Workers(data_dir)
    started.append(server)
    assert await _ready(server) == {1, 2}
    workers = server.worker_pids()
    assert len(workers) == 2
    nodes = await _node_urls(redis)
    assert len(nodes) == 2
    assert len(set(nodes.values())) == 2

    seller = issuer.issue(sub="ana", name="Ana", role=Role.SELLER, ttl_s=600)
    viewers: list[Viewer] = []
    async with _fresh() as plain, aiohttp.ClientSession(base_url=server.url) as shared:
        async with plain.post(
            f"{server.url}/api/streams", json={"title": "Drop"}, headers=bearer(seller)
        ) as resp:
            assert resp.status == 201, await resp.text()
            stream_id = (await resp.json())["id"]
        # peers.publish/view take a test client; they only call its post() here
        client = cast(Client, shared)
        publisher = await publish(client, stream_id, seller)
        origin = owner_of(publisher.location.rsplit("/", 1)[1])
        assert origin in nodes
        try:
            owners: list[str] = []
            async with aiohttp.ClientSession(
                base_url=server.url, connector=aiohttp.TCPConnector(force_close=True)
            ) as spread:
                while len(set(owners)) < 2:
                    assert len(viewers) < 12, f"every viewer landed on one worker: {owners}"
                    viewer = await view(cast(Client, spread), stream_id)
                    viewers.append(viewer)
                    owner = owner_of(viewer.location.rsplit("/", 1)[1])
                    assert owner is not None
                    owners.append(owner)
            for viewer in viewers:
                assert in_order(await viewer.frames(10, within=40))
            (edge,) = set(nodes) - {origin}
            async with plain.get(f"{nodes[edge]}/api/streams/{stream_id}/media") as resp:
                status: dict[str, Any] = await resp.json()
            assert status["edge"] is True
            assert status["origin_url"] == nodes[origin]
            assert status["viewers"] == owners.count(edge)

            # a session's PATCH and DELETE reach the worker holding it, from the other one
            on_edge = viewers[owners.index(edge)]
            url = f"{nodes[origin]}{on_edge.location}"
            async with plain.patch(url, data="a=end-of-candidates\r\n", headers=TRICKLE) as resp:
                assert resp.status == 204, await resp.text()
                assert resp.headers["ETag"]
            async with plain.delete(url) as resp:
                assert resp.status == 200, await resp.text()
            async with plain.delete(f"{server.url}{on_edge.location}") as resp:
                assert resp.status == 404
                assert (await resp.json())["error"]["code"] == "session_not_found"
            for viewer in viewers:
                if viewer is not on_edge:
                    assert in_order(await viewer.frames(len(viewer.counters) + 5))
            unknown = f"/whep/{stream_id}/{'x' * 32}.nosuchnode00"
            async with plain.delete(f"{server.url}{unknown}") as resp:
                assert resp.status == 404

            # the publisher comes back through the other worker: its POST is forwarded to
            # the origin (a 307 to a worker's private port would help no publisher)
            await publisher.close()
            async with aiohttp.ClientSession(base_url=nodes[edge]) as other:
                publisher = await publish(cast(Client, other), stream_id, seller, start=1000)
            assert owner_of(publisher.location.rsplit("/", 1)[1]) == origin
            for viewer in viewers:
                if viewer is not on_edge:
                    await viewer.until(partial(_reached, viewer, 1000), within=40)
        finally:
            for viewer in viewers:
                await viewer.close()
            await publisher.close()

    redis_pids = [pid for pid in server.children() if pid not in workers]
    assert len(redis_pids) == 1
    assert server.stop(signal.SIGTERM) == 0
    assert not [pid for pid in [*workers, *redis_pids] if _running(pid)]
    output = server.output()
    assert "[worker 1]" in output
    assert "[worker 2]" in output
    assert "embedded redis-server stopped" in output


async def test_a_dead_worker_is_replaced_and_none_outlives_the_main_process(
    tmp_path: Path, started: list[Workers]
) -> None:
    server = Workers(tmp_path / "data")
    started.append(server)
    await _ready(server)
    first, second = server.worker_pids()
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while first in server.worker_pids() or len(server.worker_pids()) < 2:
        assert time.monotonic() < deadline, server.output()
        await asyncio.sleep(0.1)
    assert await _ready(server) == {1, 2}
    assert "killed by SIGKILL; starting it again" in server.output()

    workers = server.worker_pids()
    assert second in workers
    (redis_pid,) = [pid for pid in server.children() if pid not in workers]
    server.process.kill()  # no chance to stop anything: the workers notice by themselves
    server.process.wait()
    try:
        deadline = time.monotonic() + 30
        while [pid for pid in workers if _running(pid)]:
            assert time.monotonic() < deadline, server.output()
            await asyncio.sleep(0.1)
        assert "main livecast process" in server.output()
    finally:
        # the Redis of a main process killed outright is left, as without workers (the
        # next server on the data dir stops it); this test stops it itself
        os.kill(redis_pid, signal.SIGTERM)


def test_advertise_url_names_one_node_not_several(tmp_path: Path, started: list[Workers]) -> None:
    server = Workers(tmp_path, env={"LIVECAST_SERVER_ADVERTISE_URL": "http://10.0.0.7:8080"})
    started.append(server)
    assert server.process.wait(timeout=60) == 2
    assert "server.advertise_url" in server.output()


def test_a_sigterm_while_the_workers_start_is_a_clean_stop(
    tmp_path: Path, started: list[Workers]
) -> None:
    """SIGTERM as soon as the workers are launched, before they can handle it (a service
    manager stopping a service that has just started): every process stops, and the exit
    is 0, as for a stop at any other time."""
    server = Workers(tmp_path / "data")
    started.append(server)
    deadline = time.monotonic() + 30
    while "2 workers serving" not in server.output():
        assert time.monotonic() < deadline, server.output()
        assert server.process.poll() is None, server.output()
        time.sleep(0.01)
    workers = server.worker_pids()
    assert server.stop() == 0, server.output()
    assert not [pid for pid in workers if _running(pid)]
