"""``livecast serve --workers N``: N worker processes on one public port, one per core.

A Python process relays media on one core at most; workers put every core of the box to
work. Each worker is a whole node (:mod:`livecast.app`) with its own WebRTC sessions,
relay and LL-HLS packager, and all of them share one Redis, as the nodes of a
multi-machine deployment do. The main process (:func:`run_workers`):

* checks that the public address is free (a plain bind, as a single process would), then
  binds N listening sockets to it with ``SO_REUSEPORT``, one per worker, so the kernel
  spreads new connections over the workers; and one private listening socket per worker
  on ``server.worker_host`` (``server.worker_base_port`` + n - 1, or a free port): the
  worker's node URL, where the other workers pull its streams' media
  (:mod:`livecast.ingest.edge`) and forward requests for its WHIP/WHEP sessions
  (:mod:`livecast.ingest.nodes`);
* with the embedded Redis (no ``redis.url``), starts it once, holding the data dir's
  lock, and supervises it (:class:`~livecast.embedded_redis.Supervisor`); the workers
  connect to it as to any Redis. The token and webhook secrets are made before any
  worker starts, so the workers read one secret;
* starts each worker as ``python -m livecast serve --worker n --listen-fds PUBLIC,PRIVATE``
  in a session of its own (a terminal's Ctrl-C reaches the main process only), its log
  lines marked ``[worker n]``;
* on SIGTERM or SIGINT, forwards SIGTERM to every worker, waits for their graceful
  shutdown (up to ``server.shutdown_timeout_s`` plus :data:`STOP_MARGIN_S`; a worker still
  running then is killed), stops the embedded Redis and exits 0;
* restarts a worker that died unexpectedly, on the same sockets (connections that reach
  its socket meanwhile wait in its queue); its sessions ended with it, and its viewers
  reconnect as after any node's crash. More than :data:`MAX_RESTARTS` deaths within
  :data:`RESTART_WINDOW_S` (or one with exit code 2, a configuration error), or an
  embedded Redis that keeps dying: every worker is stopped and the main process exits 1,
  for a process manager to restart the service.

A worker whose main process vanished (killed with SIGKILL) notices within a second and
shuts down by itself: none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp import web

from livecast.aio import cancel_and_wait
from livecast.auth import load_or_create_secret
from livecast.config import Settings, http_url
from livecast.embedded_redis import EmbeddedRedis, Supervisor
from livecast.redisdb import open_redis

__all__ = [
    "MAX_RESTARTS",
    "RESTART_WINDOW_S",
    "STOP_MARGIN_S",
    "ListenError",
    "exit_with_parent",
    "run_workers",
]

log = logging.getLogger("livecast.workers")

# Deaths of workers (all together) tolerated within the window before giving up.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
# A restarted worker waits this long first, so a worker that cannot start does not spin.
_RESTART_PAUSE_S = 1.0
# Beyond server.shutdown_timeout_s, what a worker gets to close its peer connections
# and services before it is killed.
STOP_MARGIN_S = 20.0
# A worker checks this often that its main process is still there.
_PARENT_CHECK_S = 0.5


class ListenError(OSError):
    """An address cannot be bound (``errno`` says why); ``choose`` names the flags or
    settings that choose it."""

    def __init__(self, err: int, host: str, port: int, choose: str) -> None:
        super().__init__(err, os.strerror(err))
        self.host = host
        self.port = port
        self.choose = choose


_PUBLIC = "--host / --port (server.host / server.port)"
_PRIVATE = "server.worker_host / server.worker_base_port"


@dataclass
class _Worker:
    index: int
    public: socket.socket
    private: socket.socket
    process: asyncio.subprocess.Process | None = None
    exits: asyncio.Task[int] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        host, port = self.private.getsockname()[:2]
        return http_url(host, port)


def run_workers(
    settings: Settings, count: int, config: str | None, loop: asyncio.AbstractEventLoop
) -> int:
    """Run ``count`` workers until a signal stops them, on ``loop`` (closed after); the
    exit code of ``livecast serve``. Raises :class:`ListenError`, and what the embedded
    Redis or an unreachable one raises, before any worker starts."""
    try:
        sockets = _bind(settings, count)
    except BaseException:
        loop.close()
        raise
    try:
        try:
            return loop.run_until_complete(_Pool(settings, sockets, config).run())
        finally:
            loop.close()
    finally:
        for public, private in sockets:
            public.close()
            private.close()


class _Pool:
    def __init__(
        self,
        settings: Settings,
        sockets: list[tuple[socket.socket, socket.socket]],
        config: str | None,
    ) -> None:
        self._settings = settings
        self._config = config
        self._workers = [
            _Worker(index, public, private)
            for index, (public, private) in enumerate(sockets, start=1)
        ]
        self._stopping = asyncio.Event()
        self._failure: str | None = None
        self._deaths: deque[float] = deque()

    async def run(self) -> int:
        settings = self._settings
        # made once here, so that no two workers race to create them
        load_or_create_secret(settings.auth.secret, settings.data_dir)
        load_or_create_secret(settings.webhooks.secret, settings.data_dir, "webhook-secret")
        async with self._redis() as redis_url:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop, f"got {signal.Signals(sig).name}")
            try:
                for worker in self._workers:
                    await self._start(worker, redis_url)
                port = self._workers[0].public.getsockname()[1]
                log.info(
                    "%d workers serving %s; their node URLs: %s",
                    len(self._workers),
                    http_url(settings.server.host, port),
                    ", ".join(worker.url for worker in self._workers),
                )
                await self._supervise(redis_url)
            finally:
                await self._stop_workers()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        if self._failure is not None:
            print(f"livecast: {self._failure}", file=sys.stderr)
            return 1
        return 0

    @contextlib.asynccontextmanager
    async def _redis(self) -> AsyncIterator[str]:
        """The Redis URL the workers use: the configured one (checked to answer), or the
        embedded server's, started and supervised here."""
        settings = self._settings
        if settings.redis.url:
            redis = await open_redis(settings.redis.url, settings.redis)
            await redis.aclose()
            yield settings.redis.url
            return
        embedded = EmbeddedRedis(settings.data_dir, appendfsync=settings.redis.embedded_appendfsync)
        await asyncio.to_thread(embedded.start)
        log.info("embedded redis-server started (pid %s) on %s", embedded.pid, embedded.url)
        watch = Supervisor(
            embedded,
            on_give_up=self._give_up,
            window_s=settings.redis.embedded_restart_window_s,
        )
        supervisor = asyncio.create_task(watch.run(), name="embedded-redis-supervisor")
        try:
            yield embedded.url
        finally:
            await cancel_and_wait(supervisor)
            await asyncio.to_thread(embedded.stop)
            log.info("embedded redis-server stopped")

    def _command(self, worker: _Worker, redis_url: str) -> list[str]:
        settings = self._settings
        port = worker.public.getsockname()[1]
        command = [sys.executable, "-m", "livecast", "serve"]
        if self._config is not None:
            command += ["--config", self._config]
        command += [
            "--data-dir", settings.data.dir,
            "--host", settings.server.host,
            "--port", str(port),
            "--redis-url", redis_url,
            "--worker", str(worker.index),
            "--listen-fds", f"{worker.public.fileno()},{worker.private.fileno()}",
            "--node-url", worker.url,
        ]  # fmt: skip
        return command

    async def _start(self, worker: _Worker, redis_url: str) -> None:
        worker.process = await asyncio.create_subprocess_exec(
            *self._command(worker, redis_url),
            pass_fds=(worker.public.fileno(), worker.private.fileno()),
            start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL,
        )
        worker.exits = asyncio.create_task(worker.process.wait(), name=f"worker-{worker.index}")
        log.info("worker %d started (pid %d) at %s", worker.index, worker.process.pid, worker.url)

    async def _supervise(self, redis_url: str) -> None:
        """Until stopped: restart workers that die, or give up."""
        stop = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                exits = {w.exits: w for w in self._workers if w.exits is not None}
                done, _ = await asyncio.wait([stop, *exits], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    worker = exits.get(task)
                    if worker is None or self._stopping.is_set():
                        continue
                    worker.exits = None
                    await self._died(worker, task.result(), redis_url)
        finally:
            stop.cancel()

    async def _died(self, worker: _Worker, code: int, redis_url: str) -> None:
        how = f"exited with code {code}" if code >= 0 else f"killed by {_signal_name(-code)}"
        if code == 2:
            self._give_up(f"worker {worker.index} {how} (a configuration error)")
            return
        if self._too_many_deaths():
            self._give_up(
                f"workers died {len(self._deaths)} times within {RESTART_WINDOW_S:g} s "
                f"(last: worker {worker.index} {how}); stopping so that the service is "
                "restarted"
            )
            return
        log.error("worker %d %s; starting it again", worker.index, how)
        await asyncio.sleep(_RESTART_PAUSE_S)
        if not self._stopping.is_set():
            await self._start(worker, redis_url)

    def _too_many_deaths(self) -> bool:
        now = time.monotonic()
        self._deaths.append(now)
        while now - self._deaths[0] > RESTART_WINDOW_S:
            self._deaths.popleft()
        return len(self._deaths) > MAX_RESTARTS

    def _give_up(self, reason: str) -> None:
        log.critical("%s", reason)
        self._failure = self._failure or reason
        self._stop(reason)

    def _stop(self, reason: str) -> None:
        if not self._stopping.is_set():
            log.info("stopping the workers: %s", reason)
            self._stopping.set()

    async def _stop_workers(self) -> None:
        """SIGTERM to every worker; wait for all; kill those still running at the end."""
        # New connections go to the sockets the workers still hold, or are refused.
        for worker in self._workers:
            worker.public.close()
        running = [w for w in self._workers if w.process is not None and w.exits is not None]
        for worker in running:
            assert worker.process is not None
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        wait_s = self._settings.server.shutdown_timeout_s + STOP_MARGIN_S
        tasks = [w.exits for w in running if w.exits is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=wait_s)
            for worker in running:
                if worker.exits in late and worker.process is not None:
                    log.error(
                        "worker %d did not stop within %g s; killing it", worker.index, wait_s
                    )
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()
            if late:
                await asyncio.wait(late)
        for worker in running:
            assert worker.exits is not None
            code = worker.exits.result()
            if code == -signal.SIGTERM:
                # Still starting when the SIGTERM came (its handler not yet in place): it
                # stopped as asked, having served nothing.
                log.info("worker %d stopped by SIGTERM before it had started", worker.index)
            elif code != 0:
                log.warning("worker %d exited with code %d", worker.index, code)
                if self._failure is None and code != -signal.SIGKILL:
                    self._failure = f"worker {worker.index} exited with code {code} at shutdown"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _bind(settings: Settings, count: int) -> list[tuple[socket.socket, socket.socket]]:
    """Each worker's public socket (``SO_REUSEPORT``, all on one port) and private one."""
    server = settings.server
    family, address = _address(server.host, server.port)
    # A plain bind first: fails on a port taken by anyone, SO_REUSEPORT or not, as a
    # single process's does (and picks the port when it is 0).
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            err = exc.errno or errno.EADDRINUSE
            raise ListenError(err, server.host, server.port, _PUBLIC) from None
        port = probe.getsockname()[1]
    bound: list[tuple[socket.socket, socket.socket]] = []
    try:
        for index in range(1, count + 1):
            public_address = (address[0], port, *address[2:])
            public = _listen(family, public_address, server.host, _PUBLIC, reuse_port=True)
            private_port = server.worker_base_port + index - 1 if server.worker_base_port else 0
            try:
                private_family, private_address = _address(server.worker_host, private_port)
                private = _listen(private_family, private_address, server.worker_host, _PRIVATE)
            except BaseException:
                public.close()
                raise
            bound.append((public, private))
    except BaseException:
        for public, private in bound:
            public.close()
            private.close()
        raise
    return bound


def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[object, ...]]:
    family, _, _, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return family, tuple(address)


def _listen(
    family: socket.AddressFamily,
    address: tuple[object, ...],
    host: str,
    choose: str,
    *,
    reuse_port: bool = False,
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            err = exc.errno or errno.EADDRINUSE
            raise ListenError(err, host, int(str(address[1])), choose) from None
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def exit_with_parent(
    parent: int, stop: Callable[[], None]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context for a worker's app: when its main process ``parent`` is gone
    (the worker was handed to init), ``stop()`` shuts the worker down."""

    async def watch() -> None:
        while True:
            await asyncio.sleep(_PARENT_CHECK_S)
            if os.getppid() != parent:
                break
        log.error("the main livecast process (pid %d) is gone; stopping", parent)
        stop()

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(watch(), name="worker-parent-watch")
        try:
            yield
        finally:
            await cancel_and_wait(task)

    return ctx
