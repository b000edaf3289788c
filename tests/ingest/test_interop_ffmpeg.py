"""Interop rows for FFmpeg's ``whip`` muxer: each publishes for 48 s, past the 30 s ICE
consent window, while a real aiortc WHEP viewer decodes every frame.

Two rows: FFmpeg 8.1 inside PyAV 18 (the project's own venv) and FFmpeg 9 inside PyAV 19,
which needs Python 3.12: the test makes a 3.12 venv with the PyAV pinned in
``pyav19-constraints.txt`` once, under ``tests/_artifacts/venvs/`` (ignored by git), and
reuses it while the pin is unchanged. The publisher runs in a subprocess
(``whip_muxer_publisher.py``), so either PyAV drives it.

Each row writes its numbers (frames, fps, first-frame time, session duration) to
``tests/_artifacts/interop/`` and prints them. A short publish per FFmpeg checks the
other DTLS role too (FFmpeg as DTLS client, ``whip_flags=dtls_active``).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from livecast.config import Settings
from livecast.ingest.keys import MEDIA
from tests.conftest import Client
from tests.ingest.conftest import SellerStream, eventually
from tests.ingest.peers import Viewer, in_order, view
from tests.ingest.thirdparty import tolerating_stalls

HERE = Path(__file__).parent
ARTIFACTS = HERE.parent / "_artifacts"
PUBLISHER_SCRIPT = HERE / "whip_muxer_publisher.py"
PYAV19_CONSTRAINTS = HERE / "pyav19-constraints.txt"

PUBLISH_S = 48.0  # frames flow for 45 s and more
ROLE_PUBLISH_S = 5.0  # the other DTLS role: a short publish is enough
CHECK_UNTIL_S = 45.0  # after the first frame
WINDOW_S = 5.0
FPS = 30
MIN_WINDOW_SHARE = 0.5  # every 5 s window brings at least half of its 150 frames
MAX_GAP_S = 2.5  # and no pause longer than this (a loaded CI box stalls ~1 s at times)
FIRST_FRAME_WITHIN_S = 10.0  # from launching the publisher


@dataclass(frozen=True)
class Row:
    publisher: str
    ffmpeg: str
    frames: int
    fps: float
    first_frame_s: float
    longest_gap_s: float
    fewest_frames_in_5s: int
    session_s: float


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return tolerating_stalls(settings)


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


def _pyav19_venv() -> str:
    """The 3.12 venv with the pinned PyAV: made once per pin, reused afterwards."""
    python = _python312()
    if python is None:
        pytest.skip("PyAV 19 needs Python 3.12: set LIVECAST_TEST_PYTHON312 or install it")
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


@pytest.fixture(params=["pyav18", "pyav19"])
def publisher_python(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(row name, interpreter with a PyAV) for each FFmpeg in the matrix."""
    if request.param == "pyav18":
        yield "FFmpeg 8.1 whip muxer (PyAV 18, project venv)", sys.executable
    else:
        yield "FFmpeg 9 whip muxer (PyAV 19, Python 3.12 venv)", _pyav19_venv()


