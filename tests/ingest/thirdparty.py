"""Third-party publishers for the interop tests: finding or installing each one, a script
in ``interop/`` run as a process that prints one JSON event per line, and what a viewer
must see meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from livecast.bench._publishers import encode_h264, encode_opus, write_media_file
from livecast.config import Settings
from tests.conftest import Client
from tests.ingest.conftest import eventually
from tests.ingest.peers import Viewer, draw_counter, view

HERE = Path(__file__).parent
ARTIFACTS = HERE.parent / "_artifacts"
PYAV19_CONSTRAINTS = HERE / "pyav19-constraints.txt"
SYSTEM_PYTHON = "/usr/bin/python3"
# what interop/gst_whip_publish.py needs of GStreamer and PyGObject
GSTREAMER_ELEMENTS = (
    "webrtcbin", "nicesrc", "dtlssrtpenc", "x264enc", "opusenc", "rtph264pay", "rtpopuspay",
)  # fmt: skip
CLIP_WIDTH, CLIP_HEIGHT = 320, 192

FPS = 30
# frames per measured window: 5 s at the publisher's rate
WINDOW_FRAMES = 5 * FPS
# the session must still be up this long after the publisher's POST (consent lasts 30 s)
SURVIVES_S = 35


# A publisher in another process may stall this long on a loaded box; the interop tests
# close a publisher as quiet only past it.
PUBLISHER_STALE_S = 5.0


def _python312() -> str | None:
    """``LIVECAST_TEST_PYTHON312``, else pyenv's newest 3.12, else one on PATH that runs
    (a pyenv shim on PATH may name a version that is not installed)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [
        os.environ.get("LIVECAST_TEST_PYTHON312"),
        *reversed([str(p) for p in sorted(pyenv.glob("versions/3.12*/bin/python3.12"))]),
        shutil.which("python3.12"),
    ]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    return None


