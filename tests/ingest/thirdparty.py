"""Third-party publishers for the interop tests: a script in ``interop/`` run as a
process that prints one JSON event per line, and what a viewer must see meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from livecast.config import Settings
from tests.conftest import Client
from tests.ingest.conftest import eventually
from tests.ingest.peers import Viewer, view

FPS = 30
# frames per measured window: 5 s at the publisher's rate
WINDOW_FRAMES = 5 * FPS
# the session must still be up this long after the publisher's POST (consent lasts 30 s)
SURVIVES_S = 35


# A publisher in another process may stall this long on a loaded box; the interop tests
# close a publisher as quiet only past it.
PUBLISHER_STALE_S = 5.0


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
