"""Product clips over real HTTP: a stream recorded by a real packager, on which the host
pinned two products in turn, ends; each pinned span is a clip, listed on the moments
shelf and under its product, whose playlist is a slice of the replay's own segments that
FFmpeg's HLS demuxer plays from the app's URL. The seller trims, hides and publishes;
others may not; bad input changes nothing; clips go with their replay."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from livecast.auth import Role
from livecast.replay.keys import REPLAYS
from tests.conftest import Client, MakeToken, bearer
from tests.replay.media import record_run, segment_uris, vod_playlists
from tests.replay.test_writer import decode_hls


@dataclass
class Pinned:
    stream_id: str
    seller: str


async def pinned_stream(
    client: Client, app: web.Application, make_token: MakeToken, *, public: bool = True
) -> Pinned:
    """A stream that pinned SCARF-1 half a second into its media, then HAT-1 0.8 s later,
    cleared it 0.8 s after that, and ended (2.6 s of H.264 + Opus, 1 s segments)."""
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana")
    for sku, title in [("SCARF-1", "Wool scarf"), ("HAT-1", "Bobble hat")]:
        resp = await client.put(
            f"/api/products/{sku}",
            json={"title": title, "price": {"amount_minor": 2500, "currency": "EUR"}, "stock": 5},
            headers=bearer(seller),
        )
        assert resp.status in (200, 201), await resp.text()
    resp = await client.post(
        "/api/streams", json={"title": "Knits", "public": public}, headers=bearer(seller)
    )
    sid = (await resp.json())["id"]
    assert (await client.post(f"/api/streams/{sid}/start", headers=bearer(seller))).ok
    first_frame = time.monotonic() - 0.5
    pin = f"/api/streams/{sid}/pin"
    assert (await client.post(pin, json={"sku": "SCARF-1"}, headers=bearer(seller))).ok
    await asyncio.sleep(0.8)
    assert (await client.post(pin, json={"sku": "HAT-1"}, headers=bearer(seller))).ok
    await asyncio.sleep(0.8)
    assert (await client.delete(pin, headers=bearer(seller))).ok
    await record_run(app[REPLAYS], sid, 2.6, base=first_frame)
    assert (await client.post(f"/api/streams/{sid}/end", headers=bearer(seller))).ok
    return Pinned(sid, seller)


async def _json(resp: Any) -> Any:
    return await resp.json()


async def test_each_pinned_span_is_a_published_clip_that_plays_as_a_slice(
    client: Client, app: web.Application, make_token: MakeToken
) -> None:
    pinned = await pinned_stream(client, app, make_token)
    sid = pinned.stream_id

    shelf = (await _json(await client.get("/api/clips")))["clips"]
    assert [(c["sku"], c["state"]) for c in shelf] == [
        ("HAT-1", "published"),  # newest first
        ("SCARF-1", "published"),
    ]
    hat, scarf = shelf
    assert 0.4 <= scarf["start_s"] <= 0.8, scarf
    assert scarf["end_s"] == hat["start_s"]
    assert 0.6 <= hat["end_s"] - hat["start_s"] <= 1.1, hat
    assert hat["watch_url"] == f"/watch/{sid}?clip={hat['id']}"
    assert hat["title"] == "Bobble hat"
    assert [
        c["id"] for c in (await _json(await client.get("/api/products/HAT-1/clips")))["clips"]
    ] == [hat["id"]]

    playlists = await vod_playlists(client, hat["playlist_url"])
    assert playlists.audio_url == f"/clip/{hat['id']}/audio.m3u8"
    assert playlists.audio is not None
    text = playlists.video
    assert "#EXT-X-ENDLIST" in text
    segments = segment_uris(text)
    assert segments
    assert all(s.startswith(f"/replay/{sid}/seg-") for s in segments)
    # the same segments of the audio
    assert segment_uris(playlists.audio) == [s.replace("/seg-", "/audio-seg-") for s in segments]
    seconds = sum(
        float(line[8:].rstrip(",")) for line in text.splitlines() if line.startswith("#EXTINF:")
    )
    assert len(segments) < 3  # a slice, not the whole replay
    for url in (hat["playlist_url"], playlists.video_url, playlists.audio_url):
        resp = await client.get(url)
        assert resp.headers["Cache-Control"] == "public, max-age=3600"
        again = await client.get(url, headers={"If-None-Match": resp.headers["ETag"]})
        assert again.status == 304

    url = f"http://{client.host}:{client.port}{hat['playlist_url']}"
    counters, samples, duration = await asyncio.to_thread(decode_hls, url)
    assert len(counters) == round(seconds * 30)  # whole segments, 30 frames a second
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    assert counters[0] <= hat["start_s"] * 30 < counters[0] + 30  # from the pin's segment
    assert samples > 0.8 * 48_000 * seconds
    assert abs(duration - seconds) < 0.2


async def test_the_seller_trims_hides_and_publishes_and_nobody_else_may(
    client: Client, app: web.Application, make_token: MakeToken
) -> None:
    pinned = await pinned_stream(client, app, make_token)
    seller = bearer(pinned.seller)
    mine = await _json(await client.get(f"/api/streams/{pinned.stream_id}/clips", headers=seller))
    scarf = mine["clips"][0]
    path = f"/api/clips/{scarf['id']}"

    for token, status in [
        (None, 401),
        (make_token(Role.VIEWER, sub="v1"), 403),
        (make_token(Role.SELLER, sub="seller-2"), 403),
    ]:
        headers = bearer(token) if token else {}
        resp = await client.patch(path, json={"state": "hidden"}, headers=headers)
        assert resp.status == status
        resp = await client.get(f"/api/streams/{pinned.stream_id}/clips", headers=headers)
        assert resp.status == status
    for body, status, code in [
        ({"start_s": scarf["span_start_s"] - 0.1}, 422, "invalid_trim"),
        ({"end_s": scarf["span_end_s"] + 0.1}, 422, "invalid_trim"),
        ({"start_s": scarf["start_s"] + 0.1, "end_s": scarf["start_s"] + 0.2}, 422, "invalid_trim"),
        ({"state": "gone"}, 422, "invalid_field"),
        ({"colour": "red"}, 422, "invalid_field"),
    ]:
        resp = await client.patch(path, json=body, headers=seller)
        assert resp.status == status, body
        assert (await resp.json())["error"]["code"] == code, body
    resp = await client.patch("/api/clips/nosuchclip000", json={}, headers=seller)
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "clip_not_found")
    assert (await client.get("/clip/nosuchclip000/index.m3u8")).status == 404
    assert (await client.get("/api/clips?limit=0")).status == 400
    unchanged = await _json(
        await client.get(f"/api/streams/{pinned.stream_id}/clips", headers=seller)
    )
    assert unchanged == mine

    start = round(scarf["start_s"] + 0.1, 3)
    resp = await client.patch(path, json={"start_s": start, "state": "hidden"}, headers=seller)
    assert resp.status == 200
    assert ((await resp.json())["start_s"], (await resp.json())["state"]) == (start, "hidden")
    shelf = (await _json(await client.get("/api/clips")))["clips"]
    assert [c["sku"] for c in shelf] == ["HAT-1"]
    assert (await _json(await client.get("/api/products/SCARF-1/clips")))["clips"] == []
    admin = bearer(make_token(Role.ADMIN, sub="root"))
    resp = await client.patch(path, json={"state": "published"}, headers=admin)
    assert resp.status == 200
    shelf = (await _json(await client.get("/api/clips")))["clips"]
    assert sorted(c["sku"] for c in shelf) == ["HAT-1", "SCARF-1"]


async def test_a_private_streams_clip_plays_through_signed_replay_paths_only(
    client: Client, app: web.Application, make_token: MakeToken
) -> None:
    pinned = await pinned_stream(client, app, make_token, public=False)
    assert (await _json(await client.get("/api/clips")))["clips"] == []
    seller = bearer(pinned.seller)
    [clip, _] = (
        await _json(await client.get(f"/api/streams/{pinned.stream_id}/clips", headers=seller))
    )["clips"]
    # Its playlist_url is signed, so a player (no token) loads it and its playlists.
    assert clip["playlist_url"].startswith(f"/clip/{clip['id']}/signed/")
    signed = await vod_playlists(client, clip["playlist_url"])
    assert signed.audio is not None
    assert signed.video_url.startswith(f"/clip/{clip['id']}/signed/")
    tampered = clip["playlist_url"].replace("/signed/", "/signed/1").replace("index", "video")
    resp = await client.get(tampered)
    assert (resp.status, (await resp.json())["error"]["code"]) == (403, "playback_url_invalid")
    # The plain path still needs the token.
    plain = f"/clip/{clip['id']}/index.m3u8"
    assert (await client.get(plain)).status == 401
    playlists = await vod_playlists(client, plain, headers=seller)
    assert playlists.audio is not None
    assert playlists.audio_url is not None
    for media in (playlists.video_url, playlists.audio_url):
        assert (await client.get(media)).status == 401  # the clip's playlists need the token
    segments = [*segment_uris(playlists.video), *segment_uris(playlists.audio)]
    assert len(segments) == 2 * len(segment_uris(playlists.video)) > 0
    assert all(s.startswith(f"/replay/{pinned.stream_id}/signed/") for s in segments)
    for segment in segments:
        assert (await client.get(segment)).status == 200  # no token: the signature lets it


async def test_clips_go_with_their_replay(
    client: Client, app: web.Application, make_token: MakeToken
) -> None:
    pinned = await pinned_stream(client, app, make_token)
    [clip, _] = (await _json(await client.get("/api/clips")))["clips"]
    resp = await client.delete(
        f"/api/streams/{pinned.stream_id}/replay", headers=bearer(pinned.seller)
    )
    assert resp.status == 204
    assert (await _json(await client.get("/api/clips")))["clips"] == []
    resp = await client.get(clip["playlist_url"])
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "clip_not_found")
    resp = await client.patch(
        f"/api/clips/{clip['id']}", json={"state": "hidden"}, headers=bearer(pinned.seller)
    )
    assert resp.status == 404


async def test_clips_go_when_retention_sweeps_their_replay(
    client: Client, app: web.Application, make_token: MakeToken
) -> None:
    pinned = await pinned_stream(client, app, make_token)
    clips = (await _json(await client.get("/api/clips")))["clips"]
    assert len(clips) == 2
    replays = app[REPLAYS]
    past = int(time.time() * 1000) - (replays.settings.retention_days + 1) * 86_400_000
    await replays._redis.zadd(replays._index_key(), {pinned.stream_id: int(past)})
    assert await replays.sweep() == 1
    assert (await _json(await client.get("/api/clips")))["clips"] == []
    assert (await client.get("/api/products/HAT-1/clips")).status == 200
    for clip in clips:
        assert (await client.get(clip["playlist_url"])).status == 404
