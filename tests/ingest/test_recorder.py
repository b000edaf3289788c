"""Recording for replay: what a publisher sent comes back as a playable file."""

from __future__ import annotations

import io
import itertools
import logging
import threading
from typing import Any

import av
import pytest
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from livecast.auth import Role
from livecast.config import Settings
from livecast.ingest import recorder
from livecast.ingest.keys import MEDIA
from tests.conftest import Client, MakeToken, bearer
from tests.ingest.conftest import SellerStream, eventually
from tests.ingest.peers import CounterTrack, in_order, new_pc, publish, read_counter, view

RECORD = {"webrtc__record": True}


async def _send_frames(client: Client, stream_id: str, count: int) -> None:
    """Wait until the stream's video source took ``count`` more frames."""
    source = client.app[MEDIA].streams[stream_id].sources["video"]
    target = source.frames_in + count
    await eventually(lambda: source.frames_in >= target, within=15.0)


async def _end(client: Client, stream: SellerStream) -> None:
    resp = await client.post(f"/api/streams/{stream.id}/end", headers=bearer(stream.seller_token))
    assert resp.status == 200, await resp.text()


async def _finished_recordings(client: Client, stream_id: str) -> list[dict[str, Any]]:
    """The stream's recordings, once none is still being written."""
    listed: list[dict[str, Any]] = []

    async def finished() -> bool:
        nonlocal listed
        resp = await client.get(f"/api/streams/{stream_id}/recordings")
        assert resp.status == 200, await resp.text()
        listed = (await resp.json())["recordings"]
        return bool(listed) and not any(r["recording"] for r in listed)

    await eventually(finished, within=10.0)
    return listed


async def _download(client: Client, url: str) -> bytes:
    resp = await client.get(url)
    assert resp.status == 200, await resp.text()
    return await resp.read()


def _decode(data: bytes) -> tuple[list[int], list[int], int]:
    """The counters of the file's video frames, their pts, and its audio frame count."""
    with av.open(io.BytesIO(data), "r") as container:
        counters, pts = [], []
        for frame in container.decode(video=0):
            counters.append(read_counter(frame))
            pts.append(frame.pts or 0)
    with av.open(io.BytesIO(data), "r") as container:
        audio_frames = sum(1 for _ in container.decode(audio=0))
    return counters, pts, audio_frames


@pytest.mark.parametrize("settings", [RECORD], indirect=True)
@pytest.mark.parametrize(("codec", "ext"), [("h264", "mkv"), ("vp8", "webm")])
async def test_a_stream_is_recorded_and_replays_in_order(
    client: Client, stream: SellerStream, codec: str, ext: str
) -> None:
    publisher = await publish(
        client, stream.id, stream.seller_token, codec=f"video/{codec.upper()}"
    )
    try:
        await _send_frames(client, stream.id, 60)  # about 2 s at 30 fps
    finally:
        await publisher.close()
    await _end(client, stream)

    (listed,) = await _finished_recordings(client, stream.id)
    assert listed["name"].endswith(f".{ext}")
    assert listed["bytes"] > 1000
    assert listed["duration_s"] is not None
    assert 1.0 < listed["duration_s"] < 10.0
    assert listed["started_at"].endswith("Z")
    data = await _download(client, listed["url"])
    assert len(data) == listed["bytes"]

    with av.open(io.BytesIO(data), "r") as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == codec
        assert (video.codec_context.width, video.codec_context.height) == (160, 96)
        assert audio.codec_context.name == "opus"
        extradata = audio.codec_context.extradata
        assert extradata is not None
        assert extradata.startswith(b"OpusHead")
        if codec == "h264":  # stored as Matroska wants it: an avcC record
            avcc = video.codec_context.extradata
            assert avcc is not None
            assert avcc[0] == 1
    counters, pts, audio_frames = _decode(data)
    assert len(counters) >= 45
    assert in_order(counters)
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert audio_frames >= 50  # 20 ms Opus frames

    # Range requests work, so players can seek
    resp = await client.get(listed["url"], headers={"Range": "bytes=0-99"})
    assert resp.status == 206
    assert len(await resp.read()) == 100


async def test_nothing_is_recorded_when_recording_is_off(
    client: Client, stream: SellerStream, settings: Settings
) -> None:
    publisher = await publish(client, stream.id, stream.seller_token)
    try:
        await _send_frames(client, stream.id, 30)
    finally:
        await publisher.close()
    await _end(client, stream)
    resp = await client.get(f"/api/streams/{stream.id}/recordings")
    assert resp.status == 200
    assert (await resp.json())["recordings"] == []
    assert not settings.recordings_dir.exists()


@pytest.mark.parametrize("settings", [RECORD], indirect=True)
async def test_a_publisher_drop_and_return_continues_the_recording(
    client: Client, stream: SellerStream
) -> None:
    first = await publish(client, stream.id, stream.seller_token, codec="video/VP8")
    try:
        await _send_frames(client, stream.id, 30)
    finally:
        await first.close()  # the host's connection drops
    media = client.app[MEDIA].streams[stream.id]
    await eventually(lambda: media.publisher is None)
    second = await publish(client, stream.id, stream.seller_token, codec="video/VP8", start=1000)
    try:
        await _send_frames(client, stream.id, 30)
    finally:
        await second.close()
    await _end(client, stream)

    (listed,) = await _finished_recordings(client, stream.id)  # one broadcast, one file
    data = await _download(client, listed["url"])
    counters, pts, audio_frames = _decode(data)
    assert in_order(counters)
    assert any(c < 1000 for c in counters)
    assert any(c >= 1000 for c in counters)
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert audio_frames > 0


