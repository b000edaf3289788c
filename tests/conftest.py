"""Shared fixtures: real Redis (embedded, and LIVECAST_TEST_REDIS_URL when set), the app
over real HTTP, and tokens.

Each test gets its own key prefix, so tests never see each other's data even on a shared
server, and its keys are deleted afterwards. That also lets pytest-xdist's workers (the
suite runs on two: ``addopts`` in ``pyproject.toml``) share a Redis; each worker starts its
own embedded ones.
"""

from __future__ import annotations

import asyncio
import gc
import io
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import ClientWebSocketResponse, WSMessage, WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from livecast.app import create_app
from livecast.appkeys import TOKENS
from livecast.asyncapi import ServerEvent
from livecast.auth import Role
from livecast.config import ServerSettings, Settings, load_settings
from livecast.embedded_redis import EmbeddedRedis, redis_server_binary
from tests.contract import AnswerCheck
from tests.contract import install as install_answer_check

EXTERNAL_REDIS_ENV = "LIVECAST_TEST_REDIS_URL"
SCREENSHOTS_DIR = Path(__file__).parent / "_artifacts" / "screenshots"

# The packages whose tests move real media (aiortc peers, Chromium playing video, encoders,
# benchmarks): their frame rates and timings need the CPU, and they share files
# (``tests/_artifacts/``, the Node publisher's ``node_modules``). Under pytest-xdist (the
# suite runs on two workers: ``addopts`` in ``pyproject.toml``) they all run on one worker,
# one after another, while the other worker runs everything else
# (:func:`pytest_xdist_make_scheduler`).
MEDIA_PACKAGES = frozenset({"bench", "hls", "ingest", "web"})

# Debian's Chromium, never a downloaded browser; fake camera and microphone, no prompts,
# and nothing that reaches for the network.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

Client = TestClient[web.Request, web.Application]
# ``await aiohttp_client(app)`` or ``await aiohttp_client(app, port=port)``
AiohttpClient = Callable[..., Awaitable[Client]]

# Test servers stop as `livecast serve` does by default.
SHUTDOWN_TIMEOUT_S = ServerSettings().shutdown_timeout_s
# pytest-timeout stops a test at its timeout and shows only threads; at this share of it,
# the event loop's tasks are printed (into the test's captured stderr): that is where a
# hang is.
TASK_DUMP_AT = 0.75


class AppServer(TestServer):
    """The app on a loopback port, stopping as `livecast serve` does: handlers still
    running ``SHUTDOWN_TIMEOUT_S`` into the shutdown are cancelled (aiohttp's own default
    is to wait 60 s for them, as long as a whole test may take).

    Every answer it gives is checked against the app's OpenAPI document
    (:mod:`tests.contract`); closing it fails with the answers that do not match."""

    _answers: AnswerCheck | None = None

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        self._answers = install_answer_check(self.app)
        return web.AppRunner(self.app, shutdown_timeout=SHUTDOWN_TIMEOUT_S, **kwargs)

    async def close(self) -> None:
        await super().close()
        if self._answers is not None and self._answers.violations:
            found, self._answers.violations = self._answers.violations, []
            raise AssertionError(
                "answers that do not match the OpenAPI document:\n  " + "\n  ".join(found)
            )