def _windows(arrivals: list[float], start: float, until: float) -> list[int]:
    counts = [0] * int((until - start) // WINDOW_S)
    for at in arrivals:
        index = int((at - start) // WINDOW_S)
        if 0 <= index < len(counts):
            counts[index] += 1
    return counts


def _longest_gap(arrivals: list[float], until: float) -> float:
    inside = [at for at in arrivals if at <= until]
    return max((b - a for a, b in itertools.pairwise(inside)), default=0.0)


Output = asyncio.Future[tuple[bytes, bytes]]


async def _launch(
    python: str, client: Client, stream: SellerStream, seconds: float, *flags: str
) -> tuple[asyncio.subprocess.Process, Output]:
    """Start the publisher; its (stdout, stderr) once it has exited."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    process = await asyncio.create_subprocess_exec(
        python, str(PUBLISHER_SCRIPT), str(client.make_url(f"/whip/{stream.id}")),
        stream.seller_token, str(seconds), *flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    return process, asyncio.ensure_future(process.communicate())


async def _first_frame(viewer: Viewer, output: Output, row_name: str) -> None:
    try:
        await viewer.frames(1, within=FIRST_FRAME_WITHIN_S)
    except TimeoutError:
        await asyncio.wait([output], timeout=5)
        said = output.result()[1].decode(errors="replace") if output.done() else ""
        raise AssertionError(f"{row_name}: no frame; the publisher said:\n{said}") from None


async def _stop(process: asyncio.subprocess.Process, output: Output, viewer: Viewer) -> None:
    if process.returncode is None:
        process.kill()
        await output
    await viewer.close()


@pytest.mark.timeout(240)
async def test_ffmpeg_whip_muxer_publishes_past_the_consent_window(
    client: Client, stream: SellerStream, publisher_python: tuple[str, str]
) -> None:
    row_name, python = publisher_python
    loop = asyncio.get_running_loop()
    hub = client.app[MEDIA]
    viewer: Viewer = await view(client, stream.id)  # watching before the publisher starts
    launched = loop.time()
    process, output = await _launch(python, client, stream, PUBLISH_S)
    try:
        await _first_frame(viewer, output, row_name)
        first = viewer.arrivals[0]
        session = hub.streams[stream.id].publisher
        assert session is not None

        # frames keep coming until 45 s after the first one, the session the same
        await viewer.until(lambda: viewer.arrivals[-1] - first >= CHECK_UNTIL_S, within=60)
        assert process.returncode is None, "the publisher stopped early"
        assert hub.streams[stream.id].publisher is session
        assert not session.closed
        assert session.pc.connectionState == "connected"
        media = await (await client.get(f"/api/streams/{stream.id}/media")).json()
        assert media["state"] == "live"

        stdout, stderr = await asyncio.wait_for(output, timeout=30)
        assert process.returncode == 0, stderr.decode(errors="replace")
        report = json.loads(stdout.decode().strip().splitlines()[-1])
        await eventually(lambda: session.closed, within=10)  # the muxer's DELETE
        session_s = time.monotonic() - session.created_at
    finally:
        await _stop(process, output, viewer)

    until = first + CHECK_UNTIL_S
    windows = _windows(viewer.arrivals, first, until)
    decoded = [at for at in viewer.arrivals if at <= until]
    row = Row(
        publisher=row_name,
        ffmpeg=str(report["ffmpeg"]),
        frames=len(viewer.arrivals),
        fps=round((len(decoded) - 1) / (decoded[-1] - decoded[0]), 1),
        first_frame_s=round(first - launched, 2),
        longest_gap_s=round(_longest_gap(viewer.arrivals, until), 2),
        fewest_frames_in_5s=min(windows),
        session_s=round(session_s, 1),
    )
    out = ARTIFACTS / "interop"
    out.mkdir(parents=True, exist_ok=True)
    slug = "ffmpeg-" + row.ffmpeg.split(".")[0]
    (out / f"{slug}.json").write_text(json.dumps(asdict(row), indent=2) + "\n")
    print(json.dumps(asdict(row)))

    assert in_order(viewer.counters)
    assert min(windows) >= MIN_WINDOW_SHARE * FPS * WINDOW_S, windows
    assert row.longest_gap_s <= MAX_GAP_S
    assert report["frames_sent"] == int(PUBLISH_S * FPS)


@pytest.mark.timeout(120)
async def test_ffmpeg_whip_muxer_as_dtls_client_publishes_too(
    client: Client,
    stream: SellerStream,
    publisher_python: tuple[str, str],
    request: pytest.FixtureRequest,
) -> None:
    """``whip_flags=dtls_active``: FFmpeg offers ``a=setup:active``, so the server is the
    DTLS server and FFmpeg's certificate is the client's."""
    row_name, python = publisher_python
    if python == sys.executable:
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="FFmpeg 8.1 (GnuTLS) as DTLS client signs with a P-224 key while its "
                "ClientHello offers no P-224; OpenSSL refuses that ('wrong curve')",
            )
        )
    hub = client.app[MEDIA]
    viewer = await view(client, stream.id)
    process, output = await _launch(python, client, stream, ROLE_PUBLISH_S, "--dtls-active")
    try:
        await _first_frame(viewer, output, row_name)
        session = hub.streams[stream.id].publisher
        assert session is not None
        assert session.pc.getTransceivers()[0].receiver.transport._role == "server"
        counters = await viewer.frames(len(viewer.counters) + 2 * FPS, within=10)
        assert in_order(counters)
        _, stderr = await asyncio.wait_for(output, timeout=30)
        assert process.returncode == 0, stderr.decode(errors="replace")
    finally:
        await _stop(process, output, viewer)
