"""Recording for replay: a stream's encoded frames remuxed into a file, never decoded.

With ``webrtc.record`` on, the stream's origin (the node holding its publisher) writes
what the publisher sends to ``<recordings dir>/<stream id>/<start time>.<ext>``: VP8
(+ Opus) as WebM, which browsers play as it is, H.264 (+ Opus) as Matroska. A file
starts at the first video keyframe (the first audio frame for an audio-only stream).

Timeline: each :class:`~livecast.ingest.relay.MediaSource` hands every frame, on its
continuous timeline, to a :class:`Recording` (``MediaSource.tee``: one call per frame,
nothing when off). Each track is anchored to the wall time of its first frame in the
file and advances by its own RTP clock (90 kHz video, 48 kHz audio). Because the relay's
timeline continues across a publisher's drop and return (advanced by the time away),
a returning publisher continues the same file: replay shows the gap as a pause, and one
broadcast stays one file. Only a change the file cannot hold starts a new segment (a new
file, named by its own start time): another video codec, or audio where there was none.
In-band parameter changes (a browser lowering its resolution) stay in the file: H.264
keyframes carry their SPS/PPS, VP8 keyframes their size.

Muxing: H.264 arrives Annex B; Matroska stores it length-prefixed with an avcC record in
CodecPrivate. The first keyframe's SPS/PPS are given to the muxer as extradata (and the
SPS's picture size as the track's), and FFmpeg's muxer converts the extradata and every
packet. Opus gets its ``OpusHead`` (RFC 7845 5.1). Packets are never decoded.

Threads: writing happens in one thread per recording, fed by a queue of at most
``_QUEUE_FRAMES`` frames. A writer that falls that far behind, or whose disk fails, stops
the recording with a logged error; the relay never waits for it. The file is finalized
(trailer, duration, cues) when the stream's media ends on this node and at shutdown:
:meth:`Recorder.close`, owned by the app, stops and joins every writer. A process that
dies mid-recording leaves a file that plays up to its last cluster.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import os
import queue
import re
import struct
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Final

import av
from av.container import OutputContainer
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext

from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest, NotFound
from livecast.ids import is_stream_id
from livecast.ingest._bitstream import h264_parameter_sets, h264_picture_size, vp8_picture_size
from livecast.ingest.relay import MediaSource

__all__ = ["Recorder", "RecordingFile", "content_type"]

log = logging.getLogger(__name__)

_QUEUE_FRAMES: Final = 1024  # about 10 s of 30 fps video with its audio
_JOIN_TIMEOUT_S: Final = 30.0
_NAME = re.compile(r"(?P<start>\d{8}T\d{6})Z(?:-(?P<seq>\d{1,4}))?\.(?P<ext>mkv|webm)")
_VIDEO: Final = 0
_AUDIO: Final = 1
_RESYNC: Final = 2  # a new publisher: video waits for its first keyframe
_STOP: Final = 3
_CLOCK = {_VIDEO: 90_000, _AUDIO: 48_000}
_SIGNED: Final = 1 << 31
_U32: Final = 0xFFFFFFFF
# OpusHead (RFC 7845 5.1): version 1, 2 channels, no pre-skip, 48 kHz, 0 dB, family 0
_OPUS_HEAD: Final = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 0, 48_000, 0, 0)
_MIME = {"mkv": "video/x-matroska", "webm": "video/webm"}

_Item = tuple[int, bytes, int, bool, float]


@dataclass(frozen=True, slots=True)
class RecordingFile:
    """One recorded file as the API lists it."""

    name: str
    bytes: int
    duration_s: float | None  # None while it is being written, or if unreadable
    started_at: str  # RFC 3339 UTC
    recording: bool


class _Track:
    """A track's place in the file: relay timestamps unwrapped, from an anchor."""

    __slots__ = ("last_pts", "pts", "stream", "ts")

    def __init__(self, stream: Stream, pts: int, ts: int) -> None:
        self.stream = stream
        self.pts = pts  # the pts of the frame with relay timestamp ``ts``
        self.ts = ts
        self.last_pts = -1

    def advance(self, ts: int) -> int:
        self.pts += ((ts - self.ts + _SIGNED) & _U32) - _SIGNED
        self.ts = ts
        pts = max(self.pts, self.last_pts + 1)  # the muxer needs rising timestamps
        self.last_pts = pts
        return pts


