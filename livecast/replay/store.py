"""Replays: their records in Redis, their files on disk, listing, deletion and retention.

Keys, under one hash tag so that the scripts are valid on Redis Cluster::

    <prefix>{replays}:replay:<stream id>   hash: node_id, node_url (the node that wrote
                                           it last), started_ms, ended_ms, duration_s,
                                           segments, poster, spans, open
    <prefix>{replays}:ended                sorted set of stream ids by end time (unix ms)

A record is made when a packaging run starts recording (``open.lua``), counts each
segment written (``segment.lua``) and is listed once its stream ends (``ended.lua``,
from the registry's end transition on whichever node made it, or from the writer that
finishes after it). ``spans`` maps wall-clock time to replay time: one ``[unix s,
position s]`` pair per stretch of continuous media, so a moment of the live stream
(a deal's start) is found on the replay even across a publisher's drop and return.

Files live in ``<replay dir>/<stream id>/``, the audio's in its ``audio/`` (see
:mod:`livecast.replay.writer` and :mod:`livecast.replay.variants`). With a
directory shared by every node any node serves any replay; otherwise a node that has
not got the files forwards the request to the node that wrote them.

Deleting (a seller's ``DELETE``, or the retention sweep) removes the record first: the
replay is gone for everyone at once, whatever node its files are on. Exactly one node
wins the sweep of each expired replay (``ZREM`` answers 1 to one caller). Files whose
record is gone are removed by the node that has them, at its next sweep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, cast

import aiohttp
import msgspec
import redis.asyncio as aioredis
from aiohttp import web

from livecast.config import ReplaySettings
from livecast.hls.forward import FORWARDED_HEADER
from livecast.ids import is_stream_id
from livecast.node import Node
from livecast.redisdb import KeySpace, load_lua
from livecast.replay.manifest import MANIFEST
from livecast.replay.variants import AUDIO_DIR, Recording, VodSet, read_recording, render_set
from livecast.replay.writer import ReplayWriter
from livecast.streams.registry import Stream, StreamRegistry, StreamState

__all__ = ["ReplayRecord", "Replays", "record_key"]

log = logging.getLogger(__name__)

_HERE = Path(__file__).parent
_ASKED: Final = ("Authorization", "If-None-Match")
_ANSWERED: Final = ("Content-Type", "Cache-Control", "ETag")
_FORWARD_TIMEOUT_S: Final = 30.0


class ReplayRecord(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    node_id: str
    node_url: str
    started_ms: int | None
    ended_ms: int | None
    duration_s: float
    segments: int
    poster: bool
    spans: list[tuple[float, float]]
    open: int

    @property
    def ended(self) -> bool:
        return self.ended_ms is not None

    def position(self, unix_s: float) -> float:
        """Where the wall-clock moment ``unix_s`` of the live stream is on the replay (s)."""
        found = 0.0
        for pdt, position in self.spans:
            if pdt > unix_s:
                break
            found = position + (unix_s - pdt)
        return round(min(max(found, 0.0), self.duration_s), 3)


def record_key(keys: KeySpace, stream_id: str) -> str:
    """The key of the stream's replay record (a hash; it exists once anything was
    recorded, until the replay is deleted)."""
    return keys.key("{replays}", "replay", stream_id)


def _record(stream_id: str, raw: dict[bytes, bytes]) -> ReplayRecord:
    row = {k.decode(): v.decode() for k, v in raw.items()}
    return ReplayRecord(
        stream_id=stream_id,
        node_id=row.get("node_id", ""),
        node_url=row.get("node_url", ""),
        started_ms=int(row["started_ms"]) if "started_ms" in row else None,
        ended_ms=int(row["ended_ms"]) if "ended_ms" in row else None,
        duration_s=round(float(row.get("duration_s", "0")), 3),
        segments=int(row.get("segments", "0")),
        poster=row.get("poster") == "1",
        spans=msgspec.json.decode(row.get("spans", "[]"), type=list[tuple[float, float]]),
        open=int(row.get("open", "0")),
    )


class Replays:
    """This node's side of every replay: the writers of the streams it packages, the
    records, the files it has, and the forwarding of requests for files it has not."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        settings: ReplaySettings,
        root: Path,
        node: Node,
        streams: StreamRegistry,
    ) -> None:
        self.settings = settings
        self.root = root
        self.node = node
        self._redis = redis
        self._keys = keys
        self._open = load_lua(redis, _HERE / "open.lua")
        self._segment = load_lua(redis, _HERE / "segment.lua")
        self._close = load_lua(redis, _HERE / "close.lua")
        self._ended = load_lua(redis, _HERE / "ended.lua")
        self.writers: dict[str, ReplayWriter] = {}  # stream -> its open writer here
        self._recordings: dict[str, tuple[_Version, Recording, VodSet]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._streams = streams
        # what else is made of a replay (product clips): told when it is finalized (its
        # stream ended, every run closed) and when it is deleted
        self.on_finalized: list[Callable[[ReplayRecord], Awaitable[object]]] = []
        self.on_deleted: list[Callable[[str], Awaitable[object]]] = []

    # -- keys and places -------------------------------------------------------------

    def record_key(self, stream_id: str) -> str:
        return record_key(self._keys, stream_id)

    def _index_key(self) -> str:
        return self._keys.key("{replays}", "ended")

    def directory(self, stream_id: str) -> Path:
        return self.root / stream_id

    # -- recording (called by the writers) -----------------------------------------------

    def writer(self, stream_id: str, run: str) -> ReplayWriter:
        """The sink of a new packaging run of ``stream_id`` here (made on the event loop)."""
        writer = ReplayWriter(self, stream_id, run)
        self.writers[stream_id] = writer
        writer.done.add_done_callback(lambda _: self._writer_done(stream_id, writer))
        return writer

    def _writer_done(self, stream_id: str, writer: ReplayWriter) -> None:
        if self.writers.get(stream_id) is writer:
            del self.writers[stream_id]
        if not writer.done.cancelled() and (exc := writer.done.exception()) is not None:
            log.warning("stream %s: replay recording ended with %r", stream_id, exc)

    async def opened(self, stream_id: str) -> tuple[float, int, list[tuple[float, float]]]:
        duration, segments, spans = await self._open(
            keys=[self.record_key(stream_id)], args=[self.node.id, self.node.url]
        )
        return (
            float(duration),
            int(segments),
            msgspec.json.decode(spans, type=list[tuple[float, float]]),
        )

    async def segment_written(
        self,
        stream_id: str,
        *,
        duration: float,
        pdt: float,
        spans: list[tuple[float, float]] | None,
        poster: bool,
    ) -> None:
        await self._segment(
            keys=[self.record_key(stream_id)],
            args=[
                repr(duration),
                int(pdt * 1000),
                msgspec.json.encode(spans).decode() if spans is not None else "",
                "1" if poster else "0",
            ],
        )

    async def closed(self, stream_id: str) -> None:
        """A run stopped writing: if its stream has ended meanwhile, list the replay (in
        case the end transition came before the record had its first segment)."""
        await self._close(keys=[self.record_key(stream_id)])
        stream = await self._streams.find(stream_id)
        if stream is not None and stream.state is StreamState.ENDED:
            await self.stream_ended(stream, StreamState.LIVE)

    async def stream_ended(self, stream: Stream, previous: StreamState) -> None:
        """The registry's state listener: an ended stream's replay is listed."""
        if stream.state is not StreamState.ENDED:
            return
        ended_ms = int(time.time() * 1000)
        if stream.ended_at:
            ended_ms = int(_parse_iso(stream.ended_at) * 1000)
        await self._ended(
            keys=[self.record_key(stream.id), self._index_key()], args=[ended_ms, stream.id]
        )
        record = await self.get(stream.id)
        if record is not None and record.ended and record.open == 0 and record.segments:
            for finalized in self.on_finalized:
                try:
                    await finalized(record)
                except aioredis.RedisError as exc:  # the end stands; clips are extras
                    log.warning("stream %s: replay finalization step failed: %r", stream.id, exc)

    # -- reading --------------------------------------------------------------------------

    async def get(self, stream_id: str) -> ReplayRecord | None:
        if not is_stream_id(stream_id):
            return None
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(self.record_key(stream_id)))
        return _record(stream_id, raw) if raw else None

    async def recent(self, limit: int) -> list[ReplayRecord]:
        """Ended replays, the most recently ended first."""
        found = cast(list[bytes], await self._redis.zrevrange(self._index_key(), 0, limit - 1))
        ids = [i.decode() for i in found]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id in ids:
                pipe.hgetall(self.record_key(stream_id))
            rows = await pipe.execute()
        return [_record(i, row) for i, row in zip(ids, rows, strict=True) if row]

    def has_files(self, stream_id: str) -> bool:
        return (self.directory(stream_id) / MANIFEST).is_file()

    async def recording(self, stream_id: str) -> Recording | None:
        """The replay's segments here, both tracks (None if there are none)."""
        found = await self._read(stream_id)
        return found[0] if found is not None else None

    async def playlists(self, stream_id: str) -> VodSet | None:
        """The VOD playlists of the replay's files here (None if there are none): the
        multivariant, the video's and the audio's; made again only when a manifest
        changed."""
        found = await self._read(stream_id)
        return found[1] if found is not None else None

    async def _read(self, stream_id: str) -> tuple[Recording, VodSet] | None:
        directory = self.directory(stream_id)
        version = await asyncio.to_thread(_version, directory)
        if version is None:
            return None
        cached = self._recordings.get(stream_id)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        recording = await asyncio.to_thread(read_recording, directory)
        if recording is None:
            return None
        playlists = render_set(recording)
        if len(self._recordings) > 1000:
            self._recordings.clear()
        self._recordings[stream_id] = (version, recording, playlists)
        return recording, playlists

    # -- deleting ----------------------------------------------------------------------

    async def delete(self, stream_id: str) -> bool:
        """Delete the replay's record (for every node at once) and its files here;
        whether there was one. Files on other nodes go at their next sweep."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._index_key(), stream_id)
            pipe.delete(self.record_key(stream_id))
            _, deleted = await pipe.execute()
        for gone in self.on_deleted:
            await gone(stream_id)
        await self._remove_files(stream_id)
        return bool(deleted)

    async def sweep(self) -> int:
        """Delete the replays past ``retention_days`` (each by one node), then the files
        here whose record is gone; the number of replays deleted by this node."""
        deleted = 0
        if self.settings.retention_days > 0:
            cutoff = int((time.time() - self.settings.retention_days * 86_400) * 1000)
            expired = cast(
                list[bytes], await self._redis.zrangebyscore(self._index_key(), "-inf", cutoff)
            )
            for raw in expired:
                stream_id = raw.decode()
                if await self._redis.zrem(self._index_key(), stream_id):
                    await self._redis.delete(self.record_key(stream_id))
                    for gone in self.on_deleted:
                        await gone(stream_id)
                    await self._remove_files(stream_id)
                    deleted += 1
                    log.info("replay of stream %s deleted (past retention)", stream_id)
        for stream_id in await asyncio.to_thread(self._local_ids):
            if stream_id in self.writers:
                continue
            if not await self._redis.exists(self.record_key(stream_id)):
                await self._remove_files(stream_id)
        return deleted

    def _local_ids(self) -> list[str]:
        try:
            return [p.name for p in self.root.iterdir() if p.is_dir() and is_stream_id(p.name)]
        except FileNotFoundError:
            return []

    async def _remove_files(self, stream_id: str) -> None:
        self._recordings.pop(stream_id, None)
        writer = self.writers.get(stream_id)
        if writer is not None:
            writer.discard()
        await asyncio.to_thread(shutil.rmtree, self.directory(stream_id), True)

    async def run_sweeps(self) -> None:
        """Sweep every ``sweep_interval_s`` (one per node, owned by the app)."""
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.sweep()
            except (OSError, aioredis.RedisError) as exc:
                log.warning("replay sweep failed: %s", exc)

    # -- forwarding ------------------------------------------------------------------------

    def start(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=_FORWARD_TIMEOUT_S, connect=2.0)
        )

    async def close(self) -> None:
        writers = [w.done for w in self.writers.values()]
        for writer in list(self.writers.values()):
            writer.close()
        if writers:
            await asyncio.wait(writers, timeout=10.0)
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def forward(self, request: web.Request, record: ReplayRecord) -> web.Response | None:
        """The answer of the node that wrote the replay, if that is another node and this
        request was not forwarded already; None otherwise."""
        if (
            self._http is None
            or FORWARDED_HEADER in request.headers
            or not record.node_url
            or record.node_id == self.node.id
            or record.node_url == self.node.url
        ):
            return None
        headers = {name: request.headers[name] for name in _ASKED if name in request.headers}
        headers[FORWARDED_HEADER] = self.node.id
        try:
            async with self._http.get(record.node_url + request.path_qs, headers=headers) as up:
                body = await up.read()
                answered = {n: up.headers[n] for n in _ANSWERED if n in up.headers}
                return web.Response(status=up.status, body=body, headers=answered)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "replay %s: node %s not reached: %r", record.stream_id, record.node_url, exc
            )
            return None


_Version = tuple[int, int, int, int]


def _version(directory: Path) -> _Version | None:
    """The manifests' modification times and sizes (None without a video manifest)."""
    try:
        video = (directory / MANIFEST).stat()
    except FileNotFoundError:
        return None
    try:
        audio = (directory / AUDIO_DIR / MANIFEST).stat()
    except FileNotFoundError:
        return (video.st_mtime_ns, video.st_size, 0, 0)
    return (video.st_mtime_ns, video.st_size, audio.st_mtime_ns, audio.st_size)


def _parse_iso(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
