"""Two nodes on one Redis, in Chromium: a studio opened on a node that does not hold the
stream's broadcast moves to the node that does, and goes live there."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from livecast.auth import Role
from livecast.config import Settings
from livecast.ingest.keys import MEDIA
from livecast.ingest.media import MediaState
from tests.ingest.conftest import eventually
from tests.web.conftest import DESKTOP, NewContext, drop_keys, serving
from tests.web.test_flow import _go_live, _open

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


# Two servers, two pages, a go-live on each node: its own waits add up to more than the
# suite's 60 s, so a slow step fails with its own message rather than the suite's timeout.
@pytest.mark.timeout(120)
async def test_a_studio_on_another_node_moves_to_the_broadcasting_node(
    settings: Settings, new_context: NewContext
) -> None:
    try:
        async with serving(settings) as node_a, serving(settings) as node_b:
            seller = node_a.token(Role.SELLER, sub="nodes-seller", name="Ana")
            stream_id = (await node_a.create_stream(seller, "Two-node drop"))["id"]
            first = await _go_live(node_a, new_context, stream_id, seller)
            # The tab goes (pagehide ends the WHIP session); node A holds the broadcast for
            # the seller's return, and the seller comes back through node B.
            await first.goto("about:blank")
            hub_a = node_a.app[MEDIA]
            await eventually(
                lambda: hub_a.streams[stream_id].state == MediaState.RECONNECTING, within=10
            )
            studio = await _open(
                await new_context(DESKTOP), f"{node_b.base_url}/studio/{stream_id}#token={seller}"
            )
            await studio.wait_for_function("() => document.querySelector('#preview').videoWidth")
            await studio.click("#go-live")

            await studio.wait_for_url(f"{node_a.base_url}/studio/{stream_id}", timeout=10_000)
            await expect(studio.locator("#state-pill")).to_have_text("Live", timeout=20_000)
            assert "token=" not in studio.url
            assert hub_a.streams[stream_id].publisher is not None
            assert stream_id in hub_a.origins.claimed
            assert stream_id not in node_b.app[MEDIA].origins.claimed
            assert stream_id not in node_b.app[MEDIA].streams
    finally:
        await drop_keys(settings)
