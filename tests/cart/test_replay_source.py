"""Buying from a replay: add-to-cart on an ended stream's replay at the product's current
price (no deal), and the order attributed to the stream as replay: on its lines, in the
stream's stats per source and in Prometheus."""

from __future__ import annotations

from livecast.auth import Role
from livecast.replay.keys import REPLAYS
from tests.cart.conftest import Shop
from tests.conftest import MakeToken, bearer
from tests.replay.media import record_run


async def test_a_replay_order_is_attributed_as_replay(shop: Shop, make_token: MakeToken) -> None:
    await shop.product("MUG", price=1000, stock=5)
    resp = await shop.client.post(
        f"/api/streams/{shop.stream_id}/deals",
        json={
            "sku": "MUG",
            "price": {"amount_minor": 700, "currency": "EUR"},
            "quantity": 2,
            "duration_s": 60,
        },
        headers=bearer(shop.seller),
    )
    deal_id = (await resp.json())["id"]
    live_buyer = make_token(Role.VIEWER, sub="live-buyer")
    assert (await shop.add(live_buyer, "MUG", deal_id=deal_id)).status == 201
    assert (await shop.checkout(live_buyer, "k-live")).status == 201
    # a stream on a replay before it ended: no replay yet
    replay_buyer = make_token(Role.VIEWER, sub="replay-buyer")
    resp = await shop.add(replay_buyer, "MUG", source="replay")
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "replay_not_found")

    await record_run(shop.app[REPLAYS], shop.stream_id, 1.2)
    resp = await shop.client.post(f"/api/streams/{shop.stream_id}/end", headers=bearer(shop.seller))
    assert resp.status == 200

    resp = await shop.add(replay_buyer, "MUG", source="replay", deal_id=deal_id)
    assert (resp.status, (await resp.json())["error"]["code"]) == (409, "deal_ended")
    resp = await shop.add(replay_buyer, "MUG")  # live: the stream is over
    assert (resp.status, (await resp.json())["error"]["code"]) == (409, "stream_not_live")
    resp = await shop.add(replay_buyer, "MUG", 2, source="bogus")
    assert resp.status == 422
    resp = await shop.add(replay_buyer, "MUG", 2, source="replay")
    assert resp.status == 201, await resp.text()
    line = await resp.json()
    assert line["source"] == "replay"
    assert line["unit_price"] == {"amount_minor": 1000, "currency": "EUR"}  # the price now
    assert (await shop.stock("MUG"))["held"] == 2

    resp = await shop.checkout(replay_buyer, "k-replay")
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    assert [(ln["source"], ln["quantity"]) for ln in order["lines"]] == [("replay", 2)]
    assert order["stream_id"] == shop.stream_id

    stats = await (
        await shop.client.get(f"/api/streams/{shop.stream_id}/stats", headers=bearer(shop.seller))
    ).json()
    assert stats["orders"] == 2
    by_source = {s["source"]: s for s in stats["by_source"]}
    assert by_source["live"]["orders"] == 1
    assert by_source["live"]["units_sold"] == 1
    assert by_source["live"]["gmv"] == [{"amount_minor": 700, "currency": "EUR"}]
    assert by_source["replay"]["orders"] == 1
    assert by_source["replay"]["units_sold"] == 2
    assert by_source["replay"]["gmv"] == [{"amount_minor": 2000, "currency": "EUR"}]
    assert by_source["replay"]["add_to_carts"] == 1
    assert by_source["live"]["add_to_carts"] == 1

    metrics = await (await shop.client.get("/metrics")).text()
    assert 'livecast_source_orders_total{currency="EUR",source="replay"} 1.0' in metrics
    assert 'livecast_source_orders_total{currency="EUR",source="live"} 1.0' in metrics
    assert (
        'livecast_source_order_value_minor_total{currency="EUR",source="replay"} 2000.0' in metrics
    )
    assert 'livecast_source_add_to_carts_total{source="replay"} 1.0' in metrics


async def test_an_ended_stream_without_a_replay_sells_nothing(
    shop: Shop, make_token: MakeToken
) -> None:
    await shop.product("CAP", price=900, stock=5)
    await shop.client.post(f"/api/streams/{shop.stream_id}/end", headers=bearer(shop.seller))
    buyer = make_token(Role.VIEWER, sub="b1")
    resp = await shop.add(buyer, "CAP", source="replay")
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "replay_not_found")
    assert (await shop.stock("CAP"))["held"] == 0
    cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
    assert cart["lines"] == []


async def test_a_clip_order_is_attributed_as_clip(shop: Shop, make_token: MakeToken) -> None:
    await shop.product("BAG", price=3000, stock=5)
    buyer = make_token(Role.VIEWER, sub="clip-buyer")
    resp = await shop.add(buyer, "BAG", source="clip")  # the stream is live: no clip yet
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "replay_not_found")
    await record_run(shop.app[REPLAYS], shop.stream_id, 1.2)
    resp = await shop.client.post(f"/api/streams/{shop.stream_id}/end", headers=bearer(shop.seller))
    assert resp.status == 200

    resp = await shop.add(buyer, "BAG", source="clip")
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["source"] == "clip"
    resp = await shop.checkout(buyer, "k-clip")
    assert resp.status == 201, await resp.text()
    assert [ln["source"] for ln in (await resp.json())["lines"]] == ["clip"]

    stats = await (
        await shop.client.get(f"/api/streams/{shop.stream_id}/stats", headers=bearer(shop.seller))
    ).json()
    by_source = {s["source"]: s for s in stats["by_source"]}
    assert (by_source["clip"]["orders"], by_source["clip"]["add_to_carts"]) == (1, 1)
    assert by_source["clip"]["gmv"] == [{"amount_minor": 3000, "currency": "EUR"}]
    assert by_source["live"]["orders"] == 0
    metrics = await (await shop.client.get("/metrics")).text()
    assert 'livecast_source_orders_total{currency="EUR",source="clip"} 1.0' in metrics
    assert 'livecast_source_add_to_carts_total{source="clip"} 1.0' in metrics


async def test_views_are_counted_by_source(shop: Shop, make_token: MakeToken) -> None:
    """A page's live-event socket counts its viewer where it watches: live while the stream
    is, then on the replay, or on a clip when the page says so; a bad source is refused."""
    url = f"/ws/streams/{shop.stream_id}"
    for name in ("ana", "bo"):
        token = make_token(Role.VIEWER, sub=name)
        async with shop.client.ws_connect(f"{url}?token={token}&source=replay") as ws:
            await ws.receive_json()  # the hello: counted by then
    resp = await shop.client.post(f"/api/streams/{shop.stream_id}/end", headers=bearer(shop.seller))
    assert resp.status == 200
    for name, source in (("cy", ""), ("dee", "&source=live"), ("ed", "&source=clip")):
        token = make_token(Role.VIEWER, sub=name)
        async with shop.client.ws_connect(f"{url}?token={token}{source}") as ws:
            await ws.receive_json()
    resp = await shop.client.get(f"{url}?source=vod")
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "invalid_query")

    stats = await (
        await shop.client.get(f"/api/streams/{shop.stream_id}/stats", headers=bearer(shop.seller))
    ).json()
    views = {s["source"]: s["views"] for s in stats["by_source"]}
    assert views == {"live": 2, "replay": 2, "clip": 1}
    assert stats["unique_viewers"] == 2
    metrics = await (await shop.client.get("/metrics")).text()
    assert 'livecast_source_views_total{source="live"} 2.0' in metrics
    assert 'livecast_source_views_total{source="replay"} 2.0' in metrics
    assert 'livecast_source_views_total{source="clip"} 1.0' in metrics
