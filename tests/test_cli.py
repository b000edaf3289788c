"""The ``livecast`` command as a user runs it: real processes, real ports, real Redis."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from livecast.auth import TokenIssuer, load_or_create_secret
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(90)


def _livecast(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livecast", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        check=False,
        **kwargs,
    )


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}


def _request(
    method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Server:
    """``livecast serve`` on a free loopback port, its output in a file of its data dir.

    A file, as a process manager's journal would take it: a pipe that nobody reads while
    the server runs fills up (64 KiB on Linux; a Redis outage logs a traceback per
    background sweep), and the server's next log line then blocks its event loop."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir, self.extra = data_dir, extra
        self._start()

    def _start(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.data_dir / f"serve-{self.port}.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "livecast", "serve", "--port", str(self.port),
                 "--data-dir", str(self.data_dir), *self.extra],
                stdout=out, stderr=subprocess.STDOUT, env=_env(),
            )  # fmt: skip

    def wait_ready(self, timeout: float = 10.0) -> float:
        """Once this server says it listens on its port and answers /readyz there. The
        port was free when picked, but another process may bind it before this one
        starts (tests run side by side): then whoever holds it must not pass for this
        server, which is started again on another port."""
        started = time.monotonic()
        retries = 3
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                if "cannot listen on" in self.output() and retries:
                    retries -= 1
                    self._start()
                    continue
                raise AssertionError(self.output())
            if f"listening on {self.url}" in self.output():
                try:
                    if _request("GET", f"{self.url}/readyz")[0] == 200:
                        return time.monotonic() - started
                except OSError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"not ready within {timeout} s: {self.output()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=20)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.terminate()  # a clean stop also stops its embedded Redis
            try:
                server.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