class Recording:
    """One file being written: a worker thread taking frames from the relay's sources."""

    def __init__(
        self, directory: Path, stream_id: str, video_codec: str | None, audio: bool
    ) -> None:
        self.stream_id = stream_id
        self.video_codec = video_codec
        self.audio = audio
        self.name: str | None = None  # once the file exists
        self.failed = False
        self.finishing = False
        self._directory = directory
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._abort = False
        self._sources: list[MediaSource] = []
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"recorder-{stream_id}", daemon=True)

    # -- event loop side ---------------------------------------------------------------

    def start(self, video: MediaSource, audio: MediaSource) -> None:
        self._thread.start()
        if self.video_codec is not None:
            video.tee = self.take_video
            self._sources.append(video)
        if self.audio:
            audio.tee = self.take_audio
            self._sources.append(audio)

    def take_video(self, data: bytes, timestamp: int, keyframe: bool, arrived: float) -> None:
        if self._queue.qsize() < _QUEUE_FRAMES:
            self._queue.put((_VIDEO, data, timestamp, keyframe, arrived))
        else:
            self._fall_behind()

    def take_audio(self, data: bytes, timestamp: int, keyframe: bool, arrived: float) -> None:
        if self._queue.qsize() < _QUEUE_FRAMES:
            self._queue.put((_AUDIO, data, timestamp, keyframe, arrived))
        else:
            self._fall_behind()

    def accepts(self, video_codec: str | None, audio: bool) -> bool:
        """Whether a new publisher's media can continue this file."""
        return (
            not self.failed
            and not self.finishing
            and video_codec == self.video_codec
            and (self.audio or not audio)
        )

    def publisher_changed(self) -> None:
        self._queue.put((_RESYNC, b"", 0, False, 0.0))

    def finish(self) -> None:
        """Stop taking frames; the worker writes what it has and finalizes the file."""
        if self.finishing:
            return
        self.finishing = True
        self._detach()
        self._queue.put((_STOP, b"", 0, False, 0.0))

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def done(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def _fall_behind(self) -> None:
        log.error(
            "stream %s: recording %s stopped: the writer fell %d frames behind",
            self.stream_id,
            self.name,
            _QUEUE_FRAMES,
        )
        self.failed = True
        self._abort = True
        self.finish()

    def _detach(self) -> None:
        for source in self._sources:
            if source.tee in (self.take_video, self.take_audio):
                source.tee = None
        self._sources.clear()

    # -- worker thread -----------------------------------------------------------------

    def _run(self) -> None:
        writer = _Writer(self)
        try:
            while True:
                kind, data, ts, keyframe, arrived = self._queue.get()
                if kind == _STOP:
                    break
                if self._abort or self.failed:
                    continue
                if kind == _RESYNC:
                    writer.wait_keyframe = self.video_codec is not None
                else:
                    writer.write(kind, data, ts, keyframe, arrived)
        except Exception:
            self.failed = True
            log.exception("stream %s: recording %s failed", self.stream_id, self.name)
            self._stop_from_worker()
            while self._queue.get()[0] != _STOP:
                pass
        finally:
            try:
                writer.close()
            except Exception:
                self.failed = True
                log.exception("stream %s: recording %s not finalized", self.stream_id, self.name)

    def _stop_from_worker(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self.finish)
        except RuntimeError:  # the loop is closed: nothing feeds the queue any more
            self._queue.put((_STOP, b"", 0, False, 0.0))

    def _create_file(self, ext: str) -> Path:
        self._directory.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        for seq in range(1, 10_000):
            name = f"{stamp}.{ext}" if seq == 1 else f"{stamp}-{seq}.{ext}"
            path = self._directory / name
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                continue
            self.name = name
            return path
        raise FileExistsError(f"no free recording name in {self._directory}")


class _Writer:
    """The worker's half of a :class:`Recording`: the container and its tracks."""

    def __init__(self, recording: Recording) -> None:
        self._recording = recording
        self.wait_keyframe = recording.video_codec is not None
        self._container: OutputContainer | None = None
        self._tracks: dict[int, _Track] = {}
        self._streams: dict[int, Stream] = {}
        self._origin = 0.0  # arrival time of the file's first frame

    def write(self, kind: int, data: bytes, ts: int, keyframe: bool, arrived: float) -> None:
        if kind == _VIDEO and self.wait_keyframe:
            if not keyframe:
                return
            if self._container is None and not self._open(data, arrived):
                return
            self.wait_keyframe = False
        elif self._container is None and (
            self._recording.video_codec is not None or not self._open(data, arrived)
        ):
            return  # audio before the first video keyframe
        container = self._container
        assert container is not None
        track = self._tracks.get(kind)
        if track is None:
            stream = self._streams.get(kind)
            if stream is None:
                return
            anchor = round((arrived - self._origin) * _CLOCK[kind])
            track = self._tracks[kind] = _Track(stream, anchor, ts)
        packet = av.Packet(data)
        packet.stream = track.stream
        packet.time_base = Fraction(1, _CLOCK[kind])
        packet.pts = packet.dts = track.advance(ts)
        packet.is_keyframe = keyframe
        container.mux(packet)

    def _open(self, first: bytes, arrived: float) -> bool:
        """Create the file for a first frame; False if that frame cannot start one."""
        recording = self._recording
        codec = recording.video_codec
        extradata = None
        size = None
        if codec == "h264":
            sets = h264_parameter_sets(first)
            if sets is None:
                return False  # a keyframe without SPS/PPS: wait for one that has them
            try:
                size = h264_picture_size(sets[0])
            except ValueError as exc:
                log.warning("stream %s: unreadable SPS: %s", recording.stream_id, exc)
                return False
            extradata = b"".join(b"\x00\x00\x00\x01" + unit for unit in sets)
        elif codec == "vp8":
            size = vp8_picture_size(first)
            if size is None:
                return False
        ext = "mkv" if codec == "h264" else "webm"
        path = recording._create_file(ext)
        container = av.open(str(path), "w", format="matroska" if ext == "mkv" else "webm")
        try:
            container.metadata["title"] = f"livecast stream {recording.stream_id}"
            if codec is not None and size is not None:
                video = _remux_stream(container, codec, extradata, size)
                video.time_base = Fraction(1, 90_000)
                self._streams[_VIDEO] = video
            if recording.audio:
                audio = _remux_stream(container, "opus", _OPUS_HEAD, None)
                audio.time_base = Fraction(1, 48_000)
                self._streams[_AUDIO] = audio
        except Exception:
            container.close()
            raise
        self._container = container
        self._origin = arrived
        log.info("stream %s: recording to %s", recording.stream_id, path)
        return True

    def close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.close()
            log.info(
                "stream %s: recording %s finished", self._recording.stream_id, self._recording.name
            )


def _remux_stream(
    container: OutputContainer, codec: str, extradata: bytes | None, size: tuple[int, int] | None
) -> Stream:
    """A stream that takes already-encoded packets, with the codec's extradata.

    ``add_mux_stream`` cannot carry extradata, so the stream is copied from a template
    made in a scratch container. A stream made from a template never has its codec
    opened: size and extradata go to the muxer as set, and no encoder runs.
    """
    scratch = av.open(io.BytesIO(), "w", format="matroska")
    try:
        template = scratch.add_stream(codec)
        stream: Stream = container.add_stream_from_template(template, opaque=True)
    finally:
        scratch.close()
    context = stream.codec_context
    if extradata is not None:
        context.extradata = extradata
    if size is not None:
        assert isinstance(context, VideoCodecContext)
        context.width, context.height = size
    return stream


class Recorder:
    """This node's recordings, one writer per stream it records; owned by the app."""

    def __init__(self, root: Path, *, enabled: bool) -> None:
        self.root = root
        self.enabled = enabled
        self._active: dict[str, Recording] = {}  # stream id -> the file being written
        self._writers: list[Recording] = []  # not yet joined
        self._durations: dict[Path, tuple[int, int, float | None]] = {}

    def directory(self, stream_id: str) -> Path:
        if not is_stream_id(stream_id):
            raise NotFound("no such stream", code=ErrorCode.STREAM_NOT_FOUND)
        return self.root / stream_id

    # -- fed by the media hub ----------------------------------------------------------

    def record(self, stream_id: str, video: MediaSource, audio: MediaSource) -> None:
        """A publisher feeds ``video`` and ``audio`` (their codecs are set): record it,
        continuing the stream's current file when that file can take this media."""
        self._reap()
        current = self._active.get(stream_id)
        has_audio = audio.codec is not None
        if current is not None:
            if current.accepts(video.codec, has_audio):
                current.publisher_changed()
                return
            current.finish()
            del self._active[stream_id]
        if not self.enabled or (video.codec is None and not has_audio):
            return
        recording = Recording(self.directory(stream_id), stream_id, video.codec, has_audio)
        recording.start(video, audio)
        self._active[stream_id] = recording
        self._writers.append(recording)

    def finish(self, stream_id: str) -> None:
        """The stream's media ended on this node: finalize its file."""
        recording = self._active.pop(stream_id, None)
        if recording is not None:
            recording.finish()

    def _reap(self) -> None:
        for recording in [r for r in self._writers if r.done]:
            recording.join(0)
            self._writers.remove(recording)

    async def close(self) -> None:
        """Finalize every file and join every writer (app shutdown)."""
        for stream_id in list(self._active):
            self.finish(stream_id)
        writers, self._writers = self._writers, []
        for recording in writers:
            if not await asyncio.to_thread(recording.join, _JOIN_TIMEOUT_S):
                log.error("stream %s: recording writer did not stop", recording.stream_id)

    # -- read by the API ---------------------------------------------------------------

    async def files(self, stream_id: str) -> list[RecordingFile]:
        """The stream's recorded files on this node, oldest first."""
        directory = self.directory(stream_id)
        self._reap()
        # finished ones too, until their writer wrote the trailer and stopped
        writing = {r.name for r in self._writers if r.stream_id == stream_id and not r.done}
        return await asyncio.to_thread(self._list, directory, writing)

    def _list(self, directory: Path, writing: set[str | None]) -> list[RecordingFile]:
        try:
            names = sorted(p.name for p in directory.iterdir() if _NAME.fullmatch(p.name))
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("recordings in %s cannot be listed: %s", directory, exc)
            return []
        listed = []
        for name in names:
            path = directory / name
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            recording = name in writing
            duration = None if recording else self._duration(path, stat.st_size, stat.st_mtime_ns)
            listed.append(RecordingFile(name, stat.st_size, duration, _started_at(name), recording))
        return listed

    def _duration(self, path: Path, size: int, mtime_ns: int) -> float | None:
        cached = self._durations.get(path)
        if cached is not None and cached[:2] == (size, mtime_ns):
            return cached[2]
        duration = None
        try:
            with av.open(str(path)) as container:
                if container.duration is not None:
                    duration = round(container.duration / 1_000_000, 3)
        except (av.FFmpegError, OSError) as exc:
            log.info("recording %s: no duration: %s", path, exc)
        self._durations[path] = (size, mtime_ns, duration)
        return duration

    def file(self, stream_id: str, name: str) -> Path:
        """The path of one recorded file; 400 for a name no recording has, 404 if absent."""
        if not _NAME.fullmatch(name):
            raise BadRequest("not a recording name", code=ErrorCode.INVALID_RECORDING_NAME)
        directory = self.directory(stream_id)
        path = directory / name
        if path.parent != directory or not path.is_file():
            raise NotFound("no such recording", code=ErrorCode.RECORDING_NOT_FOUND)
        return path


def _started_at(name: str) -> str:
    match = _NAME.fullmatch(name)
    assert match is not None
    moment = dt.datetime.strptime(match["start"], "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def content_type(name: str) -> str:
    """The media type of a recording, by its name."""
    return _MIME[name.rsplit(".", 1)[1]]
