"""``livecast bench fanout``: chat fan-out from one server process to many sockets.

Three processes on loopback: a Redis (embedded unless ``--redis-url``), the livecast
server (the real app: hub, Lua post script, pub/sub), and one client process (uvloop,
raw asyncio protocols, no per-frame JSON decoding) that holds ``--clients`` viewer
sockets plus ``--senders`` host sockets posting ``--messages-per-second`` chat messages
(round robin) for ``--seconds``, as several people chatting at once would. Each message
carries its sender, a per-sender sequence number and its send time (``CLOCK_MONOTONIC``,
shared by the processes), so every viewer checks per-sender order and loss and measures
latency.

Prints one JSON line::

    delivered_per_s        messages received by all viewers / measured wall seconds
    delivered_per_core_s   delivered messages / server CPU seconds (user + system)
    latency_ms_p50/p99     post to receipt, over every delivery
    lost                   expected deliveries that never arrived (or out of order)
    rss_per_client_kb      server RSS growth from connecting the viewers / viewers
    server_cpu_s, client_cpu_s, redis_cpu_s  CPU seconds over the measured window

It is bounded: connections, messages and time are all fixed by the options, and every
process stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, cast

import msgspec

from livecast.bench._server import cpu_seconds, rss_kb

__all__ = ["main"]

_PROTOCOL = {"json": "livecast.v1.json", "msgpack": "livecast.v1.msgpack"}
# The text of every benchmark message: "#<sender> <sequence> <send time ns>#".
_MARK = re.compile(rb"#(\d+) (\d+) (\d+)#")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="livecast bench fanout", description=__doc__)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--messages-per-second", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--protocol", choices=sorted(_PROTOCOL), default="json")
    parser.add_argument("--senders", type=int, default=8, help="host sockets posting")
    parser.add_argument("--redis-url", default="", help="default: an embedded redis-server")
    parser.add_argument(
        "--profile", default="", metavar="FILE",
        help="record the server with py-spy over the sending window (collapsed stacks)",
    )  # fmt: skip
    parser.add_argument("--role", choices=["run", "server", "client"], default="run",
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--stream", default="", help=argparse.SUPPRESS)
    parser.add_argument("--token", default="", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv))
    if not 1 <= args.senders <= 100:
        parser.error("--senders must be 1-100")
    if not 1 <= args.clients <= 20_000:
        parser.error("--clients must be 1-20000")
    if not 0 < args.messages_per_second <= 10_000 or not 0 < args.seconds <= 600:
        parser.error("--messages-per-second must be 0-10000 and --seconds 0-600")
    if args.role == "server":
        return _run_server(args)
    if args.role == "client":
        return _run_client(args)
    return _orchestrate(args)


# -- orchestrator ------------------------------------------------------------------------


def _orchestrate(args: argparse.Namespace) -> int:
    from livecast.embedded_redis import EmbeddedRedis

    with tempfile.TemporaryDirectory(prefix="livecast-bench-") as tmp:
        embedded = None
        redis_url = args.redis_url
        if not redis_url:
            embedded = EmbeddedRedis(Path(tmp) / "redis")
            embedded.start()
            redis_url = embedded.url
        server = client = None
        try:
            server = _spawn(
                "server", f"--redis-url={redis_url}", f"--data-dir={Path(tmp) / 'data'}"
            )
            ready = json.loads(_line(server))
            time.sleep(0.5)
            rss_before = rss_kb(server.pid)
            client = _spawn(
                "client",
                "--port", str(ready["port"]),
                # "=" form: a stream id may start with "-".
                f"--stream={ready['stream']}",
                f"--token={ready['token']}",
                "--clients", str(args.clients),
                "--messages-per-second", str(args.messages_per_second),
                "--seconds", str(args.seconds),
                "--protocol", args.protocol,
                "--senders", str(args.senders),
            )  # fmt: skip
            assert _line(client) == "connected"
            time.sleep(1.0)
            rss_after = rss_kb(server.pid)
            redis_pid = embedded.pid if embedded is not None else None
            _say(client, "go")
            assert _line(client) == "start"
            server_cpu0, redis_cpu0 = _cpu_s(server.pid), _cpu_s(redis_pid)
            profiler = _profile(server.pid, args.profile, args.seconds) if args.profile else None
            assert _line(client) == "end"
            server_cpu1, redis_cpu1 = _cpu_s(server.pid), _cpu_s(redis_pid)
            result = json.loads(_line(client))
            if profiler is not None:
                profiler.wait(timeout=60)
        finally:
            for process in (client, server):
                if process is not None:
                    _stop(process)
            if embedded is not None:
                embedded.stop()
    server_cpu = server_cpu1 - server_cpu0
    delivered = result["delivered"]
    report = {
        "clients": args.clients,
        "messages_per_second": args.messages_per_second,
        "seconds": args.seconds,
        "protocol": args.protocol,
        "senders": args.senders,
        "messages_sent": result["sent"],
        "delivered": delivered,
        "delivered_per_s": round(delivered / result["wall_s"]),
        "delivered_per_core_s": round(delivered / server_cpu) if server_cpu > 0 else None,
        "latency_ms_p50": result["latency_ms_p50"],
        "latency_ms_p99": result["latency_ms_p99"],
        "latency_ms_max": result["latency_ms_max"],
        "lost": result["lost"],
        "out_of_order": result["out_of_order"],
        "rss_per_client_kb": round((rss_after - rss_before) / args.clients, 1),
        "server_rss_mb": round(rss_after / 1024, 1),
        "server_cpu_s": round(server_cpu, 2),
        "client_cpu_s": result["client_cpu_s"],
        "redis_cpu_s": round(redis_cpu1 - redis_cpu0, 2) if redis_pid else None,
        "wall_s": result["wall_s"],
        "posted": result["posted"],
        "viewer_received_min": result["viewer_received_min"],
        "viewer_received_max": result["viewer_received_max"],
    }
    print(json.dumps(report))
    return 0 if result["lost"] == 0 else 1


def _profile(pid: int, path: str, seconds: float) -> subprocess.Popen[bytes]:
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy if spy.exists() else "py-spy"), "record", "--pid", str(pid)]
    command += ["--duration", str(max(1, int(seconds))), "--format", "raw", "-o", path]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _spawn(role: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "livecast.bench.fanout", "--role", role, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def _line(process: subprocess.Popen[str], role: str = "") -> str:
    stdout: IO[str] | None = process.stdout
    assert stdout is not None
    line = stdout.readline()
    if not line:
        raise RuntimeError(f"benchmark {role or 'child'} process exited early")
    return line.strip()


def _say(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()


def _stop(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(OSError, ValueError):
        if process.stdin is not None:
            process.stdin.close()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _cpu_s(pid: int | None) -> float:
    return 0.0 if pid is None else cpu_seconds(pid)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# -- server ------------------------------------------------------------------------------


def _run_server(args: argparse.Namespace) -> int:
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(args))
    finally:
        loop.close()


async def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from livecast.app import create_app
    from livecast.appkeys import REDIS, STREAMS, TOKENS
    from livecast.auth import Role
    from livecast.config import load_settings

    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    settings = load_settings(
        env={},
        overrides={
            "redis.url": args.redis_url,
            "redis.key_prefix": prefix,
            "data.dir": args.data_dir,
        },
    )
    app = create_app(settings)
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=settings.server.shutdown_timeout_s
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    stream = await app[STREAMS].create(
        title="bench", description="", seller_id="bench-seller", seller_name="Bench",
        scheduled_start_ms=None, featured_skus=[],
    )  # fmt: skip
    token = app[TOKENS].issue(sub="bench-host", name="Host", role=Role.ADMIN, ttl_s=3600)
    print(json.dumps({"port": port, "stream": stream.id, "token": token}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the orchestrator closes stdin
    redis = app[REDIS]
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        await redis.delete(key)
    await runner.cleanup()
    return 0


# -- client ------------------------------------------------------------------------------


class _Viewer(asyncio.Protocol):
    """A minimal WebSocket viewer: handshake, then unmasked server frames, counted."""

    __slots__ = ("acks", "buffer", "connected", "expected", "latencies", "out_of_order",
                 "received", "request", "transport", "upgraded")  # fmt: skip

    def __init__(self, request: bytes, latencies: list[int], senders: int) -> None:
        self.request = request
        self.latencies = latencies
        self.buffer = b""
        self.upgraded = False
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.expected = [0] * senders
        self.acks = 0
        self.received = 0
        self.out_of_order = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.connected.set_exception(RuntimeError(buffer[:200].decode(errors="replace")))
                return
            self.upgraded = True
            buffer = buffer[end + 4 :]
        pos = 0
        size = len(buffer)
        while size - pos >= 2:
            length = buffer[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                start = pos + 10
            stop = start + length
            if stop > size:
                break
            self._frame(buffer, start, stop, now)
            pos = stop
        self.buffer = buffer[pos:] if pos < size else b""

    def _frame(self, buffer: bytes, start: int, stop: int, now: int) -> None:
        mark = _MARK.search(buffer, start, stop)
        if mark is None:
            if buffer.find(b"chat.ack", start, stop) >= 0:
                self.acks += 1
            elif not self.connected.done() and buffer.find(b"hello", start, stop) >= 0:
                self.connected.set_result(None)
            return
        sender, seq, sent = int(mark[1]), int(mark[2]), int(mark[3])
        if seq != self.expected[sender]:
            self.out_of_order += 1
        self.expected[sender] = seq + 1
        self.received += 1
        self.latencies.append(now - sent)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"closed during connect: {exc}"))


def _handshake(port: int, stream: str, protocol: str, token: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    query = f"?token={token}" if token else ""
    return (
        f"GET /ws/streams/{stream}{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
    ).encode()


def _masked(payload: bytes, *, binary: bool) -> bytes:
    """A client frame (clients must mask); payloads here are under 126 bytes."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x82 if binary else 0x81, 0x80 | len(payload)]) + mask + masked


