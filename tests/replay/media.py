"""A real packager recording into a replay writer: how the replay tests make replays."""

from __future__ import annotations

import asyncio

from livecast.hls.packager import Packager, PackagerSettings
from livecast.replay.store import Replays
from tests.hls.media import h264_frames, opus_frames
from tests.hls.test_packager import feed


async def record_run(
    replays: Replays,
    stream_id: str,
    seconds: float,
    *,
    base: float = 100.0,
) -> Packager:
    """One packaging run of ``seconds`` of real H.264 + Opus (1 s segments, two kept in
    its window), recorded by a writer of ``replays`` as the packaging does; returns once
    it is all written."""
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0, window=2), audio=True)
    writer = replays.writer(stream_id, packager.run)
    packager.attach(writer)
    feed(packager, h264_frames(round(seconds * 30), gop=30), opus_frames(seconds), base=base)
    packager.finish()
    writer.close()
    await asyncio.wait_for(asyncio.shield(writer.done), 20)
    return packager
