"""Commerce events carry their media time and land on the stream's timeline, read through
``GET /api/streams/{id}/timeline`` (validation, who may read it)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from livecast.appkeys import REDIS
from livecast.auth import Role
from livecast.ingest.keys import MEDIA
from tests.conftest import Client, MakeToken, bearer
from tests.inventory.conftest import (
    assert_error,
    create_live_stream,
    listen,
    put_product,
)


async def _now_ms(app: web.Application) -> int:
    seconds, micros = await app[REDIS].time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _timeline(client: Client, stream_id: str, query: str = "", **kw: Any) -> Any:
    resp = await client.get(f"/api/streams/{stream_id}/timeline{query}", **kw)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_host_actions_carry_media_time_and_are_on_the_timeline(
    client: Client, make_token: MakeToken, app: web.Application
) -> None:
    seller = make_token(Role.SELLER, sub="seller-tl")
    stream_id = await create_live_stream(client, seller)
    await put_product(client, seller, "CAP-1", 5, price=1500)
    await put_product(client, seller, "CAP-2", 5, price=900)
    headers = bearer(seller)
    async with listen(app, stream_id) as log:
        # no media yet (a chat-only pre-show): the pin has no media time
        resp = await client.post(
            f"/api/streams/{stream_id}/pin", json={"sku": "CAP-1"}, headers=headers
        )
        assert resp.status == 200
        await log.wait_for("pin.set")
        assert log.events[-1]["media_time_ms"] is None

        # the publisher came: this node is the stream's origin
        origins = app[MEDIA].origins
        async with origins.exclusive(stream_id):
            assert await origins.claim(stream_id) is None
        before = await _now_ms(app)
        resp = await client.post(
            f"/api/streams/{stream_id}/pin", json={"sku": "CAP-2"}, headers=headers
        )
        assert resp.status == 200
        deal = {
            "sku": "CAP-2",
            "price": {"amount_minor": 700, "currency": "EUR"},
            "quantity": 2,
            "duration_s": 60,
        }
        resp = await client.post(f"/api/streams/{stream_id}/deals", json=deal, headers=headers)
        assert resp.status == 201, await resp.text()
        deal_id = (await resp.json())["id"]
        resp = await client.post(f"/api/deals/{deal_id}/end", headers=headers)
        assert resp.status == 200, await resp.text()
        auction = {
            "sku": "CAP-1",
            "start_price": {"amount_minor": 100, "currency": "EUR"},
            "duration_s": 60,
        }
        resp = await client.post(
            f"/api/streams/{stream_id}/auctions", json=auction, headers=headers
        )
        assert resp.status == 201, await resp.text()
        auction_id = (await resp.json())["id"]
        resp = await client.post(f"/api/auctions/{auction_id}/cancel", headers=headers)
        assert resp.status == 200, await resp.text()
        resp = await client.delete(f"/api/streams/{stream_id}/pin", headers=headers)
        assert resp.status == 200
        await log.wait_for("pin.cleared")
        after = await _now_ms(app)
        stamped = {
            e["type"]: e["media_time_ms"]
            for e in log.events
            if e["type"]
            in {"deal.started", "deal.ended", "auction.started", "auction.cancelled", "pin.cleared"}
        }
        assert set(stamped) == {
            "deal.started",
            "deal.ended",
            "auction.started",
            "auction.cancelled",
            "pin.cleared",
        }
        assert all(before <= t <= after for t in stamped.values()), stamped
        media_pin = log.events[[e["type"] for e in log.events].index("pin.set", 1)]
        assert before <= media_pin["media_time_ms"] <= after

    body = await _timeline(client, stream_id)
    assert body["stream_id"] == stream_id
    entries = body["entries"]
    cards = [e for e in entries if e["kind"] not in ("stock", "deal.updated")]
    assert [e["kind"] for e in cards] == [
        "pin.set",
        "pin.set",
        "deal.started",
        "deal.ended",
        "auction.started",
        "auction.cancelled",
        "pin.cleared",
    ]
    first, second = cards[0], cards[1]
    assert first["media_time_ms"] is None
    assert (first["sku"], first["title"]) == ("CAP-1", "Product CAP-1")
    assert first["price"] == {"amount_minor": 1500, "currency": "EUR"}
    assert second["media_time_ms"] == media_pin["media_time_ms"]
    assert cards[2]["deal_id"] == deal_id
    assert cards[2]["price"] == {"amount_minor": 700, "currency": "EUR"}
    assert cards[4]["auction_id"] == auction_id
    assert cards[6]["sku"] == "CAP-2"
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert body["next"] == ids[-1]
    # read on from a cursor, and by pages
    later = await _timeline(client, stream_id, f"?since={ids[2]}")
    assert [e["id"] for e in later["entries"]] == ids[3:]
    page = await _timeline(client, stream_id, "?limit=2")
    assert [e["id"] for e in page["entries"]] == ids[:2]
    done = await _timeline(client, stream_id, f"?since={ids[-1]}")
    assert done == {"stream_id": stream_id, "entries": [], "next": ids[-1]}


async def test_the_timeline_is_public_for_public_streams_only(
    client: Client, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER, sub="seller-tp")
    resp = await client.post(
        "/api/streams", json={"title": "Invite only", "public": False}, headers=bearer(seller)
    )
    assert resp.status == 201
    private = (await resp.json())["id"]
    public = await create_live_stream(client, seller, start=False)
    assert (await _timeline(client, public))["entries"] == []  # anyone
    await assert_error(await client.get(f"/api/streams/{private}/timeline"), 401, "unauthorized")
    stranger = make_token(Role.VIEWER)
    await assert_error(
        await client.get(f"/api/streams/{private}/timeline", headers=bearer(stranger)),
        403,
        "forbidden",
    )
    invited = make_token(Role.VIEWER, streams={private})
    for token in (invited, seller):
        await _timeline(client, private, headers=bearer(token))


async def test_bad_queries_are_refused(client: Client, make_token: MakeToken) -> None:
    seller = make_token(Role.SELLER, sub="seller-tq")
    stream_id = await create_live_stream(client, seller)
    for query in ("since=abc", "since=1-2-3", "since=", "limit=0", "limit=1001", "limit=x"):
        await assert_error(
            await client.get(f"/api/streams/{stream_id}/timeline?{query}"), 400, "invalid_query"
        )
    await assert_error(
        await client.get("/api/streams/nosuchstream/timeline"), 404, "stream_not_found"
    )