def _run_client(args: argparse.Namespace) -> int:
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_drive(args))
    finally:
        loop.close()


async def _drive(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    protocol = _PROTOCOL[args.protocol]
    binary = args.protocol == "msgpack"
    latencies: list[int] = []
    viewers: list[_Viewer] = []
    gate = asyncio.Semaphore(100)

    async def open_viewer(token: str = "", into: list[int] = latencies) -> _Viewer:
        async with gate:
            request = _handshake(args.port, args.stream, protocol, token)
            _, viewer = await loop.create_connection(
                lambda: _Viewer(request, into, args.senders), "127.0.0.1", args.port
            )
            await asyncio.wait_for(viewer.connected, 30)
            return viewer

    viewers = list(await asyncio.gather(*(open_viewer() for _ in range(args.clients))))
    host_latencies: list[int] = []
    hosts = [await open_viewer(args.token, host_latencies) for _ in range(args.senders)]
    print("connected", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)

    total = max(1, round(args.messages_per_second * args.seconds))
    interval = 1.0 / args.messages_per_second
    cpu0 = time.process_time()
    print("start", flush=True)
    started = time.monotonic()
    for seq in range(total):
        due = started + seq * interval
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sender = seq % args.senders
        text = f"#{sender} {seq // args.senders} {time.monotonic_ns()}#"
        frame = {"type": "chat.send", "text": text, "client_id": f"b{seq}"}
        transport = hosts[sender].transport
        assert transport is not None
        if binary:
            transport.write(_masked(msgspec.msgpack.encode(frame), binary=True))
        else:
            transport.write(_masked(json.dumps(frame).encode(), binary=False))
    # Wait for the tail: every viewer has everything, or 5 s without progress.
    expected = total * args.clients
    last, idle_since = -1, time.monotonic()
    while True:
        delivered = sum(v.received for v in viewers)
        if delivered >= expected or time.monotonic() - idle_since > 5:
            break
        if delivered != last:
            last, idle_since = delivered, time.monotonic()
        await asyncio.sleep(0.01)
    wall = time.monotonic() - started
    print("end", flush=True)
    cpu = time.process_time() - cpu0
    latencies.sort()

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1e6, 2)

    result: dict[str, Any] = {
        "sent": total,
        "delivered": delivered,
        "lost": expected - delivered,
        "out_of_order": sum(v.out_of_order for v in viewers),
        "latency_ms_p50": pct(0.50),
        "latency_ms_p99": pct(0.99),
        "latency_ms_max": pct(1.0),
        "wall_s": round(wall, 3),
        "client_cpu_s": round(cpu, 2),
        "posted": sum(h.acks for h in hosts),
        "viewer_received_min": min(v.received for v in viewers),
        "viewer_received_max": max(v.received for v in viewers),
    }
    print(json.dumps(result), flush=True)
    for viewer in [*viewers, *hosts]:
        if viewer.transport is not None:
            viewer.transport.close()
    await asyncio.sleep(0.2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
