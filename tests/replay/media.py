"""A real packager recording into a replay writer: how the replay tests make replays."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from urllib.parse import urljoin

from livecast.hls.packager import Packager, PackagerSettings
from livecast.replay.store import Replays
from tests.conftest import Client
from tests.hls.media import h264_frames, opus_frames
from tests.hls.test_packager import feed


async def record_run(
    replays: Replays,
    stream_id: str,
    seconds: float,
    *,
    base: float = 100.0,
    audio: bool = True,
) -> Packager:
    """One packaging run of ``seconds`` of real H.264 + Opus (1 s segments, two kept in
    its window; video only without ``audio``), recorded by a writer of ``replays`` as the
    packaging does; returns once it is all written."""
    packager = Packager(PackagerSettings(part_s=0.5, segment_s=1.0, window=2), audio=audio)
    writer = replays.writer(stream_id, packager.run)
    packager.attach(writer)
    sound = opus_frames(seconds) if audio else []
    feed(packager, h264_frames(round(seconds * 30), gop=30), sound, base=base)
    packager.finish()
    writer.close()
    await asyncio.wait_for(asyncio.shield(writer.done), 20)
    return packager


@dataclass(frozen=True)
class VodPlaylists:
    """A multivariant playlist as served, and the media playlists it names."""

    multivariant: str
    video_url: str
    video: str
    audio_url: str | None
    audio: str | None

    @property
    def stream_inf(self) -> dict[str, str]:
        """The attributes of its one ``EXT-X-STREAM-INF``."""
        [line] = [x for x in self.multivariant.splitlines() if x.startswith("#EXT-X-STREAM-INF:")]
        return _attributes(line.partition(":")[2])


def _attributes(raw: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', raw)}


async def vod_playlists(
    client: Client, url: str, headers: dict[str, str] | None = None
) -> VodPlaylists:
    """GET the multivariant playlist at ``url``, then the video and audio playlists it
    names (relative to it), checking each answers 200 as an HLS playlist."""

    async def text(of: str) -> str:
        resp = await client.get(of, headers=headers or {})
        assert resp.status == 200, (of, await resp.text())
        assert resp.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        return await resp.text()

    multivariant = await text(url)
    lines = multivariant.splitlines()
    assert lines[0] == "#EXTM3U"
    assert "#EXT-X-ENDLIST" not in multivariant  # a multivariant, not a media playlist
    [at] = [i for i, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF:")]
    video_url = urljoin(url, lines[at + 1])
    media = [x for x in lines if x.startswith("#EXT-X-MEDIA:")]
    audio_url = None
    if media:
        [line] = media
        attributes = _attributes(line.partition(":")[2])
        assert attributes["TYPE"] == "AUDIO"
        assert attributes["GROUP-ID"] == _attributes(lines[at].partition(":")[2])["AUDIO"]
        audio_url = urljoin(url, attributes["URI"])
    video = await text(video_url)
    audio = await text(audio_url) if audio_url is not None else None
    return VodPlaylists(multivariant, video_url, video, audio_url, audio)


def segment_uris(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]