def pytest_configure(config: pytest.Config) -> None:
    """Empty the screenshots of the last run, once: in the process that starts the
    pytest-xdist workers (or the only one), never in a worker."""
    if not hasattr(config, "workerinput"):
        shutil.rmtree(SCREENSHOTS_DIR, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's ``load`` distribution (the default), but with every test of
    :data:`MEDIA_PACKAGES` in one unit of work: one worker runs them all, from the start
    (xdist hands out the largest unit first), and the others share the rest test by test."""
    if config.getoption("dist") != "load":
        return None
    from tests._xdist import MediaApartScheduling

    return MediaApartScheduling(config, log, media=MEDIA_PACKAGES)


@pytest.fixture
def aiohttp_client(aiohttp_client: Callable[..., Awaitable[Client]]) -> AiohttpClient:
    """pytest-aiohttp's ``aiohttp_client``, serving each app from an :class:`AppServer`."""

    async def serve(app: web.Application, *, port: int | None = None) -> Client:
        return await aiohttp_client(AppServer(app, port=port))

    return serve


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    marker = item.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker else float(item.config.getini("timeout"))
    after = limit * TASK_DUMP_AT
    timer = threading.Timer(after, _dump_running_tasks, args=(item.nodeid, after))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _dump_running_tasks(nodeid: str, after: float) -> None:
    """Print every task of every running event loop, from inside that loop."""
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
    for loop in loops:
        if loop.is_running():
            loop.call_soon_threadsafe(_print_tasks, loop, nodeid, after)


def _print_tasks(loop: asyncio.AbstractEventLoop, nodeid: str, after: float) -> None:
    out = io.StringIO()
    tasks = asyncio.all_tasks(loop)
    print(f"--- {nodeid}: {len(tasks)} tasks after {after:.0f} s ---", file=out)
    for task in tasks:
        print(f"task {task.get_name()}:", file=out)
        task.print_stack(limit=25, file=out)
    sys.stderr.write(out.getvalue())


MakeToken = Callable[..., str]


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded redis-server in cluster mode, one node holding every slot: a command or
    script whose keys span slots fails with CROSSSLOT here, as on a real Redis Cluster."""
    directory = tmp_path_factory.mktemp("cluster")
    port = _cluster_port()
    process = subprocess.Popen(
        [str(redis_server_binary()), "--port", str(port), "--bind", "127.0.0.1",
         "--cluster-enabled", "yes", "--cluster-config-file", str(directory / "nodes.conf"),
         "--dir", str(directory), "--save", "", "--appendonly", "no",
         "--logfile", str(directory / "redis.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port, socket_timeout=5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.cluster("ADDSLOTS", *range(16384))
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        while client.cluster("INFO")["cluster_state"] != "ok":
            assert time.monotonic() < deadline, "the cluster-mode redis-server never got ready"
            time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=15)


def free_port(port: int = 0) -> int:
    """A loopback TCP port nothing listens on: ``port`` if it is free (OSError if not), or
    one the system picks."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        free: int = sock.getsockname()[1]
        return free


def _cluster_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too."""
    for port in random.sample(range(20000, 45000), 200):
        try:
            free_port(port)
            free_port(port + 10000)
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair for the cluster-mode redis-server")


def _redis_params() -> list[str]:
    params = ["embedded", "cluster"]
    return [*params, "external"] if os.environ.get(EXTERNAL_REDIS_ENV) else params


@pytest.fixture(params=_redis_params())
def any_redis_url(request: pytest.FixtureRequest, embedded_redis: EmbeddedRedis) -> str:
    """Every Redis this run has: contract tests use this one. ``cluster`` is a Redis in
    cluster mode, which proves the keys of every command share a slot."""
    if request.param == "external":
        return os.environ[EXTERNAL_REDIS_ENV]
    if request.param == "cluster":
        url: str = request.getfixturevalue("cluster_redis_url")
        return url
    return embedded_redis.url


@pytest.fixture
def redis_url(embedded_redis: EmbeddedRedis) -> str:
    return embedded_redis.url


@pytest.fixture
def key_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def redis_client(redis_url: str, key_prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await _delete_prefix(client, key_prefix)
    await client.aclose()


async def _delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.delete(key)


def make_settings(redis_url: str, key_prefix: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings on the test Redis and data dir, plus overrides given as
    ``section__key=value`` (``chat__max_frame_bytes=512``)."""
    extra = {name.replace("__", "."): value for name, value in overrides.items()}
    return load_settings(
        env={},
        overrides={
            "redis.url": redis_url,
            "redis.key_prefix": key_prefix,
            "data.dir": str(data_dir),
            **extra,
        },
    )


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(redis_url, key_prefix, tmp_path)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[web.Application]:
    application = create_app(settings)
    yield application
    cleaner = aioredis.Redis.from_url(settings.redis.url)
    await _delete_prefix(cleaner, settings.redis.key_prefix)
    await cleaner.aclose()


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, app: web.Application) -> Client:
    return await aiohttp_client(app)