def _token(data_dir: Path, *args: str) -> str:
    result = _livecast("token", "--data-dir", str(data_dir), *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_stream_survives_a_restart(tmp_path: Path, servers: list[Server]) -> None:
    data_dir = tmp_path / "data"
    first = Server(data_dir)
    servers.append(first)
    assert first.wait_ready() < 10

    seller = _token(data_dir, "--role", "seller", "--name", "Ana", "--sub", "ana", "--ttl", "1h")
    status, stream = _request(
        "POST", f"{first.url}/api/streams", {"title": "Launch", "featured_skus": ["A-1"]}, seller
    )
    assert status == 201, stream

    assert first.stop(signal.SIGTERM) == 0
    assert "embedded redis-server stopped" in first.output()

    second = Server(data_dir)
    servers.append(second)
    second.wait_ready()
    status, again = _request("GET", f"{second.url}/api/streams/{stream['id']}")
    assert (status, again) == (200, stream)

    host = _token(data_dir, "--role", "host", "--name", "Bo", "--stream", stream["id"])
    status, live = _request("POST", f"{second.url}/api/streams/{stream['id']}/start", token=host)
    assert (status, live["state"]) == (200, "live")
    assert second.stop(signal.SIGINT) in (0, 130)


def test_second_server_on_one_data_dir_fails_clearly(tmp_path: Path, servers: list[Server]) -> None:
    first = Server(tmp_path)
    servers.append(first)
    first.wait_ready()
    second = Server(tmp_path)
    servers.append(second)
    assert second.process.wait(timeout=20) == 1
    assert "in use by another livecast process" in second.output()
    assert _request("GET", f"{first.url}/readyz")[0] == 200


def test_a_killed_servers_redis_is_stopped_by_the_next_one(
    tmp_path: Path, servers: list[Server]
) -> None:
    """A server killed outright leaves its embedded Redis running; the next server on the
    data dir stops that one (it flushes its data) before starting its own, so two Redis
    processes never write one append-only file."""
    first = Server(tmp_path)
    servers.append(first)
    first.wait_ready()
    seller = _token(tmp_path, "--role", "seller", "--name", "Ana")
    status, stream = _request("POST", f"{first.url}/api/streams", {"title": "Kept"}, seller)
    assert status == 201
    first.process.kill()
    first.process.wait()
    orphans = _redis_pids(tmp_path)
    assert len(orphans) == 1

    second = Server(tmp_path)
    servers.append(second)
    second.wait_ready()
    assert _request("GET", f"{second.url}/api/streams/{stream['id']}")[0] == 200
    (running,) = _redis_pids(tmp_path)
    assert running not in orphans


def _redis_pids(data_dir: Path) -> list[int]:
    socket_path = str(data_dir / "redis.sock")
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"redis-server" in cmdline and socket_path.encode() in cmdline:
                pids.append(int(entry.name))
    return pids


def test_unreachable_redis_fails_fast(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    result = _livecast(
        "serve", "--data-dir", str(tmp_path), "--port", str(free_port()),
        "--redis-url", f"redis://127.0.0.1:{port}/0",
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot reach Redis" in result.stderr
    assert time.monotonic() - started < 15


def test_bad_config_fails_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "livecast.toml"
    config.write_text("[server]\nport = 'http'\n")
    result = _livecast("serve", "--config", str(config), "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "server.port" in result.stderr
    assert "'http'" in result.stderr


def test_token_command_signs_with_the_data_dir_secret(tmp_path: Path) -> None:
    token = _token(tmp_path, "--role", "admin", "--name", "Root", "--stream", "*", "--ttl", "15m")
    who = TokenIssuer(load_or_create_secret("", tmp_path)).verify(token)
    assert (who.role.value, who.name, who.streams) == ("admin", "Root", frozenset({"*"}))
    assert who.expires_at - time.time() == pytest.approx(900, abs=5)

    refused = _livecast(
        "token", "--data-dir", str(tmp_path), "--role", "host", "--name", "x", "--stream", "*"
    )
    assert refused.returncode == 2
    assert "only for admins" in refused.stderr
    assert (
        _livecast("token", "--data-dir", str(tmp_path), "--role", "boss", "--name", "x").returncode
        == 2
    )


def test_a_busy_port_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _livecast("serve", "--data-dir", str(tmp_path), "--port", str(port))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("livecast:")]
    assert error.startswith(f"livecast: cannot listen on 127.0.0.1:{port}: address already in use")
    assert "--port" in error


ACCESS_LINE = re.compile(r'livecast\.access: 127\.0\.0\.1 "(\S+) (\S+)" (\d{3}) (\d+)B \d+\.\dms$')


def _access_lines(output: str) -> list[tuple[str, str, int, int]]:
    lines = []
    for line in output.splitlines():
        if "livecast.access" in line:
            match = ACCESS_LINE.search(line)
            assert match is not None, line
            method, target, status, size = match.groups()
            lines.append((method, target, int(status), int(size)))
    return lines


def test_the_access_log_keeps_tokens_out_and_can_be_turned_off(
    tmp_path: Path, servers: list[Server]
) -> None:
    server = Server(tmp_path / "on")
    servers.append(server)
    server.wait_ready()
    seller = _token(tmp_path / "on", "--role", "seller", "--name", "Ana", "--sub", "ana")
    status, _ = _request("POST", f"{server.url}/api/streams", {"title": "Logged"}, seller)
    assert status == 201
    assert _request("GET", f"{server.url}/api/streams?state=live&token=s3cr3t")[0] == 200
    assert _request("POST", f"{server.url}/api/streams", {"title": "Anonymous"})[0] == 401
    assert server.stop() == 0
    output = server.output()
    lines = [line[:3] for line in _access_lines(output)]
    assert ("POST", "/api/streams", 201) in lines
    assert ("GET", "/api/streams?state=live&token=REDACTED", 200) in lines
    ((_, _, _, size),) = [line for line in _access_lines(output) if line[2] == 401]
    assert size > 0  # the JSON error
    assert "s3cr3t" not in output
    assert seller not in output
    assert seller.rsplit(".", 1)[1] not in output  # not even the signature

    config = tmp_path / "quiet.toml"
    config.write_text("[server]\naccess_log = false\n")
    quiet = Server(tmp_path / "off", "--config", str(config))
    servers.append(quiet)
    quiet.wait_ready()
    assert _request("GET", f"{quiet.url}/api/streams")[0] == 200
    assert quiet.stop() == 0
    output = quiet.output()
    assert "listening on" in output
    assert _access_lines(output) == []