@pytest.mark.parametrize("settings", [RECORD], indirect=True)
async def test_recording_names_are_validated(
    client: Client, stream: SellerStream, settings: Settings
) -> None:
    # something worth stealing, one level above the stream's recordings
    settings.recordings_dir.mkdir(parents=True)
    (settings.recordings_dir / "secret.mkv").write_bytes(b"not yours")
    base = f"/api/streams/{stream.id}/recordings"
    for name in ("..%2Fsecret.mkv", "%2E%2E%2Fsecret.mkv", "..", "secret.mkv", "x%00.mkv"):
        resp = await client.get(f"{base}/{name}")
        assert resp.status in (400, 404), name
        assert "error" in await resp.json(), name
    resp = await client.get(f"{base}/secret.mkv")
    assert (await resp.json())["error"]["code"] == "invalid_recording_name"
    resp = await client.get(f"{base}/20260101T000000Z.mkv")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "recording_not_found"
    resp = await client.get("/api/streams/nosuchstream/recordings")
    assert resp.status == 404


async def test_a_private_streams_recordings_need_a_grant(
    client: Client, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER, sub="seller-9")
    resp = await client.post(
        "/api/streams", json={"title": "Members only", "public": False}, headers=bearer(seller)
    )
    url = f"/api/streams/{(await resp.json())['id']}/recordings"
    assert (await client.get(url)).status == 401
    assert (await client.get(url, headers=bearer(make_token(Role.VIEWER)))).status == 403
    assert (await client.get(url, headers=bearer(seller))).status == 200


@pytest.mark.parametrize(
    "settings", [{**RECORD, "webrtc__recordings_dir": "/dev/null/recordings"}], indirect=True
)
async def test_a_failing_disk_stops_the_recording_not_the_stream(
    client: Client, stream: SellerStream, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = await publish(client, stream.id, stream.seller_token)
    viewer = await view(client, stream.id)
    try:
        with caplog.at_level(logging.ERROR, logger="livecast.ingest.recorder"):
            await viewer.frames(10)
            await eventually(lambda: "recording" in caplog.text and "failed" in caplog.text)
        counters = await viewer.frames(len(viewer.counters) + 20)
        assert in_order(counters)
        assert client.app[MEDIA].streams[stream.id].sources["video"].tee is None
    finally:
        await viewer.close()
        await publisher.close()


@pytest.mark.parametrize("settings", [RECORD], indirect=True)
async def test_a_writer_that_falls_behind_stops_the_recording_not_the_stream(
    client: Client,
    stream: SellerStream,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stalled = threading.Event()  # a disk that stops answering, as a hung NFS mount does
    write = recorder._Writer.write

    def stalling_write(self: recorder._Writer, *args: Any) -> None:
        stalled.wait(30)
        write(self, *args)

    monkeypatch.setattr(recorder._Writer, "write", stalling_write)
    monkeypatch.setattr(recorder, "_QUEUE_FRAMES", 40)  # about half a second of media
    publisher = await publish(client, stream.id, stream.seller_token)
    viewer = await view(client, stream.id)
    try:
        with caplog.at_level(logging.ERROR, logger="livecast.ingest.recorder"):
            await eventually(lambda: "fell 40 frames behind" in caplog.text)
        source = client.app[MEDIA].streams[stream.id].sources["video"]
        assert source.tee is None
        counters = await viewer.frames(len(viewer.counters) + 20)
        assert in_order(counters)
    finally:
        stalled.set()
        await viewer.close()
        await publisher.close()
    await _end(client, stream)
    (listed,) = await _finished_recordings(client, stream.id)
    assert listed["recording"] is False


@pytest.mark.parametrize("settings", [RECORD], indirect=True)
async def test_shutdown_finalizes_the_recording_and_stops_its_writer(
    client: Client, stream: SellerStream, settings: Settings
) -> None:
    publisher = await publish(client, stream.id, stream.seller_token, codec="video/VP8")
    try:
        await _send_frames(client, stream.id, 30)
        await client.close()  # the server shuts down mid-broadcast
    finally:
        await publisher.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("recorder-")]
    (path,) = (settings.recordings_dir / stream.id).iterdir()
    counters, _, _ = _decode(path.read_bytes())
    assert len(counters) >= 20
    assert in_order(counters)
    with av.open(str(path), "r") as container:
        assert container.duration is not None  # the trailer was written


@pytest.mark.parametrize("settings", [RECORD], indirect=True)
async def test_a_recording_that_cannot_start_leaves_the_publisher_live(
    client: Client, stream: SellerStream, caplog: pytest.LogCaptureFixture
) -> None:
    pc = new_pc()
    pc.addTransceiver(CounterTrack(), direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    viewer = None
    try:
        # the system refuses the recorder's writer thread (a stack no machine has)
        threading.stack_size(2**40)
        try:
            with caplog.at_level(logging.ERROR, logger="livecast.ingest.publisher"):
                resp = await client.post(
                    f"/whip/{stream.id}",
                    data=pc.localDescription.sdp,
                    headers={"Content-Type": "application/sdp", **bearer(stream.seller_token)},
                )
        finally:
            threading.stack_size(0)
        assert resp.status == 201, await resp.text()
        assert "could not start recording" in caplog.text
        await pc.setRemoteDescription(RTCSessionDescription(await resp.text(), "answer"))
        viewer = await view(client, stream.id)
        assert in_order(await viewer.frames(10))
        status = await (await client.get(f"/api/streams/{stream.id}/media")).json()
        assert status["state"] == "live"
    finally:
        if viewer is not None:
            await viewer.close()
        await pc.close()
