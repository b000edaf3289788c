"""Reading the playlists the way an LL-HLS player does, for the HLS tests: the
multivariant playlist at ``index.m3u8``, then the media playlist of a rendition."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from aiohttp import ClientResponse

from tests.conftest import Client
from tests.ingest.conftest import eventually

HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="((?:audio-)?part-\w+-\d+\.m4s)"')
_AUDIO = re.compile(r'#EXT-X-MEDIA:TYPE=AUDIO,.*URI="(audio-[0-9a-f]{8}\.m3u8)"')


def renditions(multivariant: str) -> dict[str, str]:
    """The media playlists a multivariant playlist names: "video", and "audio" if any."""
    lines = multivariant.splitlines()
    assert lines[0] == "#EXTM3U", multivariant
    stream_inf = next(i for i, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF:"))
    found = {"video": lines[stream_inf + 1]}
    audio = _AUDIO.search(multivariant)
    if audio is not None:
        found["audio"] = audio[1]
    return found


async def media_playlist(
    client: Client,
    stream_id: str,
    rendition: str = "video",
    *,
    prefix: str = "",
    headers: dict[str, str] | None = None,
) -> str:
    """The path of a rendition's media playlist, as the multivariant names it (under
    ``prefix``, by default ``/hls/{stream_id}/``)."""
    base = prefix or f"/hls/{stream_id}/"
    resp = await client.get(f"{base}index.m3u8", headers=headers)
    assert resp.status == 200, await resp.text()
    return base + renditions(await resp.text())[rendition]


def segments(text: str) -> list[tuple[int, list[str], bool]]:
    """Each listed segment: its media sequence number, its listed part lines, complete."""
    lines = text.splitlines()
    msn = int(next(line for line in lines if line.startswith("#EXT-X-MEDIA-SEQUENCE:"))[22:]) - 1
    listed: list[tuple[int, list[str], bool]] = []
    for line in lines:
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):  # one per segment, first of its tags
            msn += 1
            listed.append((msn, [], False))
        elif line.startswith("#EXT-X-PART:"):
            listed[-1][1].append(line)
        elif line.startswith(("seg-", "audio-seg-")):
            listed[-1] = (listed[-1][0], listed[-1][1], True)
    return listed


def last_part(text: str) -> tuple[int, int]:
    """(msn, index) of the newest listed part."""
    msn, parts, _ = next(s for s in reversed(segments(text)) if s[1])
    return msn, len(parts) - 1


def next_part(text: str) -> tuple[int, int]:
    """(msn, index) to ask for with ``_HLS_msn``/``_HLS_part``: the part after the newest."""
    msn, parts, complete = segments(text)[-1]
    return (msn + 1, 0) if complete else (msn, len(parts))


def hint(text: str) -> str:
    match = HINT.search(text)
    assert match is not None, text
    return match[1]


async def playlist_text(
    client: Client, stream_id: str, query: str = "", rendition: str = "video"
) -> str:
    """A rendition's media playlist (through the multivariant playlist)."""
    path = await media_playlist(client, stream_id, rendition)
    resp = await client.get(f"{path}{query}")
    assert resp.status == 200, await resp.text()
    return await resp.text()


async def complete_segments(
    client: Client, stream_id: str, count: int, rendition: str = "video"
) -> list[str]:
    """Wait until a rendition's media playlist lists ``count`` complete segments; its
    lines then."""
    lines: list[str] = []

    async def enough() -> bool:
        nonlocal lines
        resp = await client.get(f"/hls/{stream_id}/index.m3u8")
        if resp.status != 200:
            return False
        resp = await client.get(f"/hls/{stream_id}/{renditions(await resp.text())[rendition]}")
        if resp.status != 200:
            return False
        lines = (await resp.text()).splitlines()
        return sum(line.startswith(("seg-", "audio-seg-")) for line in lines) >= count

    await eventually(enough, within=20.0)
    return lines


async def newer_playlist(client: Client, path: str, body: str) -> bool:
    """Whether the media playlist at ``path`` has moved on from ``body``."""
    resp = await client.get(path)
    return await resp.text() != body


@dataclass
class BlockedReload:
    """A blocking playlist request for the next part, answered, and the request for the
    part the playlist hinted, sent at the same time."""

    path: str  # the media playlist's
    query: str
    name: str
    response: ClientResponse
    body: str
    hinted: asyncio.Future[ClientResponse]


async def block_on_the_hinted_part(
    client: Client, stream_id: str, rendition: str = "video"
) -> BlockedReload:
    """Ask for the playlist with the next part (``_HLS_msn``/``_HLS_part``) and, at once,
    for the hinted part; the answer must be the playlist as it was when that part
    appeared: 200, ending with it (the next segment's first if a keyframe began one),
    that part the hinted one."""
    path = await media_playlist(client, stream_id, rendition)
    resp = await client.get(path)
    text = await resp.text()
    msn, index = next_part(text)
    name = hint(text)
    query = f"?_HLS_msn={msn}&_HLS_part={index}"
    blocked = asyncio.ensure_future(client.get(f"{path}{query}"))
    hinted = asyncio.ensure_future(client.get(f"/hls/{stream_id}/{name}"))
    resp = await blocked
    assert resp.status == 200
    body = await resp.text()
    assert last_part(body) in ((msn, index), (msn + 1, 0))
    parts = [line for line in body.splitlines() if line.startswith("#EXT-X-PART:")]
    assert f'URI="{name}"' in parts[-1]
    assert resp.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    return BlockedReload(path, query, name, resp, body, hinted)
