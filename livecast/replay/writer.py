"""The replay writer of one packaging run: every init segment and every complete segment
the packager makes, written to disk as it comes, off the event loop.

A :class:`ReplayWriter` is the packager's :class:`~livecast.hls.packager.SegmentSink`.
The packager calls it on the thread that feeds it (the event loop); each call only
queues the bytes (safe from any thread). One task per writer takes them in order and
writes each file in a worker thread (:func:`asyncio.to_thread`), so the media loop never
waits for a disk: the init segment (``init-<run>-<n>.mp4``), then each segment
(``seg-<run>-<msn>.m4s``) and its line in ``segments.jsonl`` (after its bytes, see
:mod:`livecast.replay.manifest`), then the record's count in Redis. The replay's first
segment also makes its poster (``poster.jpg``, :mod:`livecast.replay.poster`).

Run ids are in the names, so the runs of a stream (its media left this node and came
back) share its directory; the first segment of a run after others is a discontinuity.
Renditions other than ``main`` (the audio) go to a subdirectory of their own, named for
the rendition, with their own manifest.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from livecast.hls.packager import Segment
from livecast.replay.manifest import MANIFEST, SegmentEntry
from livecast.replay.poster import POSTER, poster_jpeg

if TYPE_CHECKING:
    from livecast.replay.store import Replays

__all__ = ["ReplayWriter"]

log = logging.getLogger(__name__)

MAIN: Final = "main"
_encode = msgspec.json.Encoder().encode


class _Init(msgspec.Struct, frozen=True):
    rendition: str
    name: str
    data: bytes


class _Segment(msgspec.Struct, frozen=True):
    rendition: str
    entry: SegmentEntry
    data: bytes


class ReplayWriter:
    """Writes one run's segments of one stream; :meth:`close` once the run ended."""

    def __init__(self, replays: Replays, stream_id: str, run: str) -> None:
        self._replays = replays
        self.stream_id = stream_id
        self.run = run
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[_Init | _Segment | None] = asyncio.Queue()
        self._inits: dict[str, bytes] = {}  # the newest init segment of each rendition
        self._discarded = False
        self.done: asyncio.Task[None] = self._loop.create_task(
            self._write_all(), name=f"replay-writer-{stream_id}"
        )

    # -- the sink (any thread) --------------------------------------------------------

    def init_made(self, rendition: str, name: str, data: bytes) -> None:
        self._put(_Init(rendition, name, data))

    def segment_made(self, rendition: str, segment: Segment) -> None:
        if segment.data is None:
            return
        entry = SegmentEntry(
            name=segment.name,
            init=segment.init_name,
            duration=round(segment.duration, 5),
            pdt=round(segment.program_date_time, 3),
            discontinuity=segment.discontinuity,
            size=len(segment.data),
        )
        self._put(_Segment(rendition, entry, segment.data))

    def close(self) -> None:
        """The run ended: write what is queued, then stop."""
        self._put(None)

    def discard(self) -> None:
        """The replay was deleted: write nothing more."""
        self._discarded = True

    def _put(self, item: _Init | _Segment | None) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    # -- the writing task ---------------------------------------------------------------

    def _directory(self, rendition: str) -> Path:
        base = self._replays.directory(self.stream_id)
        return base if rendition == MAIN else base / rendition

    async def _write_all(self) -> None:
        try:
            duration, segments, spans = await self._replays.opened(self.stream_id)
        except Exception:
            log.exception("stream %s: not recorded for replay (no record)", self.stream_id)
            self._discarded = True
            duration, segments, spans = 0.0, 0, []
        first = True
        try:
            while (item := await self._queue.get()) is not None:
                if self._discarded:
                    continue
                try:
                    if isinstance(item, _Init):
                        self._inits[item.rendition] = item.data
                        await asyncio.to_thread(
                            _write_file, self._directory(item.rendition), item.name, item.data
                        )
                        continue
                    entry = item.entry
                    main = item.rendition == MAIN
                    if main and first and segments:
                        entry = msgspec.structs.replace(entry, discontinuity=True)
                    poster = None
                    if main and segments == 0:
                        init = self._inits.get(MAIN, b"")
                        poster = await asyncio.to_thread(poster_jpeg, init, item.data)
                    await asyncio.to_thread(
                        _write_segment, self._directory(item.rendition), entry, item.data, poster
                    )
                    if not main:
                        continue
                    new_spans = None
                    if first or entry.discontinuity:
                        spans = [*spans, (entry.pdt, round(duration, 3))]
                        new_spans = spans
                    first = False
                    duration += entry.duration
                    segments += 1
                    await self._replays.segment_written(
                        self.stream_id,
                        duration=entry.duration,
                        pdt=entry.pdt,
                        spans=new_spans,
                        poster=poster is not None,
                    )
                except Exception:
                    log.exception("stream %s: a replay segment was not written", self.stream_id)
        finally:
            await self._replays.closed(self.stream_id)


def _write_file(directory: Path, name: str, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".{name}.partial"
    partial.write_bytes(data)
    os.replace(partial, directory / name)


def _write_segment(directory: Path, entry: SegmentEntry, data: bytes, poster: bytes | None) -> None:
    """The segment's file, then its manifest line (then the poster, if there is one)."""
    _write_file(directory, entry.name, data)
    with open(directory / MANIFEST, "ab") as manifest:
        manifest.write(_encode(entry) + b"\n")
    if poster is not None:
        _write_file(directory, POSTER, poster)