@pytest.fixture
def make_token(app: web.Application) -> MakeToken:
    """``make_token(Role.SELLER, sub="s1", streams={"abc"}, ttl_s=60)``."""

    def make(
        role: Role,
        *,
        sub: str | None = None,
        name: str | None = None,
        streams: frozenset[str] | set[str] = frozenset(),
        ttl_s: int = 3600,
    ) -> str:
        return app[TOKENS].issue(
            sub=sub or f"{role.value}-{uuid.uuid4().hex[:8]}",
            name=name or role.value.title(),
            role=role,
            streams=frozenset(streams),
            ttl_s=ttl_s,
        )

    return make


_JSON_EVENTS = msgspec.json.Decoder(ServerEvent)
_MSGPACK_EVENTS = msgspec.msgpack.Decoder(ServerEvent)


def undescribed_event(payload: bytes | str, *, binary: bool) -> str | None:
    """Why a live-events frame is not an event the AsyncAPI types describe, or None.

    The frame must decode strictly into :data:`livecast.asyncapi.ServerEvent` (a known
    ``type``, no unknown field, every value of its declared type) and encode back to
    the same value, so a field the types drop or default would show too.
    """
    try:
        if isinstance(payload, bytes) and binary:
            event: Any = _MSGPACK_EVENTS.decode(payload)
            plain = msgspec.msgpack.decode(payload)
        else:
            event = _JSON_EVENTS.decode(payload)
            plain = msgspec.json.decode(payload)
    except msgspec.ValidationError as exc:
        return f"{exc}: {payload[:300]!r}"
    if msgspec.to_builtins(event) != plain:
        return f"the types read it as {msgspec.to_builtins(event)!r}, not {plain!r}"
    return None


def published_event(payload: bytes) -> dict[str, Any]:
    """An event as published on a stream's Redis channel, checked as the sockets' are."""
    problem = undescribed_event(payload, binary=True)
    assert problem is None, f"an event the AsyncAPI types do not describe: {problem}"
    event: dict[str, Any] = msgspec.msgpack.decode(payload)
    return event


@pytest.fixture(autouse=True)
def live_events_are_described(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every frame a test's WebSocket client receives is checked against the AsyncAPI
    types (:func:`undescribed_event`); the test fails at teardown if one was not."""
    problems: list[str] = []
    receive = ClientWebSocketResponse.receive

    async def receive_checked(
        self: ClientWebSocketResponse, *args: Any, **kwargs: Any
    ) -> WSMessage:
        message = await receive(self, *args, **kwargs)
        if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            problem = undescribed_event(message.data, binary=message.type is WSMsgType.BINARY)
            if problem is not None:
                problems.append(problem)
        return message

    monkeypatch.setattr(ClientWebSocketResponse, "receive", receive_checked)
    yield
    if problems:
        pytest.fail("live events the AsyncAPI types do not describe:\n" + "\n".join(problems))


async def next_event(ws: ClientWebSocketResponse, event_type: str) -> dict[str, Any]:
    """The data of the next ``event_type`` event on a JSON live-events socket, skipping
    others; fails after 5 s."""
    async with asyncio.timeout(5):
        while True:
            message = await ws.receive()
            assert message.type is WSMsgType.TEXT, message
            event: dict[str, Any] = msgspec.json.decode(message.data)
            if event["type"] == event_type:
                data: dict[str, Any] = event["data"]
                return data


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
