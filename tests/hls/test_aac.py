"""The Opus-to-AAC encoder, on the caller's thread and in a thread of its own."""

from __future__ import annotations

import asyncio

from livecast.hls._aac import AacEncoder, AacFrame, AacThread
from tests.hls.media import opus_frames
from tests.ingest.conftest import eventually


async def test_the_thread_gives_what_the_encoder_gives_in_order_with_its_times() -> None:
    frames = opus_frames(3.0)
    # a publisher that came back: the timeline jumps a second ahead halfway
    times = [960 * i + (48_000 if i >= len(frames) // 2 else 0) for i in range(len(frames))]
    inline = AacEncoder()
    expected: list[AacFrame] = []
    for frame, time in zip(frames, times, strict=True):
        expected.extend(inline.encode(frame.data, time))

    delivered: list[AacFrame] = []
    on_loop: list[bool] = []
    loop = asyncio.get_running_loop()

    def deliver(out: list[AacFrame]) -> None:
        on_loop.append(asyncio.get_running_loop() is loop)
        delivered.extend(out)

    worker = AacThread(deliver, "test")
    assert worker.audio_specific_config == inline.audio_specific_config
    for frame, time in zip(frames, times, strict=True):
        worker.push(frame.data, time)
    worker.close()
    assert await asyncio.to_thread(worker.join, 10.0)
    await eventually(lambda: len(delivered) >= len(expected), within=5.0)
    assert delivered == expected
    assert all(on_loop)
    starts = [time for time, _ in delivered]
    assert starts == sorted(starts)
    assert starts[-1] - starts[0] >= 3 * 48_000  # the jump is kept
