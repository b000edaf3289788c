"""The studio's device pickers, in a Chromium with more than one fake camera: switching the
camera or the microphone while live swaps the tracks on the same WHIP session, and viewers
keep getting video."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from livecast.ingest.keys import MEDIA
from livecast.ingest.media import StreamMedia
from tests.ingest.conftest import eventually
from tests.web.conftest import PAGE_ARGS, PHONE, LiveServer, NewContext, chromium
from tests.web.test_flow import _go_live, _open, _sees_moving_video, _seller_stream

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

FAKE_DEVICES = "--use-fake-device-for-media-stream"
# Chromium's fake cameras: fake_device_0 gives I420 frames, fake_device_1 Y16 depth frames
# (no video encoder takes those, so it is not a camera a seller would pick), fake_device_2
# MJPEG, as many webcams do.
CAMERAS = [f"{FAKE_DEVICES}=device-count=3" if a == FAKE_DEVICES else a for a in PAGE_ARGS]
WEBCAM = "fake_device_2"
DEPTH_CAMERA = "fake_device_1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """This module's Chromium: as the other pages' one, with three cameras."""
    async with chromium(CAMERAS) as launched:
        yield launched


async def _switch(studio: Page, picker: str, kind: str, label: str | None = None) -> None:
    """Pick the device called ``label`` in ``picker`` (or any device not in use); wait until
    the preview has it."""
    current = await studio.locator(picker).input_value()
    options = [
        (await o.get_attribute("value"), await o.text_content())
        for o in await studio.locator(f"{picker} option").all()
    ]
    wanted = [v for v, text in options if v and v != current and label in (None, text)]
    assert wanted, f"no other {kind} device to pick: {options}"
    await studio.select_option(picker, value=wanted[0])
    await studio.wait_for_function(
        """([kind, id]) => {
            const tracks = document.querySelector('#preview').srcObject.getTracks();
            return tracks.some((t) => t.kind === kind && t.getSettings().deviceId === id);
        }""",
        arg=[kind, wanted[0]],
    )


async def _keeps_receiving(media: StreamMedia, kind: str, frames: int) -> None:
    """Wait until the relay has taken ``frames`` more frames of ``kind`` from the publisher."""
    before = media.sources[kind].frames_in
    await eventually(lambda: media.sources[kind].frames_in > before + frames, within=10)


async def test_switching_camera_and_microphone_while_live_keeps_the_session(
    server: LiveServer, new_context: NewContext
) -> None:
    stream_id, seller = await _seller_stream(server)
    studio = await _go_live(server, new_context, stream_id, seller)
    media = server.app[MEDIA].streams[stream_id]
    session = media.publisher
    assert session is not None
    watch = await _open(await new_context(PHONE), f"{server.base_url}/watch/{stream_id}")
    await _sees_moving_video(watch)
    await expect(studio.locator("#camera option")).to_have_count(3)

    await _switch(studio, "#camera", "video", WEBCAM)
    # the old camera's track is stopped: only frames from the new one can arrive now
    await _keeps_receiving(media, "video", 30)
    await _sees_moving_video(watch)

    await _switch(studio, "#microphone", "audio")
    await _keeps_receiving(media, "audio", 25)

    assert media.publisher is session  # the same WHIP session throughout, never a new one
    await expect(studio.locator("#state-pill")).to_have_text("Live")
    await _sees_moving_video(watch)
    await expect(studio.locator("#video-warning")).to_be_hidden()


async def test_a_camera_whose_picture_cannot_be_sent_is_flagged_while_live(
    server: LiveServer, new_context: NewContext
) -> None:
    stream_id, seller = await _seller_stream(server)
    studio = await _go_live(server, new_context, stream_id, seller)
    warning = studio.locator("#video-warning")
    await expect(studio.locator("#stat-bitrate")).to_have_text(re.compile(r"bit/s$"))
    await expect(warning).to_be_hidden()

    await _switch(studio, "#camera", "video", DEPTH_CAMERA)  # Y16 frames: nothing encodes them
    await expect(warning).to_be_visible(timeout=15_000)
    await expect(warning).to_contain_text("Pick another camera")
    await expect(studio.locator("body[data-video-out=stalled]")).to_have_count(1)

    await _switch(studio, "#camera", "video", WEBCAM)
    await expect(warning).to_be_hidden(timeout=15_000)
    await _keeps_receiving(server.app[MEDIA].streams[stream_id], "video", 30)
