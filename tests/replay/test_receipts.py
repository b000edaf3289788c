"""Video receipts over real HTTP: an order bought live and one bought on the replay each
link to the moment they were bought; the receipt plays (FFmpeg's HLS demuxer, from the
app's URL) once the stream's replay exists, as a slice of its segments around that
moment; bad input is refused and changes nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from livecast.auth import Role
from livecast.replay.keys import REPLAYS
from tests.conftest import Client, MakeToken, bearer
from tests.replay.media import record_run, vod_playlists
from tests.replay.test_writer import decode_hls


async def _buy(client: Client, buyer: str, body: dict[str, Any], key: str) -> Any:
    resp = await client.post("/api/cart/items", json=body, headers=bearer(buyer))
    assert resp.status == 201, await resp.text()
    resp = await client.post("/api/checkout", headers={**bearer(buyer), "Idempotency-Key": key})
    assert resp.status == 201, await resp.text()
    return await resp.json()


def _seconds(text: str) -> float:
    return sum(
        float(line[8:].rstrip(",")) for line in text.splitlines() if line.startswith("#EXTINF:")
    )


def _segments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


async def test_an_order_links_to_the_moment_it_was_bought(
    client: Client, app: web.Application, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana")
    resp = await client.put(
        "/api/products/MUG",
        json={"title": "Mug", "price": {"amount_minor": 900, "currency": "EUR"}, "stock": 9},
        headers=bearer(seller),
    )
    assert resp.status in (200, 201)
    resp = await client.post("/api/streams", json={"title": "Mugs"}, headers=bearer(seller))
    sid = (await resp.json())["id"]
    assert (await client.post(f"/api/streams/{sid}/start", headers=bearer(seller))).ok
    first_frame = time.monotonic() - 1.0
    live_buyer = make_token(Role.VIEWER, sub="live-buyer")
    order = await _buy(client, live_buyer, {"stream_id": sid, "sku": "MUG", "quantity": 1}, "k1")
    assert order["receipt_url"] == f"/receipt/{order['id']}/index.m3u8"
    listed = await (await client.get("/api/orders", headers=bearer(live_buyer))).json()
    assert [o["receipt_url"] for o in listed["orders"]] == [order["receipt_url"]]
    # no replay yet: no receipt to play
    resp = await client.get(order["receipt_url"])
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "receipt_not_found")

    await record_run(app[REPLAYS], sid, 14.0, base=first_frame)
    assert (await client.post(f"/api/streams/{sid}/end", headers=bearer(seller))).ok

    playlists = await vod_playlists(client, order["receipt_url"])
    assert playlists.video_url == f"/receipt/{order['id']}/video.m3u8"
    assert playlists.audio_url == f"/receipt/{order['id']}/audio.m3u8"
    assert playlists.audio is not None
    text = playlists.video
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    assert playlists.audio.rstrip().endswith("#EXT-X-ENDLIST")
    # bought 1 s into the media: from its start to 5 s after, in whole segments, the
    # same segments of both tracks
    segments = _segments(text)
    assert all(s.startswith(f"/replay/{sid}/seg-") for s in segments)
    assert _segments(playlists.audio) == [s.replace("/seg-", "/audio-seg-") for s in segments]
    seconds = _seconds(text)
    assert abs(_seconds(playlists.audio) - seconds) < 0.05  # to an AAC frame
    assert 6.0 <= seconds < 9.0
    url = f"http://{client.host}:{client.port}{order['receipt_url']}"
    counters, samples, duration = await asyncio.to_thread(decode_hls, url)
    assert counters == list(range(round(seconds * 30)))
    assert samples > 0.9 * 48_000 * seconds
    assert abs(duration - seconds) < 0.2

    # bought on the replay, 12 s in: 2 s to 14 s (the end)
    replay_buyer = make_token(Role.VIEWER, sub="replay-buyer")
    body = {"stream_id": sid, "sku": "MUG", "quantity": 1, "source": "replay"}
    for bad in (-1, "soon", 10**9):
        resp = await client.post(
            "/api/cart/items", json={**body, "position_s": bad}, headers=bearer(replay_buyer)
        )
        assert resp.status == 422, bad
    assert (await (await client.get("/api/cart", headers=bearer(replay_buyer))).json())[
        "lines"
    ] == []
    order = await _buy(client, replay_buyer, {**body, "position_s": 12.0}, "k2")
    url = f"http://{client.host}:{client.port}{order['receipt_url']}"
    counters, _, _ = await asyncio.to_thread(decode_hls, url)
    assert 0 < counters[0] <= 2 * 30  # from the segment 10 s before
    assert counters == list(range(counters[0], 14 * 30))  # to the end (under 5 s after)

    # an order bought on the replay without saying where has no moment
    order = await _buy(client, replay_buyer, body, "k3")
    assert (await client.get(order["receipt_url"])).status == 404
    resp = await client.get("/receipt/nosuchorder0/index.m3u8")
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "receipt_not_found")
