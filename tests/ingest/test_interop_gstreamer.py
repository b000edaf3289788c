"""GStreamer's ``webrtcbin`` goes live and stays live.

Debian 12's GStreamer 1.22 (``.ci/run`` installs it) has no ``whipclientsink``, so
``interop/gst_whip_publish.py``, run by the system Python with PyGObject, is the WHIP
client around ``webrtcbin``: ``videotestsrc`` through ``x264enc`` (constrained
baseline, no B-frames, a keyframe every 2 s) and Opus, for 46 s, past the 30 s consent
window, while an aiortc viewer decodes every frame it gets.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from livecast.config import Settings
from tests.conftest import Client
from tests.ingest.conftest import SellerStream
from tests.ingest.thirdparty import SURVIVES_S, publish_and_watch, tolerating_stalls

PUBLISH_S = 46
SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).parent / "interop" / "gst_whip_publish.py"
# what the script needs of GStreamer and PyGObject
ELEMENTS = ("webrtcbin", "nicesrc", "dtlssrtpenc", "x264enc", "opusenc", "rtph264pay", "rtpopuspay")

pytestmark = pytest.mark.timeout(110)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return tolerating_stalls(settings)


@pytest.fixture(scope="module")
def gstreamer() -> str:
    """The system Python, after checking it has GStreamer's WebRTC stack; without it the
    run fails naming what is missing (``.ci/run`` installs Debian's packages)."""
    check = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0');"
        "gi.require_version('GstSdp', '1.0'); from gi.repository import Gst, GstWebRTC, GstSdp;"
        f"Gst.init(None); print(' '.join(e for e in {ELEMENTS!r} "
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


async def test_webrtcbin_stays_live_past_the_consent_window_while_a_viewer_decodes(
    client: Client, stream: SellerStream, gstreamer: str
) -> None:
    command = [
        gstreamer, str(SCRIPT), "--url", str(client.make_url(f"/whip/{stream.id}")),
        "--token", stream.seller_token, "--seconds", str(PUBLISH_S),
    ]  # fmt: skip
    run = await publish_and_watch(client, stream.id, command, PUBLISH_S)
    publisher, done, watched = run.publisher, run.done, run.watched

    assert done["delete_status"] == 200, publisher.output()
    assert done["ok"], publisher.output()
    assert publisher.process.returncode == 0
    assert watched.fps >= 25, watched
    assert min(watched.rates) >= 15, watched
    assert run.audio_frames >= (SURVIVES_S - 5) * 50, run.audio_frames
    print(
        f"{done['gstreamer']}: {len(run.counters)} frames, {watched.fps:.1f} fps, "
        f"first frame {watched.first_frame_s:.2f} s after the answer"
    )
