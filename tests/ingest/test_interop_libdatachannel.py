"""OBS's WebRTC stack goes live and stays live.

libdatachannel (through ``node-datachannel``, pinned in ``interop/package-lock.json``) is
set up as OBS's WHIP output is (``interop/obs-whip-publish.mjs``) and publishes H.264
(baseline, no B-frames, a keyframe every 2 s) plus Opus at 30 fps for 46 s, past the
30 s consent window, while an aiortc viewer decodes every frame it gets. The frames
carry a counter, so the viewer can tell lost and reordered frames from late ones.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import av
import pytest

from livecast.bench._publishers import (
    NODE_PUBLISHER,
    encode_h264,
    encode_opus,
    install_node_publisher,
    write_media_file,
)
from livecast.config import Settings
from tests.conftest import Client
from tests.ingest.conftest import SellerStream
from tests.ingest.peers import draw_counter, in_order
from tests.ingest.thirdparty import FPS, SURVIVES_S, publish_and_watch, tolerating_stalls

PUBLISH_S = 46
WIDTH, HEIGHT = 320, 192

pytestmark = pytest.mark.timeout(110)


def counter_picture(index: int, noise: bytes) -> av.VideoFrame:
    """The counter pattern, plus a band of moving noise along the top of each row of
    counter blocks (away from the block centres the counter is read at), so that the
    encoder makes frames of a real camera's size, fragmented over several packets."""
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


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return tolerating_stalls(settings)


@pytest.fixture(scope="module")
def node() -> Path:
    return install_node_publisher()


async def test_obs_stack_stays_live_past_the_consent_window_while_a_viewer_decodes(
    client: Client, stream: SellerStream, node: Path, tmp_path: Path
) -> None:
    media = tmp_path / "clip.media"
    await asyncio.to_thread(write_counter_clip, media, PUBLISH_S + 1)
    command = [
        str(node), str(NODE_PUBLISHER), "--url", str(client.make_url(f"/whip/{stream.id}")),
        "--token", stream.seller_token, "--media", str(media), "--seconds", str(PUBLISH_S),
    ]  # fmt: skip
    run = await publish_and_watch(client, stream.id, command, PUBLISH_S)
    publisher, done, watched = run.publisher, run.done, run.watched
    counters = run.counters

    assert done["delete_status"] == 200, publisher.output()
    assert done["ok"], publisher.output()
    assert publisher.process.returncode == 0
    assert watched.fps >= 25, watched
    assert min(watched.rates) >= 15, watched
    assert in_order(counters), "frames reordered or repeated"
    missing = counters[-1] - counters[0] + 1 - len(counters)
    assert missing <= len(counters) // 100, f"{missing} of {len(counters)} frames lost"
    assert run.audio_frames >= (SURVIVES_S - 5) * 50, run.audio_frames
    print(
        f"libdatachannel {done['library']}: {len(counters)} frames, {watched.fps:.1f} fps, "
        f"{missing} lost, first frame {watched.first_frame_s:.2f} s after the answer"
    )
