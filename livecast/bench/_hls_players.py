"""The simulated LL-HLS players of ``livecast bench hls``, many to a process.

Each player does what hls.js in low-latency mode does: it reads the multivariant playlist
(``index.m3u8``), then follows each rendition it names (video, and audio when there is
an audio group) at the live edge: a blocking playlist reload for the hinted part
(``_HLS_msn``/``_HLS_part``) and, at the same time, a GET of that part; then again with
the next hint. When a rendition's playlist ends (a new run), it reads the multivariant
playlist again. It holds two keep-alive HTTP/1.1 connections per rendition (one per
request in flight, as a browser would) and nothing else.

The load generator must cost far less than the origin it measures, or it measures
itself: at 1,000 players through aiohttp's client the player processes fell behind (parts
reached them seconds late) while the origin had CPU to spare. So the client is reduced
to what a player needs: one :class:`asyncio.Protocol` per connection on uvloop, a
request written as prepared bytes, a response read by its ``Content-Length``, and every
playlist parsed once per distinct body (all players get the same bytes, which is what
lets a CDN collapse them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections import Counter
from typing import Any, Final, cast
from urllib.parse import urlsplit

__all__ = ["players_main"]

_HINT: Final = re.compile(rb'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="((?:audio-)?part-\w+-\d+\.m4s)"')
_STREAM_INF: Final = re.compile(rb"#EXT-X-STREAM-INF:[^\n]*\n([^\n#]+)\n")
_AUDIO: Final = re.compile(rb'#EXT-X-MEDIA:TYPE=AUDIO,[^\n]*URI="([^"]+)"')
_CONTENT_LENGTH: Final = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)
_CHUNKED: Final = re.compile(rb"\r\ntransfer-encoding: *chunked", re.IGNORECASE)
_CONNECTS_AT_ONCE: Final = 64  # per process: a burst of SYNs overflows a listen backlog
_PARSED_KEPT: Final = 64


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._status = 0
        self._length = -1  # the body's, once the head is read
        self._reply: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            if self._length < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buffer[: end + 2])
                del buffer[: end + 4]
                length = _CONTENT_LENGTH.search(head)
                if length is None or _CHUNKED.search(head):
                    self._fail(ConnectionError("a response without Content-Length"))
                    return
                self._status = int(head[9:12])
                self._length = int(length[1])
            if len(buffer) < self._length:
                return
            body = bytes(buffer[: self._length])
            del buffer[: self._length]
            self._length = -1
            reply, self._reply = self._reply, None
            if reply is not None and not reply.done():
                reply.set_result((self._status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("the server closed the connection"))

    def close(self) -> None:
        self._fail(ConnectionError("closed by the player"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()
        reply, self._reply = self._reply, None
        if reply is not None and not reply.done():
            reply.set_exception(exc)
            reply.exception()  # whoever awaits it sees it; nobody else need

    def request(self, head: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Send a prepared request; its (status, body)."""
        reply = asyncio.get_running_loop().create_future()
        if self.closed or self._transport is None:
            reply.set_exception(ConnectionError("connection closed"))
            return reply
        self._reply = reply
        self._transport.write(head)
        return reply


class _Playlists:
    """Playlist bodies parsed once each: the hint, the next part to block for, and
    every listed part's end (unix time)."""

    def __init__(self) -> None:
        self._parsed: dict[bytes, tuple[str, int, int, dict[str, float]] | None] = {}

    def parse(self, body: bytes) -> tuple[str, int, int, dict[str, float]] | None:
        parsed = self._parsed.get(body, ...)
        if parsed is ...:
            if len(self._parsed) >= _PARSED_KEPT:
                self._parsed.clear()
            parsed = self._parsed[body] = _parse(body)
        return parsed


def _parse(body: bytes) -> tuple[str, int, int, dict[str, float]] | None:
    hint = _HINT.search(body)
    if hint is None:
        return None
    text = body.decode()
    msn, index = _next_part(text)
    return hint[1].decode(), msn, index, _part_ends(text)


def _next_part(playlist: str) -> tuple[int, int]:
    """(msn, index) of the part after the newest listed, as a player computes it."""
    msn, parts, complete = -1, 0, False
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":", 1)[1]) - 1
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):  # one per segment, first of its tags
            msn, parts, complete = msn + 1, 0, False
        elif line.startswith("#EXT-X-PART:"):
            parts += 1
        elif line.startswith(("seg-", "audio-seg-")):
            complete = True
    return (msn + 1, 0) if complete else (msn, parts)


def _part_ends(playlist: str) -> dict[str, float]:
    """Each listed part's name and the unix time its last frame reached the origin."""
    ends: dict[str, float] = {}
    at = 0.0
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            stamp = line.split(":", 1)[1].replace("Z", "+00:00")
            at = dt.datetime.fromisoformat(stamp).timestamp()
        elif line.startswith("#EXT-X-PART:"):
            duration = float(line.split("DURATION=", 1)[1].split(",", 1)[0])
            at += duration
            ends[line.split('URI="', 1)[1].split('"', 1)[0]] = at
    return ends


def _renditions(multivariant: bytes) -> list[str]:
    """The media playlists a multivariant playlist names: video, then audio if any."""
    video = _STREAM_INF.search(multivariant)
    if video is None:
        return []
    audio = _AUDIO.search(multivariant)
    names = [video[1].decode()]
    return names if audio is None else [*names, audio[1].decode()]