def pyav19_python() -> str | None:
    """The interpreter of a Python 3.12 venv with the PyAV pinned in
    ``pyav19-constraints.txt`` (FFmpeg 9), made once per pin under
    ``tests/_artifacts/venvs/`` and reused afterwards; None without a Python 3.12."""
    python = _python312()
    if python is None:
        return None
    pin = hashlib.sha256(PYAV19_CONSTRAINTS.read_bytes()).hexdigest()[:12]
    venv = ARTIFACTS / "venvs" / f"pyav19-{pin}"
    venv_python = venv / "bin" / "python"
    if venv_python.exists():
        return str(venv_python)
    building = venv.with_name(f"{venv.name}.{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(building)], check=True, timeout=120)
    subprocess.run(
        [str(building / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "-c", str(PYAV19_CONSTRAINTS), "av"],
        check=True, timeout=600,
    )  # fmt: skip
    try:
        building.rename(venv)  # a parallel run may have won: then use its venv
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
    return str(venv_python)


def gstreamer_python() -> str:
    """The system Python, after checking it has GStreamer's WebRTC stack; AssertionError
    naming what is missing otherwise (``.ci/run`` installs Debian's packages)."""
    check = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0');"
        "gi.require_version('GstSdp', '1.0'); from gi.repository import Gst, GstWebRTC, GstSdp;"
        f"Gst.init(None); print(' '.join(e for e in {GSTREAMER_ELEMENTS!r} "
        "if Gst.ElementFactory.find(e) is None))"
    )
    python = shutil.which(SYSTEM_PYTHON)
    assert python is not None, f"{SYSTEM_PYTHON} is missing"
    result = subprocess.run(
        [python, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"no PyGObject/GStreamer for {python}: {result.stderr[-1000:]}"
    assert not result.stdout.strip(), f"GStreamer elements missing: {result.stdout.strip()}"
    return python


def counter_picture(index: int, noise: bytes) -> av.VideoFrame:
    """The counter pattern, plus a band of moving noise along the top of each row of
    counter blocks (away from the block centres the counter is read at), so that the
    encoder makes frames of a real camera's size, fragmented over several packets."""
    frame = draw_counter(index).reformat(width=CLIP_WIDTH, height=CLIP_HEIGHT)
    plane = frame.planes[0]
    stride = plane.line_size
    luma = bytearray(bytes(plane))
    for top in (0, CLIP_HEIGHT // 2):
        for row in range(top, top + CLIP_HEIGHT // 12):
            start = (index * 131 + row * CLIP_WIDTH) % (len(noise) - CLIP_WIDTH)
            luma[row * stride : row * stride + CLIP_WIDTH] = noise[start : start + CLIP_WIDTH]
    plane.update(bytes(luma))
    return frame


def write_counter_clip(path: Path, seconds: int) -> None:
    """The Node publisher's media file: :func:`counter_picture` frames at :data:`FPS`
    (H.264, a keyframe every 2 s) and Opus, for ``seconds``."""
    noise = os.urandom(CLIP_WIDTH * CLIP_HEIGHT)
    frames = (counter_picture(i, noise) for i in range(seconds * FPS))
    video = encode_h264(
        frames, width=CLIP_WIDTH, height=CLIP_HEIGHT, fps=FPS, keyframe_interval_s=2.0
    )
    write_media_file(path, video, encode_opus(seconds), fps=FPS)


def tolerating_stalls(settings: Settings) -> Settings:
    """The ingest tests' settings, but a publisher is closed as quiet only after
    :data:`PUBLISHER_STALE_S`, past the longest pause an interop row allows."""
    webrtc = dataclasses.replace(settings.webrtc, publisher_stale_s=PUBLISHER_STALE_S)
    return dataclasses.replace(settings, webrtc=webrtc)


@dataclass
class ScriptPublisher:
    process: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: bytearray = field(default_factory=bytearray)

    def event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["event"] == name), None)

    def states(self) -> list[str]:
        return [e["state"] for e in self.events if e["event"] == "state"]

    def output(self) -> str:
        lines = [json.dumps(e) for e in self.events]
        return "\n".join([*lines, self.stderr.decode(errors="replace")])[-4000:]

    async def finished(self, within: float) -> dict[str, Any]:
        """Wait for the process to end; its ``done`` event."""
        await asyncio.wait_for(self.process.wait(), within)
        done = self.event("done")
        assert done is not None, self.output()
        return done


@contextlib.asynccontextmanager
async def run_publisher(*command: str) -> AsyncIterator[ScriptPublisher]:
    """Run a publisher script; killed on the way out if it still runs."""
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    publisher = ScriptPublisher(process)

    async def read_events() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            with contextlib.suppress(ValueError):
                publisher.events.append(json.loads(line))

    async def read_stderr() -> None:
        assert process.stderr is not None
        publisher.stderr.extend(await process.stderr.read())

    readers = [asyncio.ensure_future(read_events()), asyncio.ensure_future(read_stderr())]
    try:
        yield publisher
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()
        await asyncio.gather(*readers, return_exceptions=True)


@dataclass(frozen=True)
class Watched:
    first_frame_s: float  # from the publisher's answer to the viewer's first decoded frame
    rates: tuple[float, ...]  # frames per second in each window of WINDOW_FRAMES

    @property
    def fps(self) -> float:
        return len(self.rates) * WINDOW_FRAMES / sum(WINDOW_FRAMES / rate for rate in self.rates)


async def watch_past_consent(
    client: Client,
    stream_id: str,
    viewer: Viewer,
    publisher: ScriptPublisher,
    answered_at: float,
) -> Watched:
    """Let ``viewer`` decode until past :data:`SURVIVES_S` after the publisher's answer,
    window after window of :data:`WINDOW_FRAMES` frames (each within 10 s); then the
    stream must be live with its publisher, which never saw its connection fail."""
    loop = asyncio.get_running_loop()

    async def frames(count: int) -> None:
        try:
            await viewer.frames(count, within=10)
        except TimeoutError:
            raise AssertionError(
                f"{len(viewer.counters)} frames {loop.time() - answered_at:.1f} s after the "
                f"answer, {count} expected; the publisher said:\n{publisher.output()}"
            ) from None

    await frames(1)
    first_frame_s = loop.time() - answered_at
    rates: list[float] = []
    while loop.time() - answered_at < SURVIVES_S + 5:
        start = loop.time()
        await frames(len(viewer.counters) + WINDOW_FRAMES)
        rates.append(WINDOW_FRAMES / (loop.time() - start))
    resp = await client.get(f"/api/streams/{stream_id}/media")
    status = await resp.json()
    assert status["state"] == "live", status
    assert status["publishing"] is True, status
    assert publisher.process.returncode is None, publisher.output()
    assert not {"failed", "disconnected"} & set(publisher.states()), publisher.output()
    return Watched(first_frame_s, tuple(rates))


async def answered(publisher: ScriptPublisher) -> float:
    """Wait for the publisher's ``answered`` event (or its end); the loop time then."""

    def ready() -> bool:
        return publisher.event("answered") is not None or publisher.process.returncode is not None

    await eventually(ready, within=20)
    assert publisher.event("answered") is not None, publisher.output()
    return asyncio.get_running_loop().time()


@dataclass(frozen=True)
class Published:
    """What a viewer saw of a publisher script's whole run, and how the script ended."""

    publisher: ScriptPublisher
    done: dict[str, Any]  # the script's ``done`` event
    watched: Watched
    counters: list[int]  # the viewer's frames' counters, in the order it decoded them
    audio_frames: int


async def publish_and_watch(
    client: Client, stream_id: str, command: list[str], publish_s: float
) -> Published:
    """Run the publisher ``command``; once it has its answer, an aiortc viewer decodes
    until past the consent window (:func:`watch_past_consent`); then the script must
    end, within 20 s of its ``publish_s``."""
    async with run_publisher(*command) as publisher:
        answered_at = await answered(publisher)
        viewer = await view(client, stream_id)
        try:
            watched = await watch_past_consent(client, stream_id, viewer, publisher, answered_at)
            counters = list(viewer.counters)
            audio_frames = viewer.audio_frames
        finally:
            await viewer.close()
        done = await publisher.finished(within=publish_s + 20)
    return Published(publisher, done, watched, counters, audio_frames)
