"""The replay routes over real HTTP: a stream recorded by a real packager ends, its VOD
playlist and files are served (cache headers, CORS, ETag) and play through FFmpeg's HLS
demuxer from the app's URL; listing, the product timeline, private replays through
signed URLs, validation, deletion by role, and retention."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from livecast.app import create_app
from livecast.appkeys import REDIS
from livecast.auth import Role
from livecast.config import Settings
from livecast.hls.forward import FORWARDED_HEADER
from livecast.hls.keys import PACKAGING
from livecast.replay.keys import REPLAYS
from livecast.timeline import TIMELINE
from tests.conftest import AiohttpClient, Client, MakeToken, bearer, free_port
from tests.ingest.conftest import eventually
from tests.ingest.peers import publish
from tests.replay.media import record_run, segment_uris, vod_playlists
from tests.replay.test_writer import decode_hls, make_replays

SKU = "SCARF-1"


@dataclass
class Ended:
    stream_id: str
    seller: str
    deal_id: str
    codecs: str  # as the live multivariant said
    resolution: str


async def ended_replay(
    client: Client,
    app: web.Application,
    make_token: MakeToken,
    *,
    public: bool = True,
    audio: bool = True,
) -> Ended:
    """A stream that featured SKU, ran a deal on it a second into its media, and ended,
    recorded meanwhile by a real packager (2.2 s of H.264 + Opus; no Opus without
    ``audio``)."""
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana")
    resp = await client.put(
        f"/api/products/{SKU}",
        json={
            "title": "Wool scarf",
            "price": {"amount_minor": 2500, "currency": "EUR"},
            "stock": 9,
        },
        headers=bearer(seller),
    )
    assert resp.status in (200, 201), await resp.text()
    resp = await client.post(
        "/api/streams",
        json={"title": "Winter knits", "featured_skus": [SKU], "public": public},
        headers=bearer(seller),
    )
    stream_id = (await resp.json())["id"]
    assert (await client.post(f"/api/streams/{stream_id}/start", headers=bearer(seller))).ok
    resp = await client.post(
        f"/api/streams/{stream_id}/deals",
        json={
            "sku": SKU,
            "price": {"amount_minor": 1900, "currency": "EUR"},
            "quantity": 3,
            "duration_s": 60,
        },
        headers=bearer(seller),
    )
    assert resp.status == 201, await resp.text()
    deal_id = (await resp.json())["id"]
    # the media's first frame arrived a second before the deal started
    packager = await record_run(
        app[REPLAYS], stream_id, 2.2, base=time.monotonic() - 1.0, audio=audio
    )
    assert (await client.post(f"/api/streams/{stream_id}/end", headers=bearer(seller))).ok
    live = packager.multivariant()
    assert live is not None
    [inf] = [x for x in live.body.decode().splitlines() if x.startswith("#EXT-X-STREAM-INF:")]
    codecs = inf.split('CODECS="')[1].split('"')[0]
    resolution = inf.split("RESOLUTION=")[1].split(",")[0]
    return Ended(stream_id, seller, deal_id, codecs, resolution)


async def test_an_ended_stream_plays_as_vod_and_is_listed_with_its_timeline(
    client: Client, app: web.Application, make_token: MakeToken
) -> None:
    ended = await ended_replay(client, app, make_token)
    sid = ended.stream_id

    resp = await client.get("/api/replays")
    assert resp.status == 200
    [listed] = (await resp.json())["replays"]
    assert listed["stream_id"] == sid
    assert listed["title"] == "Winter knits"
    assert listed["playlist_url"] == f"/replay/{sid}/index.m3u8"
    assert listed["poster_url"] == f"/replay/{sid}/poster.jpg"
    assert 2.0 <= listed["duration_s"] <= 2.4
    assert listed["moments"] == []

    info = await (await client.get(f"/api/streams/{sid}/replay")).json()
    moments = [(m["kind"], m["sku"], m["price"]["amount_minor"]) for m in info["moments"]]
    assert moments == [("featured", SKU, 2500), ("deal", SKU, 2500)]  # the price now
    assert 0.8 <= info["moments"][1]["at_s"] <= 1.3
    assert info["moments"][1]["deal_id"] == ended.deal_id

    # a multivariant playlist of the video and the audio, both VOD
    playlists = await vod_playlists(client, f"/replay/{sid}/index.m3u8")
    assert playlists.video_url == f"/replay/{sid}/video.m3u8"
    assert playlists.audio_url == f"/replay/{sid}/audio.m3u8"
    inf = playlists.stream_inf
    assert inf["CODECS"] == ended.codecs  # read from the init segments
    assert inf["CODECS"].startswith("avc1.")
    assert inf["CODECS"].endswith(",mp4a.40.2")
    assert inf["RESOLUTION"] == ended.resolution
    assert 0 < int(inf["AVERAGE-BANDWIDTH"]) <= int(inf["BANDWIDTH"]) < 10_000_000
    assert playlists.audio is not None
    for text in (playlists.video, playlists.audio):
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in text
        assert "#EXT-X-ENDLIST" in text
        assert text.count("#EXT-X-PROGRAM-DATE-TIME:") == 3
    video_names = segment_uris(playlists.video)
    audio_names = segment_uris(playlists.audio)
    assert [f"audio-{n}" for n in video_names] == audio_names  # the same segments
    for path in ("index.m3u8", "video.m3u8", "audio.m3u8"):
        resp = await client.get(f"/replay/{sid}/{path}")
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert resp.headers["Cache-Control"] == "public, max-age=3600"
        again = await client.get(
            f"/replay/{sid}/{path}", headers={"If-None-Match": resp.headers["ETag"]}
        )
        assert again.status == 304
    for name in [*video_names, *audio_names, "poster.jpg"]:
        resp = await client.get(f"/replay/{sid}/{name}")
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert resp.headers["Content-Type"] == "image/jpeg"

    url = f"http://{client.host}:{client.port}/replay/{sid}/index.m3u8"
    counters, samples, duration = await asyncio.to_thread(decode_hls, url)
    assert counters == list(range(len(counters)))
    assert len(counters) == 66
    assert samples > 1.6 * 48_000
    assert abs(duration - listed["duration_s"]) < 0.2


async def test_bad_input_is_refused_in_the_json_error_shape(
    client: Client, app: web.Application, make_token: MakeToken
) -> None:
    ended = await ended_replay(client, app, make_token)
    for path, status, code in [
        ("/api/replays?limit=0", 400, "invalid_query"),
        ("/api/replays?limit=abc", 400, "invalid_query"),
        (f"/replay/{ended.stream_id}/..%2Fsecret", 404, "replay_not_found"),
        (f"/replay/{ended.stream_id}/seg-zz-1.m4s", 404, "replay_not_found"),
        (f"/replay/{ended.stream_id}/seg-0000000a-99.m4s", 404, "replay_not_found"),
        ("/replay/nosuchstream00/index.m3u8", 404, "replay_not_found"),
        ("/api/streams/nosuchstream00/replay", 404, "stream_not_found"),
    ]:
        resp = await client.get(path)
        assert resp.status == status, path
        assert (await resp.json())["error"]["code"] == code, path
    # a stream still live has no replay yet
    seller = make_token(Role.SELLER, sub="seller-1")
    resp = await client.post("/api/streams", json={"title": "Later"}, headers=bearer(seller))
    live_id = (await resp.json())["id"]
    await client.post(f"/api/streams/{live_id}/start", headers=bearer(seller))
    resp = await client.get(f"/api/streams/{live_id}/replay")
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "replay_not_found")


async def test_a_replay_without_audio_plays_its_video_alone(
    client: Client, app: web.Application, make_token: MakeToken
) -> None:
    ended = await ended_replay(client, app, make_token, audio=False)
    sid = ended.stream_id
    playlists = await vod_playlists(client, f"/replay/{sid}/index.m3u8")
    assert playlists.audio_url is None
    assert "#EXT-X-MEDIA" not in playlists.multivariant
    assert playlists.stream_inf["CODECS"] == ended.codecs
    assert "," not in ended.codecs
    assert "AUDIO" not in playlists.stream_inf
    resp = await client.get(f"/replay/{sid}/audio.m3u8")
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "replay_not_found")
    url = f"http://{client.host}:{client.port}/replay/{sid}/index.m3u8"
    counters, samples, _ = await asyncio.to_thread(decode_hls, url)
    assert counters == list(range(66))
    assert samples == 0


async def test_a_private_replay_plays_through_its_signed_url_only(
    client: Client, app: web.Application, make_token: MakeToken
) -> None:
    ended = await ended_replay(client, app, make_token, public=False)
    sid = ended.stream_id
    assert (await (await client.get("/api/replays")).json())["replays"] == []
    seller_list = await (await client.get("/api/replays", headers=bearer(ended.seller))).json()
    assert [r["stream_id"] for r in seller_list["replays"]] == [sid]

    resp = await client.get(f"/replay/{sid}/index.m3u8")
    assert (resp.status, (await resp.json())["error"]["code"]) == (401, "unauthorized")
    viewer = make_token(Role.VIEWER, sub="v1")
    resp = await client.get(f"/api/streams/{sid}/replay", headers=bearer(viewer))
    assert (resp.status, (await resp.json())["error"]["code"]) == (403, "forbidden")
    granted = make_token(Role.VIEWER, sub="v2", streams={sid})
    info = await (await client.get(f"/api/streams/{sid}/replay", headers=bearer(granted))).json()
    signed = info["playlist_url"]
    assert signed.startswith(f"/replay/{sid}/signed/")
    assert signed.endswith("/index.m3u8")
    resp = await client.get(signed)  # no token
    assert resp.status == 200
    cache = resp.headers["Cache-Control"]
    assert int(cache.split("max-age=")[1]) <= 3600
    playlists = await vod_playlists(client, signed)  # no token: signed paths all along
    assert playlists.audio_url == signed.replace("index.m3u8", "audio.m3u8")
    assert playlists.audio is not None
    for name in (segment_uris(playlists.video)[0], segment_uris(playlists.audio)[0]):
        assert (await client.get(signed.replace("index.m3u8", name))).status == 200
    resp = await client.get(f"/replay/{sid}/audio.m3u8")
    assert (resp.status, (await resp.json())["error"]["code"]) == (401, "unauthorized")
    assert (await client.get(info["poster_url"])).status == 200
    parts = signed.split("/")
    later = parts.copy()
    later[-3] = str(int(later[-3]) + 300)  # a later expiry than was signed
    parts[-2] = "A" * 22  # another signature
    for bad in ("/".join(parts), "/".join(later)):
        resp = await client.get(bad)
        assert (resp.status, (await resp.json())["error"]["code"]) == (403, "playback_url_invalid")
    # a live playback signature is not a replay one
    live = await (await client.get(f"/api/streams/{sid}/playback", headers=bearer(granted))).json()
    live_signed = live["url"].replace("/hls/", "/replay/", 1)
    resp = await client.get(live_signed)
    assert (resp.status, (await resp.json())["error"]["code"]) == (403, "playback_url_invalid")


async def test_only_the_seller_or_an_admin_deletes_a_replay(
    client: Client, app: web.Application, make_token: MakeToken, tmp_path: Path
) -> None:
    ended = await ended_replay(client, app, make_token)
    sid = ended.stream_id
    path = f"/api/streams/{sid}/replay"
    for token, status, code in [
        (None, 401, "unauthorized"),
        (make_token(Role.VIEWER, sub="v1"), 403, "forbidden"),
        (make_token(Role.HOST, sub="h1", streams={sid}), 403, "forbidden"),
        (make_token(Role.SELLER, sub="another-seller"), 403, "forbidden"),
    ]:
        resp = await client.delete(path, headers=bearer(token) if token else {})
        assert (resp.status, (await resp.json())["error"]["code"]) == (status, code)
    assert (await client.get(f"/replay/{sid}/index.m3u8")).status == 200  # untouched
    assert (tmp_path / "replays" / sid / "segments.jsonl").is_file()

    resp = await client.delete(path, headers=bearer(ended.seller))
    assert resp.status == 204
    assert not (tmp_path / "replays" / sid).exists()
    assert (await (await client.get("/api/replays")).json())["replays"] == []
    for gone in (f"/replay/{sid}/index.m3u8", path):
        resp = await client.get(gone)
        assert (resp.status, (await resp.json())["error"]["code"]) == (404, "replay_not_found")
    resp = await client.delete(path, headers=bearer(make_token(Role.ADMIN, sub="root")))
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "replay_not_found")


async def test_retention_sweeps_expired_replays_once_and_every_node_drops_their_files(
    client: Client, app: web.Application, make_token: MakeToken, tmp_path: Path
) -> None:
    ended = await ended_replay(client, app, make_token)
    kept = await ended_replay(client, app, make_token)
    replays = app[REPLAYS]
    redis = replays._redis
    prefix = replays._keys.prefix
    # a second node, with its own directory holding files of the first replay
    (tmp_path / "other" / ended.stream_id).mkdir(parents=True)
    (tmp_path / "other" / ended.stream_id / "segments.jsonl").write_bytes(b"")
    # the first replay ended long ago: retention is a day on both nodes
    await redis.zadd(
        replays._index_key(), {ended.stream_id: int(time.time() * 1000) - 2 * 86_400_000}
    )
    sweeper, _ = make_replays(redis, prefix, tmp_path / "replays", retention_days=1.0)
    one_day, _ = make_replays(redis, prefix, tmp_path / "other", retention_days=1.0)
    deleted = await asyncio.gather(sweeper.sweep(), one_day.sweep())
    assert sorted(deleted) == [0, 1]  # deleted once
    await one_day.sweep()  # the other node's files of the deleted replay go at its sweep
    assert not (tmp_path / "other" / ended.stream_id).exists()
    assert not (tmp_path / "replays" / ended.stream_id).exists()
    assert (tmp_path / "replays" / kept.stream_id / "segments.jsonl").is_file()
    listed = await (await client.get("/api/replays")).json()
    assert [r["stream_id"] for r in listed["replays"]] == [kept.stream_id]
    assert (await client.get(f"/replay/{ended.stream_id}/index.m3u8")).status == 404


async def _node(aiohttp_client: AiohttpClient, settings: Settings, replays_dir: Path) -> Client:
    """One more node on the same Redis and secrets, with its replays in ``replays_dir``."""
    port = free_port()
    app = create_app(
        dataclasses.replace(
            settings,
            server=dataclasses.replace(settings.server, advertise_url=f"http://127.0.0.1:{port}"),
            replay=dataclasses.replace(settings.replay, dir=str(replays_dir)),
        )
    )
    return await aiohttp_client(app, port=port)


async def test_any_node_serves_a_replay_from_a_shared_directory_or_by_forwarding(
    aiohttp_client: AiohttpClient, settings: Settings, make_token: MakeToken, tmp_path: Path
) -> None:
    recorder = await _node(aiohttp_client, settings, tmp_path / "a")
    elsewhere = await _node(aiohttp_client, settings, tmp_path / "b")
    sharing = await _node(aiohttp_client, settings, tmp_path / "a")
    ended = await ended_replay(recorder, recorder.app, make_token)
    sid = ended.stream_id
    assert not (tmp_path / "b" / sid).exists()
    playlist = await recorder.get(f"/replay/{sid}/audio.m3u8")
    body = await playlist.read()
    name = segment_uris(body.decode())[0]
    segment = await (await recorder.get(f"/replay/{sid}/{name}")).read()
    for node in (elsewhere, sharing):
        listed = await (await node.get("/api/replays")).json()
        assert [r["stream_id"] for r in listed["replays"]] == [sid]
        resp = await node.get(f"/replay/{sid}/audio.m3u8")
        assert resp.status == 200
        assert await resp.read() == body
        assert resp.headers["ETag"] == playlist.headers["ETag"]
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        resp = await node.get(f"/replay/{sid}/{name}")
        assert resp.status == 200
        assert await resp.read() == segment
    # the node sharing the directory answers from it; the other one could only forward
    not_again = {FORWARDED_HEADER: "test"}
    assert (await sharing.get(f"/replay/{sid}/{name}", headers=not_again)).status == 200
    resp = await elsewhere.get(f"/replay/{sid}/index.m3u8", headers=not_again)
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "replay_not_found")


@pytest.mark.parametrize("enabled", [True, False])
async def test_a_whip_stream_is_recorded_unless_replays_are_off(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    make_token: MakeToken,
    tmp_path: Path,
    enabled: bool,
) -> None:
    """The packaging's hook end to end: a real publisher over WHIP; with ``replay.enabled``
    off the packaging still runs and nothing is recorded."""
    settings = dataclasses.replace(
        settings,
        hls=dataclasses.replace(settings.hls, part_duration_s=0.3, segment_duration_s=1.0),
        replay=dataclasses.replace(settings.replay, enabled=enabled),
    )
    node = await _node(aiohttp_client, settings, tmp_path / "replays")
    seller = make_token(Role.SELLER, sub="seller-1")
    resp = await node.post("/api/streams", json={"title": "Live"}, headers=bearer(seller))
    stream_id = (await resp.json())["id"]
    publisher = await publish(node, stream_id, seller)
    try:
        packaging = node.app[PACKAGING]

        def packaged() -> bool:
            packager = packaging.packager(stream_id)
            return packager is not None and len(packager.video.segments) >= 2

        await eventually(packaged, within=20)
    finally:
        await publisher.close()
    assert (await node.post(f"/api/streams/{stream_id}/end", headers=bearer(seller))).ok
    if not enabled:
        assert await node.app[REPLAYS].get(stream_id) is None
        assert not (tmp_path / "replays" / stream_id).exists()
        resp = await node.get(f"/api/streams/{stream_id}/replay")
        assert (resp.status, (await resp.json())["error"]["code"]) == (404, "replay_not_found")
        return

    async def listed() -> bool:
        resp = await node.get(f"/api/streams/{stream_id}/replay")
        return resp.status == 200 and (await resp.json())["duration_s"] >= 2.0

    await eventually(listed, within=10)
    url = f"http://{node.host}:{node.port}/replay/{stream_id}/index.m3u8"
    counters, _, _ = await asyncio.to_thread(decode_hls, url)
    assert len(counters) >= 60
    assert counters == sorted(counters)


async def test_the_product_timeline_comes_from_the_streams_stored_timeline(
    client: Client, app: web.Application, make_token: MakeToken
) -> None:
    """Each pin is placed at its moment of the video, to the next pin or unpin; without a
    stored timeline (a stream recorded before timelines) the deals are placed as before."""
    ended = await ended_replay(client, app, make_token)
    seller = ended.seller
    resp = await client.put(
        "/api/products/HAT-1",
        json={"title": "Hat", "price": {"amount_minor": 1200, "currency": "EUR"}, "stock": 4},
        headers=bearer(seller),
    )
    assert resp.status in (200, 201)
    resp = await client.post("/api/streams", json={"title": "Pins"}, headers=bearer(seller))
    sid = (await resp.json())["id"]
    assert (await client.post(f"/api/streams/{sid}/start", headers=bearer(seller))).ok
    first_frame = time.monotonic() - 0.5
    pin = f"/api/streams/{sid}/pin"
    assert (await client.post(pin, json={"sku": SKU}, headers=bearer(seller))).ok
    await asyncio.sleep(0.6)
    assert (await client.post(pin, json={"sku": "HAT-1"}, headers=bearer(seller))).ok
    await asyncio.sleep(0.6)
    assert (await client.delete(pin, headers=bearer(seller))).ok
    await record_run(app[REPLAYS], sid, 2.2, base=first_frame)
    assert (await client.post(f"/api/streams/{sid}/end", headers=bearer(seller))).ok

    info = await (await client.get(f"/api/streams/{sid}/replay")).json()
    pinned = [(m["kind"], m["sku"], m["at_s"], m["until_s"]) for m in info["moments"]]
    assert [p[:2] for p in pinned] == [("pinned", SKU), ("pinned", "HAT-1")]
    (_, _, scarf_at, scarf_until), (_, _, hat_at, hat_until) = pinned
    assert 0.4 <= scarf_at <= 0.8, pinned
    assert scarf_until == hat_at
    assert 0.45 <= hat_at - scarf_at <= 0.9, pinned
    assert 0.45 <= hat_until - hat_at <= 0.9, pinned

    # the first stream, as if recorded before timelines: its deal is still placed
    await app[REDIS].delete(app[TIMELINE].key(ended.stream_id))
    info = await (await client.get(f"/api/streams/{ended.stream_id}/replay")).json()
    assert [(m["kind"], m.get("deal_id")) for m in info["moments"]] == [
        ("featured", None),
        ("deal", ended.deal_id),
    ]
    assert 0.8 <= info["moments"][1]["at_s"] <= 1.3