def players_main(base: str, count: int, start: Any, window_over: Any, results: Any) -> None:
    """``count`` players of the stream at ``base`` (``http://host:port/hls/{id}``); from
    ``start`` to ``window_over`` they count, then report ``players_report``."""
    from livecast.bench._relay_peers import _run_in_loop

    try:
        _run_in_loop(_play(base, count, start, window_over, results))
    except Exception as exc:
        results.put(("error", f"players: {type(exc).__name__}: {exc}"))


async def _play(base: str, count: int, start: Any, window_over: Any, results: Any) -> None:
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    prefix = url.path.rstrip("/")
    loop = asyncio.get_running_loop()
    playlists = _Playlists()
    requests: dict[str, bytes] = {}
    asked: Counter[str] = Counter()
    part_ages_ms: list[float] = []
    stats = {"requests": 0, "bytes": 0, "errors": 0}
    counting = False
    done = False
    joined = 0  # players that got their first part
    connecting = asyncio.Semaphore(_CONNECTS_AT_ONCE)

    def head(path: str) -> bytes:
        prepared = requests.get(path)
        if prepared is None:
            if len(requests) > 4096:
                requests.clear()
            prepared = requests[path] = (
                f"GET {prefix}/{path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
            )
        return prepared

    async def connect() -> _Connection:
        async with connecting:
            _transport, connection = await loop.create_connection(_Connection, host, port)
        return connection

    def tally(path: str, body: bytes) -> None:
        stats["requests"] += 1
        stats["bytes"] += len(body)
        asked[path] += 1

    async def get(connection: _Connection, path: str) -> tuple[int, bytes]:
        status, body = await connection.request(head(path))
        if counting:
            tally(path, body)
        return status, body

    async def follow(playlist: str, joining: asyncio.Future[None] | None) -> None:
        """Follow one rendition at its live edge until its playlist ends (or is gone: a
        new run) or the window is over; ``joining`` is resolved at its first part."""
        playlist_line: _Connection | None = None
        part_line: _Connection | None = None
        status, body = 0, b""
        try:
            while not done:
                try:
                    if playlist_line is None or playlist_line.closed:
                        playlist_line = await connect()
                        status, body = await get(playlist_line, playlist)
                    if part_line is None or part_line.closed:
                        part_line = await connect()
                    parsed = playlists.parse(body) if status == 200 else None
                    if parsed is None:
                        if status == 404 or b"#EXT-X-ENDLIST" in body:
                            return  # this run ended: the multivariant playlist says what next
                        stats["errors"] += counting
                        await asyncio.sleep(0.2)
                        status, body = await get(playlist_line, playlist)
                        continue
                    name, msn, index, _ends = parsed
                    reload = f"{playlist}?_HLS_msn={msn}&_HLS_part={index}"
                    # both in flight at once, as hls.js has them
                    reloaded = playlist_line.request(head(reload))
                    fetched = part_line.request(head(name))
                    status, body = await reloaded
                    part_status, part = await fetched
                    if joining is not None and part_status == 200:
                        joining.set_result(None)
                        joining = None
                except (ConnectionError, OSError):
                    # start both over: an answer still owed on the other must not be taken
                    # for the next request's
                    for line in (playlist_line, part_line):
                        if line is not None:
                            line.close()
                    playlist_line = part_line = None
                    stats["errors"] += counting
                    await asyncio.sleep(0.2)
                    continue
                if not counting:
                    continue
                tally(reload, body)
                tally(name, part)
                if part_status != 200:
                    stats["errors"] += 1
                elif status == 200:
                    parsed = playlists.parse(body)
                    ends = parsed[3] if parsed is not None else {}
                    if name in ends:
                        part_ages_ms.append((time.time() - ends[name]) * 1000)
        finally:
            for line in (playlist_line, part_line):
                if line is not None:
                    line.close()

    async def player() -> None:
        nonlocal joined
        joining: asyncio.Future[None] | None = loop.create_future()
        while not done:
            try:
                line = await connect()
                try:
                    status, body = await get(line, "index.m3u8")
                finally:
                    line.close()
            except (ConnectionError, OSError):
                status, body = 0, b""
            names = _renditions(body) if status == 200 else []
            if not names:
                stats["errors"] += counting
                await asyncio.sleep(0.2)
                continue
            runs = [asyncio.ensure_future(follow(names[0], joining))]
            runs += [asyncio.ensure_future(follow(name, None)) for name in names[1:]]
            if joining is not None:
                await asyncio.wait([joining, *runs], return_when=asyncio.FIRST_COMPLETED)
                if joining.done():
                    joining = None
                    joined += 1
                    if joined == count:
                        results.put(("players_ready", {}))
            try:
                await asyncio.gather(*runs)
            finally:
                for run in runs:
                    run.cancel()
            await asyncio.sleep(0.2)  # a run ended: its successor's playlist comes soon

    tasks = [asyncio.ensure_future(player()) for _ in range(count)]
    await asyncio.to_thread(start.wait)
    counting = True
    await asyncio.to_thread(window_over.wait)
    counting = False
    done = True
    await asyncio.wait(tasks, timeout=10)
    for task in tasks:
        task.cancel()
    results.put(("players_report", {**stats, "part_ages_ms": part_ages_ms, "asked": dict(asked)}))
