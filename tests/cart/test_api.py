"""Cart, checkout and orders over real HTTP and real Redis: exactly one order per key,
stock exact under races, declines and refusals that change nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from livecast.aio import cancel_and_wait
from livecast.appkeys import KEYS, REDIS
from livecast.auth import Role
from livecast.cart.cart import CartEntry
from livecast.cart.payments import PaymentState
from livecast.cart.service import CART
from livecast.errors import ApiError
from livecast.inventory.batch import Steps
from livecast.inventory.service import INVENTORY
from tests.cart.conftest import Shop, new_buyer, sub_of
from tests.conftest import MakeToken, bearer

DECLINE_CARD = "4000000000000002"


async def test_add_view_checkout(shop: Shop, make_token: MakeToken) -> None:
    await shop.product("TEE-M", price=1999, stock=5)
    await shop.product("CAP", price=1500, stock=2)
    buyer = new_buyer(make_token)
    resp = await shop.add(buyer, "TEE-M", 2)
    assert resp.status == 201, await resp.text()
    line = await resp.json()
    assert line["line_total"] == {"amount_minor": 3998, "currency": "EUR"}
    assert 590 <= line["seconds_left"] <= 600
    assert (await shop.add(buyer, "CAP")).status == 201
    assert await shop.stock("TEE-M") == {"stock": 3, "held": 2, "sold": 0}

    cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
    assert len(cart["lines"]) == 2
    assert cart["totals"] == [{"amount_minor": 5498, "currency": "EUR"}]

    resp = await shop.checkout(buyer, "key-1")
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    assert order["total"] == {"amount_minor": 5498, "currency": "EUR"}
    assert order["units"] == 3
    assert order["stream_id"] == shop.stream_id
    assert await shop.stock("TEE-M") == {"stock": 3, "held": 0, "sold": 2}
    assert await shop.stock("CAP") == {"stock": 1, "held": 0, "sold": 1}
    cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
    assert cart["lines"] == []

    # the buyer, the seller and an admin see it; another viewer does not
    for token in (buyer, shop.seller, make_token(Role.ADMIN, streams={"*"})):
        resp = await shop.client.get(f"/api/orders/{order['id']}", headers=bearer(token))
        assert resp.status == 200
        assert (await resp.json()) == order
    resp = await shop.client.get(
        f"/api/orders/{order['id']}", headers=bearer(new_buyer(make_token))
    )
    assert resp.status == 403
    resp = await shop.client.get(
        "/api/orders", params={"stream": shop.stream_id}, headers=bearer(shop.seller)
    )
    assert [o["id"] for o in (await resp.json())["orders"]] == [order["id"]]
    resp = await shop.client.get(
        "/api/orders", params={"stream": shop.stream_id}, headers=bearer(buyer)
    )
    assert resp.status == 403

    stats = await (
        await shop.client.get(f"/api/streams/{shop.stream_id}/stats", headers=bearer(shop.seller))
    ).json()
    assert (stats["add_to_carts"], stats["orders"], stats["units_sold"]) == (2, 1, 3)
    assert stats["gmv"] == [{"amount_minor": 5498, "currency": "EUR"}]
    assert stats["average_order_value"] == [{"amount_minor": 5498, "currency": "EUR"}]


async def test_concurrent_checkouts_with_one_key_make_one_order(
    shop: Shop, make_token: MakeToken
) -> None:
    await shop.product("LAMP", price=4900, stock=10)
    buyer = new_buyer(make_token)
    await shop.add(buyer, "LAMP", 2)
    responses = await asyncio.gather(*(shop.checkout(buyer, "same-key") for _ in range(8)))
    bodies = [await r.json() for r in responses]
    assert {r.status for r in responses} == {201}, bodies
    assert len({b["id"] for b in bodies}) == 1
    replayed = [r.headers["Idempotent-Replayed"] for r in responses]
    assert replayed.count("false") == 1
    assert await shop.stock("LAMP") == {"stock": 8, "held": 0, "sold": 2}
    orders = await shop.app[CART].orders.for_buyer(bodies[0]["buyer_id"])
    assert len(orders) == 1
    payment = await shop.app[CART].payments.get(orders[0].id)  # type: ignore[attr-defined]
    assert payment.state is PaymentState.CAPTURED


async def test_retry_after_a_dropped_connection_makes_one_order(
    shop: Shop, make_token: MakeToken
) -> None:
    await shop.product("MUG", price=900, stock=3)
    buyer = new_buyer(make_token)
    await shop.add(buyer, "MUG")
    # the client gives up before the answer arrives; the server carries on
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.001):
            await shop.checkout(buyer, "flaky")
    resp = await shop.checkout(buyer, "flaky")
    assert resp.status == 201
    order = await resp.json()
    again = await (await shop.checkout(buyer, "flaky")).json()
    assert again == order
    assert len(await shop.app[CART].orders.for_buyer(order["buyer_id"])) == 1
    assert await shop.stock("MUG") == {"stock": 2, "held": 0, "sold": 1}


@pytest.mark.parametrize("drop_after", ["commit", "order_indexed", "finished"])
async def test_retry_after_the_server_lost_redis_mid_checkout_makes_one_order(
    shop: Shop, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch, drop_after: str
) -> None:
    """The server's Redis connection drops right after a step of a checkout has applied:
    the buyer's retry with the same key finishes that checkout, once."""
    await shop.product("VASE", price=3100, stock=4)
    await shop.product("BOWL", price=1200, stock=4)
    buyer = new_buyer(make_token)
    await shop.add(buyer, "VASE")
    await shop.add(buyer, "BOWL", 2)
    service = shop.app[CART]
    target: Any = {
        "commit": shop.app[INVENTORY].reservations,
        "order_indexed": service.orders,
        "finished": service.checkout,
    }[drop_after]
    name = {
        "commit": "commit_holds",
        "order_indexed": "index",  # listed, not yet stored
        # Stored, counted and cleared from the cart (one entry of a batch), not yet done.
        "finished": "_finish",
    }[drop_after]
    real = getattr(target, name)
    drops: list[str] = []

    async def then_drop(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        if not drops:
            drops.append(name)
            raise RedisConnectionError("Connection closed by server.")
        return result

    monkeypatch.setattr(target, name, then_drop)
    resp = await shop.checkout(buyer, "dropped")
    assert resp.status == 503, await resp.text()  # redis_unavailable, Retry-After
    assert drops == [name]

    resp = await shop.checkout(buyer, "dropped")
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    assert order["total"] == {"amount_minor": 5500, "currency": "EUR"}
    again = await shop.checkout(buyer, "dropped")
    assert again.status == 201
    assert await again.json() == order
    assert [o.id for o in await service.orders.for_buyer(order["buyer_id"])] == [order["id"]]
    assert await shop.stock("VASE") == {"stock": 3, "held": 0, "sold": 1}
    assert await shop.stock("BOWL") == {"stock": 2, "held": 0, "sold": 2}
    payment = await service.payments.get(order["id"])  # type: ignore[attr-defined]
    assert payment.state is PaymentState.CAPTURED
    cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
    assert (cart["lines"], cart["expired"]) == ([], [])
    stats = await (
        await shop.client.get(f"/api/streams/{shop.stream_id}/stats", headers=bearer(shop.seller))
    ).json()
    assert (stats["orders"], stats["units_sold"]) == (1, 3)


async def test_a_lease_taken_with_its_reply_lost_does_not_hold_off_the_retry(
    shop: Shop, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkout's lease is set in Redis, then the reply is lost (a dropped connection;
    a cancelled request does the same): the retry with the same key runs at once, not
    after the lease expires."""
    await shop.product("JUG", price=1500, stock=2)
    buyer = new_buyer(make_token)
    await shop.add(buyer, "JUG")
    redis = shop.app[REDIS]
    batcher = shop.app[INVENTORY].reservations.batcher
    real_send = batcher.send
    drops: list[str] = []

    def set_then_drop(steps: Steps) -> Any:
        sent = real_send(steps)
        leases = [c[1] for c in steps.commands if c[0] == "SET" and c[1].endswith(":lease")]
        if not leases or drops:
            return sent
        drops.append(leases[0])

        async def lost() -> Any:
            await sent
            raise RedisConnectionError("Connection closed by server.")

        return asyncio.ensure_future(lost())

    monkeypatch.setattr(batcher, "send", set_then_drop)
    resp = await shop.checkout(buyer, "lost-lease")
    assert resp.status == 503, await resp.text()
    assert drops
    assert await redis.exists(drops[0]) == 0  # given back, though the reply was lost

    async with asyncio.timeout(5):  # the lease would have held it off for its 30 s
        resp = await shop.checkout(buyer, "lost-lease")
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    assert [o.id for o in await shop.app[CART].orders.for_buyer(order["buyer_id"])] == [order["id"]]
    assert await shop.stock("JUG") == {"stock": 1, "held": 0, "sold": 1}


async def test_checkout_racing_hold_expiry_keeps_stock_exact(
    shop: Shop, make_token: MakeToken
) -> None:
    """Holds that expire while checkouts run: each checkout completes or fails whole."""
    await shop.product("SCARF", price=2500, stock=60)
    reservations = shop.app[INVENTORY].reservations
    statuses = []
    for i in range(25):
        buyer = new_buyer(make_token, f"racer{i}")
        sub = sub_of(buyer, shop)
        # from already expired by checkout time, through racing it, to surely in time
        ttl_s = 0.001 if i == 0 else (1.0 if i == 24 else 0.002 * i)
        hold = await reservations.reserve("SCARF", 2, sub, f"h{i}", ttl_s=ttl_s)
        await shop.app[CART].carts.add(sub, _entry_for("SCARF", hold.hold_id, shop.stream_id))
        if i == 0:
            await asyncio.sleep(0.01)
        sweeping = asyncio.create_task(_keep_sweeping(shop, "SCARF"))
        resp = await shop.checkout(buyer, f"race-{i}")
        await cancel_and_wait(sweeping)
        statuses.append(resp.status)
        assert resp.status in (201, 409), await resp.text()
    assert {201, 409} <= set(statuses)
    await asyncio.sleep(0.1)
    await reservations.expire_due("SCARF")
    sold = 2 * statuses.count(201)
    assert await shop.stock("SCARF") == {"stock": 60 - sold, "held": 0, "sold": sold}


async def _keep_sweeping(shop: Shop, sku: str) -> None:
    while True:
        await shop.app[INVENTORY].reservations.expire_due(sku)
        await asyncio.sleep(0.001)


async def test_declined_payment_leaves_holds_as_they_were(
    shop: Shop, make_token: MakeToken
) -> None:
    await shop.product("BOOT", price=12000, stock=4)
    buyer = new_buyer(make_token)
    await shop.add(buyer, "BOOT", 2)
    resp = await shop.checkout(buyer, "k1", {"card_number": DECLINE_CARD})
    assert resp.status == 402
    assert (await resp.json())["error"]["code"] == "payment_declined"
    assert await shop.stock("BOOT") == {"stock": 2, "held": 2, "sold": 0}
    # the same key gives the same answer; a new attempt with a good card succeeds
    assert (await shop.checkout(buyer, "k1", {"card_number": DECLINE_CARD})).status == 402
    resp = await shop.checkout(buyer, "k2", {"card_number": "4242424242424242"})
    assert resp.status == 201
    assert await shop.stock("BOOT") == {"stock": 2, "held": 0, "sold": 2}


async def test_refusals_change_nothing(shop: Shop, make_token: MakeToken) -> None:
    await shop.product("SOCK", price=500, stock=10)
    await shop.product("USD-HAT", price=2000, stock=10, currency="USD")
    buyer = new_buyer(make_token)

    async def error(resp: Any, status: int, code: str) -> None:
        assert resp.status == status, await resp.text()
        assert (await resp.json())["error"]["code"] == code

    await error(await shop.checkout(buyer, "empty"), 422, "empty_cart")
    # an empty-cart refusal keeps no record: the key works once the cart has something
    await shop.add(buyer, "SOCK", 2)
    await error(await shop.checkout(buyer, None), 400, "missing_idempotency_key")
    await error(await shop.checkout(buyer, "bad key with spaces"), 400, "invalid_idempotency_key")
    await error(await shop.checkout(buyer, "k", {"card": 1}), 422, "invalid_field")
    # anonymous buyers and another user's hold
    await error(
        await shop.client.post(
            "/api/cart/items", json={"stream_id": shop.stream_id, "sku": "SOCK"}
        ),
        401,
        "unauthorized",
    )
    cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
    hold_id = cart["lines"][0]["hold_id"]
    other = new_buyer(make_token, "other")
    await error(
        await shop.client.delete(f"/api/cart/items/{hold_id}", headers=bearer(other)),
        404,
        "not_in_cart",
    )
    # bad add-to-cart bodies
    for body, status, code in [
        ({"stream_id": shop.stream_id, "sku": "SOCK", "quantity": 0}, 422, "invalid_field"),
        ({"stream_id": shop.stream_id, "sku": "SOCK", "quantity": 1.5}, 422, "invalid_field"),
        ({"stream_id": shop.stream_id, "sku": "NOPE"}, 404, "unknown_sku"),
        ({"stream_id": "nope", "sku": "SOCK"}, 404, "stream_not_found"),
        ({"stream_id": shop.stream_id, "sku": "SOCK", "quantity": 11}, 409, "insufficient_stock"),
    ]:
        await error(
            await shop.client.post("/api/cart/items", json=body, headers=bearer(buyer)),
            status,
            code,
        )
    assert await shop.stock("SOCK") == {"stock": 8, "held": 2, "sold": 0}

    # mixed currencies are refused whole
    await shop.add(buyer, "USD-HAT")
    await error(await shop.checkout(buyer, "mixed"), 422, "mixed_currencies")
    assert await shop.stock("SOCK") == {"stock": 8, "held": 2, "sold": 0}
    cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
    (hat,) = [line for line in cart["lines"] if line["sku"] == "USD-HAT"]
    await shop.client.delete(f"/api/cart/items/{hat['hold_id']}", headers=bearer(buyer))
    assert await shop.stock("USD-HAT") == {"stock": 10, "held": 0, "sold": 0}

    # a key reused with a different body
    assert (await shop.checkout(buyer, "once", {})).status == 201
    await error(
        await shop.checkout(buyer, "once", {"card_number": "4242424242424242"}),
        422,
        "idempotency_key_reused",
    )
    assert await shop.stock("SOCK") == {"stock": 8, "held": 0, "sold": 2}


async def test_hold_ids_cannot_take_another_hold(shop: Shop, make_token: MakeToken) -> None:
    """A client-chosen hold id replays its own add-to-cart only: another buyer's hold id, or
    this buyer's id again for another SKU, is refused and holds nothing more."""
    await shop.product("JUG", price=800, stock=5)
    await shop.product("CUP", price=400, stock=5)
    ann, bob = new_buyer(make_token, "ann"), new_buyer(make_token, "bob")
    first = await shop.add(ann, "JUG", 2, hold_id="mine-1")
    assert first.status == 201
    replay = await shop.add(ann, "JUG", 2, hold_id="mine-1")
    assert replay.status == 201
    made, replayed = await first.json(), await replay.json()
    assert (replayed["hold_id"], replayed["expires_at"]) == (made["hold_id"], made["expires_at"])

    for buyer, sku in ((bob, "JUG"), (ann, "CUP")):
        resp = await shop.add(buyer, sku, 2, hold_id="mine-1")
        assert resp.status == 409, await resp.text()
        assert (await resp.json())["error"]["code"] == "hold_conflict"
    assert await shop.stock("JUG") == {"stock": 3, "held": 2, "sold": 0}
    assert await shop.stock("CUP") == {"stock": 5, "held": 0, "sold": 0}
    bob_cart = await (await shop.client.get("/api/cart", headers=bearer(bob))).json()
    assert bob_cart["lines"] == []
    ann_cart = await (await shop.client.get("/api/cart", headers=bearer(ann))).json()
    assert [(line["sku"], line["quantity"]) for line in ann_cart["lines"]] == [("JUG", 2)]
    await error_is(await shop.checkout(bob, "bob-1"), 422, "empty_cart")


async def test_add_to_cart_needs_a_live_stream(shop: Shop, make_token: MakeToken) -> None:
    await shop.product("KITE", price=2000, stock=6)
    resp = await shop.client.post(
        f"/api/streams/{shop.stream_id}/deals",
        json={
            "sku": "KITE",
            "price": {"amount_minor": 1500, "currency": "EUR"},
            "quantity": 3,
            "duration_s": 600,
        },
        headers=bearer(shop.seller),
    )
    assert resp.status == 201, await resp.text()
    deal_id = (await resp.json())["id"]
    buyer = new_buyer(make_token)
    assert (await shop.add(buyer, "KITE", 1, deal_id=deal_id)).status == 201
    await error_is(await shop.add(buyer, "KITE", 1, deal_id=deal_id), 409, "over_limit")
    await shop.client.post(f"/api/streams/{shop.stream_id}/end", headers=bearer(shop.seller))
    for extra in ({"deal_id": deal_id}, {}):
        await error_is(
            await shop.add(new_buyer(make_token), "KITE", 1, **extra), 409, "stream_not_live"
        )
    # the deal's 2 unheld units went back to free stock when the stream ended
    assert await shop.stock("KITE") == {"stock": 5, "held": 1, "sold": 0}


async def error_is(resp: Any, status: int, code: str) -> None:
    assert resp.status == status, await resp.text()
    assert (await resp.json())["error"]["code"] == code


async def test_expired_holds_leave_the_cart_and_say_so(shop: Shop, make_token: MakeToken) -> None:
    await shop.product("PEN", price=300, stock=5)
    buyer = new_buyer(make_token)
    sub = sub_of(buyer, shop)
    hold = await shop.app[INVENTORY].reservations.reserve("PEN", 1, sub, "short-hold", ttl_s=0.05)
    await shop.app[CART].carts.add(sub, _entry_for("PEN", hold.hold_id, shop.stream_id))
    await asyncio.sleep(0.1)
    resp = await shop.checkout(buyer, "late")
    assert resp.status == 409
    body = await resp.json()
    assert body["error"]["code"] == "hold_expired"
    assert body["error"]["holds"] == ["short-hold"]
    cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
    assert cart["lines"] == []
    assert cart["expired"] == [{"hold_id": "short-hold", "sku": "PEN", "title": "Pen"}]
    await shop.app[INVENTORY].reservations.expire_due("PEN")
    assert await shop.stock("PEN") == {"stock": 5, "held": 0, "sold": 0}


def _entry_for(sku: str, hold_id: str, stream_id: str) -> CartEntry:
    return CartEntry(hold_id=hold_id, sku=sku, stream_id=stream_id, title=sku.title())


async def test_metrics_count_orders(shop: Shop, make_token: MakeToken) -> None:
    await shop.product("GLOVE", price=1250, stock=3)
    buyer = new_buyer(make_token)
    await shop.add(buyer, "GLOVE", 2)
    assert (await shop.checkout(buyer, "m1")).status == 201
    assert (await shop.checkout(buyer, "m2")).status == 422
    resp = await shop.client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    assert 'livecast_orders_total{currency="EUR"} 1.0' in text
    assert 'livecast_order_value_minor_total{currency="EUR"} 2500.0' in text
    assert 'livecast_checkouts_refused_total{code="empty_cart"} 1.0' in text
    assert "livecast_add_to_carts_total 1.0" in text
    assert 'route="/api/checkout"' in text


async def test_order_and_stats_payloads_match_the_openapi_schemas(
    shop: Shop, make_token: MakeToken
) -> None:
    schemas = (await (await shop.client.get("/api/openapi.json")).json())["components"]["schemas"]

    def fields(name: str) -> set[str]:
        return set(schemas[name]["properties"])

    await shop.product("BELT", price=2200, stock=2)
    buyer = new_buyer(make_token)
    await shop.add(buyer, "BELT")
    order = await (await shop.checkout(buyer, "schema")).json()
    assert set(order) == fields("Order")
    assert set(schemas["Order"]["required"]) <= set(order)
    assert set(order["lines"][0]) == fields("OrderLine")
    stats = await (
        await shop.client.get(f"/api/streams/{shop.stream_id}/stats", headers=bearer(shop.seller))
    ).json()
    assert set(stats) == fields("StreamStats")
    assert schemas["OrderEvent"]["properties"]["data"] == {"$ref": "#/components/schemas/Order"}


async def _start_deal(shop: Shop, stream_id: str, sku: str) -> str:
    resp = await shop.client.post(
        f"/api/streams/{stream_id}/deals",
        json={
            "sku": sku,
            "price": {"amount_minor": 1000, "currency": "EUR"},
            "quantity": 3,
            "duration_s": 600,
        },
        headers=bearer(shop.seller),
    )
    assert resp.status == 201, await resp.text()
    deal_id: str = (await resp.json())["id"]
    return deal_id


async def test_a_deal_is_bought_only_on_its_own_stream(shop: Shop, make_token: MakeToken) -> None:
    """A deal id sent with another live stream is refused: the sale would be credited to
    the wrong stream. Nothing is held, counted or added."""
    await shop.product("DRUM", price=3000, stock=8)
    resp = await shop.client.post("/api/streams", json={"title": "B"}, headers=bearer(shop.seller))
    other_stream = (await resp.json())["id"]
    await shop.client.post(f"/api/streams/{other_stream}/start", headers=bearer(shop.seller))
    deal_id = await _start_deal(shop, shop.stream_id, "DRUM")
    buyer = new_buyer(make_token)
    body = {"stream_id": other_stream, "sku": "DRUM", "deal_id": deal_id}
    resp = await shop.client.post("/api/cart/items", json=body, headers=bearer(buyer))
    await error_is(resp, 422, "deal_not_in_stream")
    assert await shop.stock("DRUM") == {"stock": 5, "held": 0, "sold": 0}
    deal = await (await shop.client.get(f"/api/deals/{deal_id}")).json()
    assert (deal["left"], deal["held"]) == (3, 0)
    cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
    assert cart["lines"] == []
    stats = await (
        await shop.client.get(f"/api/streams/{other_stream}/stats", headers=bearer(shop.seller))
    ).json()
    assert stats["add_to_carts"] == 0
    await error_is(await shop.add(buyer, "DRUM", deal_id="no-such-deal"), 404, "unknown_deal")
    # On its own stream it sells, at the deal's price.
    resp = await shop.add(buyer, "DRUM", deal_id=deal_id)
    assert resp.status == 201, await resp.text()
    line = await resp.json()
    assert (line["stream_id"], line["unit_price"]["amount_minor"]) == (shop.stream_id, 1000)


async def test_a_line_being_checked_out_is_not_dropped(shop: Shop, make_token: MakeToken) -> None:
    """While a checkout (here one whose node stopped between its phases) has prepared a
    hold, removing its line is 409 and reading the cart keeps it; once that checkout
    aborts, the hold is held again, still in the cart, and removing it gives it back."""
    await shop.product("OAR", price=4500, stock=4)
    buyer = new_buyer(make_token)
    resp = await shop.add(buyer, "OAR", 2)
    hold_id = (await resp.json())["hold_id"]
    reservations = shop.app[INVENTORY].reservations
    base = reservations.base("OAR")
    prepared = await reservations.batcher.call(
        reservations._prepare, (base, hold_id, "ord_elsewhere", "30000")
    )
    assert prepared == [b"ok", b"preparing"]

    resp = await shop.client.delete(f"/api/cart/items/{hold_id}", headers=bearer(buyer))
    await error_is(resp, 409, "hold_in_checkout")
    cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
    assert [(line["hold_id"], line["state"]) for line in cart["lines"]] == [(hold_id, "preparing")]
    assert cart["expired"] == []
    assert await shop.stock("OAR") == {"stock": 2, "held": 2, "sold": 0}

    await reservations.batcher.call(reservations._abort, (base, hold_id, "ord_elsewhere"))
    resp = await shop.client.delete(f"/api/cart/items/{hold_id}", headers=bearer(buyer))
    assert resp.status == 200, await resp.text()
    assert await shop.stock("OAR") == {"stock": 4, "held": 0, "sold": 0}
    cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
    assert cart["lines"] == []


async def _payments(shop: Shop) -> dict[str, str]:
    """The test provider's ledger: payment id -> state, for every call it recorded."""
    ledger: dict[str, str] = {}
    pattern = shop.app[KEYS].key("payments", "test", "*")
    provider: Any = shop.app[CART].payments
    async for key in shop.app[REDIS].scan_iter(match=pattern):
        payment = await provider.get(key.decode().rsplit(":", 1)[1])
        ledger[payment.id] = payment.state.value
    return ledger


async def test_holds_bought_or_being_bought_elsewhere_are_refused_before_paying(
    shop: Shop, make_token: MakeToken
) -> None:
    """A cart line whose hold another order already committed (a checkout that stopped
    before clearing the cart), or another checkout is committing, is a clear 409 up front:
    the payment provider is never called."""
    await shop.product("KAYAK", price=30000, stock=3)
    buyer = new_buyer(make_token)
    sub = sub_of(buyer, shop)
    resp = await shop.add(buyer, "KAYAK")
    entry = await shop.app[CART].carts.find(sub, (await resp.json())["hold_id"])
    assert entry is not None
    resp = await shop.checkout(buyer, "first")
    assert resp.status == 201, await resp.text()
    first = await resp.json()
    assert await _payments(shop) == {first["id"]: "captured"}

    await shop.app[CART].carts.add(sub, entry)  # the bought line is back in the cart
    resp = await shop.checkout(buyer, "second")
    await error_is(resp, 409, "hold_committed")
    assert (await resp.json())["error"]["holds"] == [entry.hold_id]
    assert await _payments(shop) == {first["id"]: "captured"}
    assert await shop.stock("KAYAK") == {"stock": 2, "held": 0, "sold": 1}
    await shop.client.delete(f"/api/cart/items/{entry.hold_id}", headers=bearer(buyer))

    resp = await shop.add(buyer, "KAYAK")
    hold_id = (await resp.json())["hold_id"]
    reservations = shop.app[INVENTORY].reservations
    await reservations.batcher.call(
        reservations._prepare, (reservations.base("KAYAK"), hold_id, "ord_elsewhere", "30000")
    )
    resp = await shop.checkout(buyer, "third")
    await error_is(resp, 409, "hold_in_checkout")
    assert (await resp.json())["error"]["holds"] == [hold_id]
    assert await _payments(shop) == {first["id"]: "captured"}
    assert await shop.stock("KAYAK") == {"stock": 1, "held": 1, "sold": 1}
    # The refusals kept no record: once the other checkout aborts, the same key pays.
    await reservations.batcher.call(
        reservations._abort, (reservations.base("KAYAK"), hold_id, "ord_elsewhere")
    )
    resp = await shop.checkout(buyer, "third")
    assert resp.status == 201, await resp.text()
    assert len(await _payments(shop)) == 2
    assert await shop.stock("KAYAK") == {"stock": 1, "held": 0, "sold": 2}


async def test_a_lost_add_to_cart_answer_leaves_the_hold_in_the_cart(
    shop: Shop, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reservation runs, then its answer is lost (503): the hold is already a line of
    the buyer's cart, never units held in nobody's cart; the retry with the same hold id
    answers with that hold and holds nothing more."""
    await shop.product("RUG", price=9900, stock=3)
    buyer = new_buyer(make_token)
    reservations = shop.app[INVENTORY].reservations
    real = reservations.reserve
    drops: list[str] = []

    async def reserve_then_drop(*args: Any, **kwargs: Any) -> Any:
        hold = await real(*args, **kwargs)
        if not drops:
            drops.append(hold.hold_id)
            raise RedisConnectionError("Connection closed by server.")
        return hold

    monkeypatch.setattr(reservations, "reserve", reserve_then_drop)
    resp = await shop.add(buyer, "RUG", 2, hold_id="rug-1")
    assert resp.status == 503, await resp.text()
    assert await shop.stock("RUG") == {"stock": 1, "held": 2, "sold": 0}
    cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
    assert [(line["hold_id"], line["state"], line["quantity"]) for line in cart["lines"]] == [
        ("rug-1", "held", 2)
    ]
    assert cart["lines"][0]["title"] == "Product RUG"

    resp = await shop.add(buyer, "RUG", 2, hold_id="rug-1")
    assert resp.status == 201, await resp.text()
    assert await shop.stock("RUG") == {"stock": 1, "held": 2, "sold": 0}
    resp = await shop.checkout(buyer, "rug")
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["lines"][0]["title"] == "Product RUG"


async def test_refused_add_to_cart_leaves_no_line_and_no_hold(
    shop: Shop, make_token: MakeToken
) -> None:
    await shop.product("LAST", price=500, stock=1)
    first, second = new_buyer(make_token), new_buyer(make_token)
    assert (await shop.add(first, "LAST")).status == 201
    cart_key = shop.app[KEYS].key("cart", sub_of(second, shop))
    for body, status, code in [
        ({"sku": "LAST"}, 409, "sold_out"),
        ({"sku": "NOPE"}, 404, "unknown_sku"),
        ({"sku": "LAST", "deal_id": "no-such-deal"}, 404, "unknown_deal"),
        ({"sku": "LAST", "stream_id": "no-such-stream"}, 404, "stream_not_found"),
    ]:
        resp = await shop.client.post(
            "/api/cart/items",
            json={"stream_id": shop.stream_id, "quantity": 1, **body},
            headers=bearer(second),
        )
        await error_is(resp, status, code)
        assert await shop.app[REDIS].hlen(cart_key) == 0
    assert await shop.stock("LAST") == {"stock": 0, "held": 1, "sold": 0}
    cart = await (await shop.client.get("/api/cart", headers=bearer(second))).json()
    assert (cart["lines"], cart["expired"]) == ([], [])


async def test_a_sold_out_sku_is_refused_as_the_reservation_would_refuse_it(
    shop: Shop, make_token: MakeToken
) -> None:
    """An add reads the SKU's free units with the stream, and refuses a new line for a
    sold-out SKU without reserving: the answer is the one the reservation gives, another
    seller's product not granted to the stream is still ``product_not_granted``, and a
    retried hold id still gets its hold."""
    await shop.product("LAST", price=500, stock=1)
    first, second = new_buyer(make_token), new_buyer(make_token)
    made = await shop.add(first, "LAST", hold_id="last-1")
    assert made.status == 201, await made.text()
    again = await shop.add(first, "LAST", hold_id="last-1")
    assert again.status == 201, await again.text()
    kept = ("hold_id", "quantity", "expires_at", "state")
    first_line, second_line = await made.json(), await again.json()
    assert [second_line[k] for k in kept] == [first_line[k] for k in kept]
    assert second_line["hold_id"] == "last-1"
    await error_is(await shop.add(second, "LAST"), 409, "sold_out")
    await error_is(await shop.add(second, "LAST", 2), 409, "sold_out")

    other = make_token(Role.SELLER, sub="seller-2", name="Bo")
    resp = await shop.client.put(
        "/api/products/BAG",
        json={"title": "Bag", "price": {"amount_minor": 900, "currency": "EUR"}, "stock": 0},
        headers=bearer(other),
    )
    assert resp.status in (200, 201), await resp.text()
    await error_is(await shop.add(second, "BAG"), 403, "product_not_granted")

    cart = await (await shop.client.get("/api/cart", headers=bearer(second))).json()
    assert (cart["lines"], cart["expired"]) == ([], [])
    assert await shop.stock("LAST") == {"stock": 0, "held": 1, "sold": 0}


async def test_a_cart_never_passes_its_line_limit_under_concurrent_adds(
    shop: Shop, make_token: MakeToken
) -> None:
    """Sixty adds at once from one buyer: the cart keeps exactly ``max_lines`` lines, the
    others are 409 ``cart_full`` and hold nothing."""
    await shop.product("BEAD", price=100, stock=100)
    buyer = new_buyer(make_token)
    limit = shop.app[CART].carts.max_lines
    responses = await asyncio.gather(*(shop.add(buyer, "BEAD") for _ in range(limit + 10)))
    statuses = [r.status for r in responses]
    assert statuses.count(201) == limit, statuses
    for resp in responses:
        if resp.status != 201:
            await error_is(resp, 409, "cart_full")
    cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
    assert len(cart["lines"]) == limit
    assert await shop.stock("BEAD") == {"stock": 100 - limit, "held": limit, "sold": 0}


async def test_a_cart_read_between_an_adds_line_and_its_hold_leaves_no_stray_hold(
    shop: Shop, make_token: MakeToken
) -> None:
    """An add-to-cart writes its line, then reserves. A cart read in between finds a line
    with no hold: it drops the line and takes the hold id for good, so the reservation
    still on its way is refused and holds nothing for a line that is gone."""
    await shop.product("ORB", price=700, stock=3)
    buyer = new_buyer(make_token)
    sub = sub_of(buyer, shop)
    entry = CartEntry(hold_id="late-1", sku="ORB", stream_id=shop.stream_id)
    assert await shop.app[CART].carts.stage(sub, entry) == b"added"

    cart = await (await shop.client.get("/api/cart", headers=bearer(buyer))).json()
    assert cart["lines"] == []
    assert cart["expired"] == [{"hold_id": "late-1", "sku": "ORB", "title": "ORB"}]
    with pytest.raises(ApiError) as refused:
        await shop.app[INVENTORY].reservations.reserve(
            "ORB", 1, sub, "late-1", stream_id=shop.stream_id, seller_id="seller-1"
        )
    assert refused.value.code == "hold_conflict"
    assert await shop.stock("ORB") == {"stock": 3, "held": 0, "sold": 0}
    assert await shop.app[CART].carts.entries(sub) == []


async def test_orders_come_a_page_at_a_time_newest_first(shop: Shop, make_token: MakeToken) -> None:
    await shop.product("SOCK", price=500, stock=20)
    buyer = new_buyer(make_token)
    placed: list[str] = []
    for n in range(7):
        assert (await shop.add(buyer, "SOCK")).status == 201
        resp = await shop.checkout(buyer, f"page-{n}")
        assert resp.status == 201, await resp.text()
        placed.append((await resp.json())["id"])

    async def page(token: str, **params: str) -> Any:
        resp = await shop.client.get("/api/orders", params=params, headers=bearer(token))
        assert resp.status == 200, await resp.text()
        return await resp.json()

    for token, scope in ((buyer, {}), (shop.seller, {"stream": shop.stream_id})):
        seen: list[str] = []
        after: str | None = None
        pages = 0
        while True:
            data = await page(token, limit="3", **scope, **({"after": after} if after else {}))
            pages += 1
            seen += [o["id"] for o in data["orders"]]
            after = data["next_after"]
            if after is None:
                break
            assert after == data["orders"][-1]["id"]
        # 3 + 3 + 1, newest first, each once; orders placed meanwhile do not shift a page
        assert (seen, pages) == (placed[::-1], 3)
    first = await page(buyer, limit="3")
    assert (await shop.add(buyer, "SOCK")).status == 201
    assert (await shop.checkout(buyer, "page-late")).status == 201
    second = await page(buyer, limit="3", after=first["next_after"])
    assert [o["id"] for o in second["orders"]] == placed[::-1][3:6]

    for bad in ("ord_nosuchorder", "not-an-order", "ord_" + "x" * 70):
        resp = await shop.client.get("/api/orders", params={"after": bad}, headers=bearer(buyer))
        assert resp.status == 400, bad
        assert (await resp.json())["error"]["code"] == "invalid_query"
    # another buyer's order is not in this buyer's list
    other = new_buyer(make_token)
    resp = await shop.client.get("/api/orders", params={"after": placed[0]}, headers=bearer(other))
    assert resp.status == 400
