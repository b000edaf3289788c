"""Signed, expiring playback URLs over real HTTP: who gets one, that a private stream plays
through it with no token (the multivariant playlist, both media playlists, their init
segments, parts and segments, all under the same signed prefix), that a CDN may not cache
past its expiry, and that forged, borrowed or expired ones are 403 in the JSON error
shape."""

from __future__ import annotations

import re
import time

from livecast.auth import Role
from livecast.hls.keys import PLAYBACK
from tests.conftest import Client, MakeToken, bearer
from tests.hls.playlists import renditions
from tests.ingest.conftest import eventually
from tests.ingest.peers import publish


async def _error_code(client: Client, path: str, status: int) -> str:
    resp = await client.get(path)
    assert resp.status == status, await resp.text()
    code: str = (await resp.json())["error"]["code"]
    return code


async def test_a_private_stream_plays_through_its_signed_url_and_only_it(
    client: Client, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER, sub="seller-8")
    resp = await client.post(
        "/api/streams", json={"title": "Members only", "public": False}, headers=bearer(seller)
    )
    stream_id = (await resp.json())["id"]
    other = await client.post("/api/streams", json={"title": "Other"}, headers=bearer(seller))
    other_id = (await other.json())["id"]
    playback = f"/api/streams/{stream_id}/playback"
    assert (await client.get(playback)).status == 401
    assert (await client.get(playback, headers=bearer(make_token(Role.VIEWER)))).status == 403
    member = bearer(make_token(Role.VIEWER, streams={stream_id}))
    resp = await client.get(playback, headers=member)
    assert resp.status == 200
    body = await resp.json()
    url: str = body["url"]
    ttl = client.app[PLAYBACK].ttl_s
    assert time.time() + ttl <= body["expires_at"] <= time.time() + ttl + 300
    match = re.fullmatch(rf"/hls/{stream_id}/signed/(\d+)/([\w-]+)/index\.m3u8", url)
    assert match is not None, url
    prefix = url.removesuffix("index.m3u8")

    sender = await publish(client, stream_id, seller)
    try:
        # the multivariant playlist, the media playlists it names, and the files they
        # name, all resolved under the signed prefix, with no token
        names: dict[str, str] = {}

        async def both_complete() -> bool:
            nonlocal names
            resp = await client.get(url)
            if resp.status != 200:
                return False
            names = renditions(await resp.text())
            for name in names.values():
                resp = await client.get(prefix + name)
                if resp.status != 200 or "seg-" not in await resp.text():
                    return False
            return True

        await eventually(both_complete, within=20.0)
        assert set(names) == {"video", "audio"}
        assert (await client.get(f"/hls/{stream_id}/index.m3u8")).status == 401
        resp = await client.get(url)
        assert int(resp.headers["Cache-Control"].split("max-age=")[1]) <= 1
        files: list[str] = []
        for kind, name in names.items():
            assert (await client.get(f"/hls/{stream_id}/{name}")).status == 401
            resp = await client.get(prefix + name)
            assert int(resp.headers["Cache-Control"].split("max-age=")[1]) <= 1
            lines = (await resp.text()).splitlines()
            init = next(line for line in lines if line.startswith("#EXT-X-MAP:")).split('"')[1]
            part = next(line for line in lines if line.startswith("#EXT-X-PART:")).split('"')[1]
            segment = next(line for line in lines if line.startswith(("seg-", "audio-seg-")))
            assert all(n.startswith("audio-") == (kind == "audio") for n in (init, part, segment))
            files += [init, part, segment]
            blocking = await client.get(f"{prefix}{name}?_HLS_msn=0&_HLS_part=0")
            assert blocking.status == 200
            max_age = int(blocking.headers["Cache-Control"].split("max-age=")[1])
            assert 0 < max_age <= body["expires_at"] - time.time() + 1
        for name in files:
            assert (await client.get(f"/hls/{stream_id}/{name}")).status == 401
            resp = await client.get(prefix + name)
            assert resp.status == 200, name
            assert resp.content_type == "video/mp4"
            max_age = int(resp.headers["Cache-Control"].split("max-age=")[1].split(",")[0])
            assert 0 < max_age <= body["expires_at"] - time.time() + 1
        init = files[0]

        expires, signature = match[1], match[2]
        forged = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
        for path in (
            f"/hls/{stream_id}/signed/{expires}/{forged}/index.m3u8",
            f"/hls/{stream_id}/signed/{int(expires) + 300}/{signature}/index.m3u8",
            f"/hls/{other_id}/signed/{expires}/{signature}/index.m3u8",
            f"/hls/{stream_id}/signed/{expires}/{forged}/{init}",
            *(f"/hls/{stream_id}/signed/{expires}/{forged}/{name}" for name in names.values()),
            f"/hls/{stream_id}/signed/{expires}/{forged}/{files[-1]}",
            f"/hls/{stream_id}/signed/x/{signature}/index.m3u8",
        ):
            assert await _error_code(client, path, 403) == "playback_url_invalid", path
        old_url, _ = client.app[PLAYBACK].sign(stream_id, now=time.time() - 2 * ttl)
        assert await _error_code(client, old_url, 403) == "playback_url_expired"
        old_prefix = old_url.removesuffix("index.m3u8")
        for name in (init, *names.values(), files[-1]):
            assert await _error_code(client, old_prefix + name, 403) == "playback_url_expired"
    finally:
        await sender.close()


async def test_anyone_gets_a_signed_url_for_a_public_stream(
    client: Client, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER, sub="seller-9")
    resp = await client.post("/api/streams", json={"title": "Open"}, headers=bearer(seller))
    stream_id = (await resp.json())["id"]
    resp = await client.get(f"/api/streams/{stream_id}/playback")
    assert resp.status == 200
    assert (await resp.json())["url"].startswith(f"/hls/{stream_id}/signed/")
    assert await _error_code(client, "/api/streams/nosuchstream1/playback", 404)
