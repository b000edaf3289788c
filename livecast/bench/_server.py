"""The ``livecast serve`` process a benchmark measures, and how it is measured.

A benchmark starts the server in its own process on a free loopback port (embedded Redis,
a throw-away data dir, its log in a file), waits for ``/readyz`` and creates a stream as a
seller; it reads the server's CPU seconds and RSS from ``/proc`` around its window, and on
failure reports the tail of the server's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Server:
    """A ``livecast serve`` process on loopback, started by :func:`start_server`."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    secret: str = field(repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def pids(self) -> list[int]:
        """The processes that serve: the server itself, or with ``--workers N`` its
        workers (their main process only supervises, and the embedded Redis is left out
        as it is for one process)."""
        return serving_pids(self.pid)

    def stop(self) -> None:
        """Terminate the server; kill it if it has not exited within 15 s."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def failure(self, exc: Exception) -> dict[str, Any]:
        """A benchmark's JSON result for a run that failed with ``exc``."""
        return {"error": f"{type(exc).__name__}: {exc}", "server_log": tail(self.log_path)}


def start_server(
    workdir: Path,
    *,
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    workers: int = 1,
) -> Server:
    """``livecast serve --workers N`` (one process unless asked) on a free loopback port
    with a fresh auth secret, logging to ``workdir/server.log``; ``env`` adds
    ``LIVECAST_*`` settings (the config file is not read). Its data dir is ``data_dir``,
    or ``workdir`` itself."""
    secret = secrets.token_urlsafe(48)
    port = free_port()
    log_path = workdir / "server.log"
    server_env = {**os.environ, "LIVECAST_AUTH_SECRET": secret, **(env or {})}
    server_env.pop("LIVECAST_CONFIG", None)
    command = [sys.executable, "-m", "livecast", "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    command += ["--data-dir", str(data_dir or workdir)]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, env=server_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    return Server(process, port, log_path, secret)


async def create_stream(server: Server) -> tuple[str, str]:
    """Wait until the server is ready, then create a stream as a seller: its id and the
    seller's token."""
    import aiohttp

    from livecast.auth import Role, TokenIssuer

    token = TokenIssuer(server.secret).issue(
        sub="bench-seller", name="Bench", role=Role.SELLER, ttl_s=3600
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{server.base}/readyz") as resp:
                    if resp.status == 200:
                        break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("server did not become ready")
        async with http.post(
            f"{server.base}/api/streams", json={"title": "bench"}, headers=headers
        ) as resp:
            if resp.status != 201:
                raise RuntimeError(f"could not create a stream: {resp.status} {await resp.text()}")
            stream_id = (await resp.json())["id"]
    return stream_id, token


async def media_status(base: str, stream_id: str) -> dict[str, Any]:
    """The stream's ``/media`` status: its state and the relay's counters."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/api/streams/{stream_id}/media") as resp,
    ):
        status: dict[str, Any] = await resp.json()
        return status


async def whip_publish(pc: Any, base: str, stream_id: str, token: str) -> None:
    """Publish ``pc`` (its tracks added) to the stream over WHIP and wait until it is
    connected (10 s at most)."""
    import aiohttp
    from aiortc import RTCSessionDescription

    await pc.setLocalDescription(await pc.createOffer())
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/whip/{stream_id}",
            data=pc.localDescription.sdp,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        ) as resp,
    ):
        if resp.status != 201:
            raise RuntimeError(f"WHIP answered {resp.status}: {await resp.text()}")
        answer = await resp.text()
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    for _ in range(200):
        if pc.connectionState == "connected":
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("publisher did not connect")


def record_profile(pid: int, seconds: float, output: str) -> subprocess.Popen[bytes]:
    """py-spy recording process ``pid`` for ``seconds`` without pausing it, collapsed
    stacks to ``output``; wait for it before reading them."""
    command = ["py-spy", "record", "--format", "raw", "--nonblocking", "-p", str(pid)]
    command += ["-d", str(max(1, int(seconds))), "-o", output]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serving_pids(pid: int) -> list[int]:
    """The processes of the ``livecast serve`` process ``pid`` that serve: itself, or with
    ``--workers N`` its workers (the main process only supervises)."""
    workers = [child for child in _children(pid) if b"--worker" in _cmdline(child)]
    return workers or [pid]


def _children(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(p) for p in (task / "children").read_text().split()]
    return children


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of sorted ``values``, nearest rank; NaN for none."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
