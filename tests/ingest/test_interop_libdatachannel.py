"""OBS's WebRTC stack goes live and stays live.

libdatachannel (through ``node-datachannel``, pinned in ``interop/package-lock.json``) is
set up as OBS's WHIP output is (``interop/obs-whip-publish.mjs``) and publishes H.264
(baseline, no B-frames, a keyframe every 2 s) plus Opus at 30 fps for 46 s, past the
30 s consent window, while an aiortc viewer decodes every frame it gets. The frames
carry a counter, so the viewer can tell lost and reordered frames from late ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import pytest

from livecast.bench._publishers import (
    NODE_PUBLISHER,
    encode_h264,
    encode_opus,
    install_node_publisher,
    write_media_file,
)
from tests.conftest import Client
from tests.ingest.conftest import SellerStream, eventually
from tests.ingest.peers import draw_counter, in_order, view

PUBLISH_S = 46
FPS = 30
WIDTH, HEIGHT = 320, 192
# the session must still be up this long after the publisher's POST
SURVIVES_S = 35
WINDOW_FRAMES = 5 * FPS

pytestmark = pytest.mark.timeout(110)


def counter_picture(index: int, noise: bytes) -> av.VideoFrame:
    """The counter pattern, plus a band of moving noise along the top of each row of
    counter blocks (away from the block centres the counter is read at), so that the
    encoder produces frames of a real camera's size, fragmented over several packets."""
    frame = draw_counter(index).reformat(width=WIDTH, height=HEIGHT)
    plane = frame.planes[0]
    stride = plane.line_size
    luma = bytearray(bytes(plane))
    for top in (0, HEIGHT // 2):
        for row in range(top, top + HEIGHT // 12):
            start = (index * 131 + row * WIDTH) % (len(noise) - WIDTH)
            luma[row * stride : row * stride + WIDTH] = noise[start : start + WIDTH]
    plane.update(bytes(luma))
    return frame


def write_counter_clip(path: Path, seconds: int) -> None:
    noise = os.urandom(WIDTH * HEIGHT)
    frames = (counter_picture(i, noise) for i in range(seconds * FPS))
    video = encode_h264(frames, width=WIDTH, height=HEIGHT, fps=FPS, keyframe_interval_s=2.0)
    write_media_file(path, video, encode_opus(seconds), fps=FPS)


@dataclass
class NodePublisher:
    process: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: bytearray = field(default_factory=bytearray)

    def event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["event"] == name), None)

    def states(self) -> list[str]:
        return [e["state"] for e in self.events if e["event"] == "state"]


@pytest.fixture(scope="module")
def node() -> Path:
    return install_node_publisher()


@contextlib.asynccontextmanager
async def obs_publisher(
    node: Path, url: str, token: str, media: Path
) -> AsyncIterator[NodePublisher]:
    process = await asyncio.create_subprocess_exec(
        str(node), str(NODE_PUBLISHER), "--url", url, "--token", token,
        "--media", str(media), "--seconds", str(PUBLISH_S),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    publisher = NodePublisher(process)

    async def read_events() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
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


async def test_obs_stack_stays_live_past_the_consent_window_while_a_viewer_decodes(
    client: Client, stream: SellerStream, node: Path, tmp_path: Path
) -> None:
    media = tmp_path / "clip.media"
    await asyncio.to_thread(write_counter_clip, media, PUBLISH_S + 1)
    url = str(client.make_url(f"/whip/{stream.id}"))
    loop = asyncio.get_running_loop()

    async def media_state() -> dict[str, Any]:
        resp = await client.get(f"/api/streams/{stream.id}/media")
        status: dict[str, Any] = await resp.json()
        return status

    async with obs_publisher(node, url, stream.seller_token, media) as publisher:
        await eventually(lambda: publisher.event("answered") is not None, within=15)
        posted_at = loop.time()
        answered = publisher.event("answered")
        assert answered is not None
        assert answered["video_codec"] == "h264"

        viewer = await view(client, stream.id)
        try:
            await viewer.frames(1, within=10)
            first_frame_s = loop.time() - posted_at
            # frames keep coming, window after window, until past the consent window
            rates: list[float] = []
            while loop.time() - posted_at < SURVIVES_S + 5:
                start = loop.time()
                await viewer.frames(len(viewer.counters) + WINDOW_FRAMES, within=10)
                rates.append(WINDOW_FRAMES / (loop.time() - start))
            status = await media_state()
            assert status["state"] == "live", status
            assert status["publishing"] is True
            assert not {"failed", "disconnected"} & set(publisher.states()), publisher.states()
            counters = list(viewer.counters)
            audio_frames = viewer.audio_frames
        finally:
            await viewer.close()

        assert publisher.process.returncode is None, publisher.stderr.decode()
        await asyncio.wait_for(publisher.process.wait(), PUBLISH_S + 20)

    done = publisher.event("done")
    assert done is not None, publisher.stderr.decode()[-2000:]
    assert done["delete_status"] == 200, done
    assert done["ok"], done
    assert publisher.process.returncode == 0

    seconds = sum(WINDOW_FRAMES / rate for rate in rates)
    fps = len(rates) * WINDOW_FRAMES / seconds
    assert fps >= 25, f"{fps:.1f} fps over {seconds:.0f} s; windows {rates}"
    assert min(rates) >= 15, rates
    assert in_order(counters), "frames reordered or repeated"
    missing = counters[-1] - counters[0] + 1 - len(counters)
    assert missing <= len(counters) // 100, f"{missing} of {len(counters)} frames lost"
    assert audio_frames >= (SURVIVES_S - 5) * 50, audio_frames
    print(
        f"libdatachannel {done['library']}: {len(counters)} frames, {fps:.1f} fps, "
        f"{missing} lost, first frame {first_frame_s:.2f} s after the POST"
    )
