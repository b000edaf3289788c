"""Price knock-downs over real HTTP and Redis: the quantity leaves stock at the start,
taps (or the clock) knock the price down exactly a step at a time to the floor, a buy is
a cart hold at the price of the moment checked out as usual, never more units than the
quantity, and refused actions change nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from livecast.app import create_app
from livecast.auth import Role
from livecast.config import Settings
from tests.conftest import AppServer, MakeToken, bearer
from tests.ingest.conftest import eventually
from tests.inventory.conftest import assert_error, listen
from tests.selling.conftest import Floor, buyer


def eur(amount: int) -> dict[str, Any]:
    return {"amount_minor": amount, "currency": "EUR"}


async def start(on: Floor, sku: str, /, **change: Any) -> Any:
    body: dict[str, Any] = {
        "sku": sku,
        "start_price": eur(1000),
        "step": eur(100),
        "floor": eur(700),
        "quantity": 6,
        "duration_s": 60,
        "taps_per_step": 5,
    }
    body.update(change)
    return await on.client.post(
        f"/api/streams/{on.stream_id}/knockdowns", json=body, headers=bearer(on.seller)
    )


async def tap(floor: Floor, token: str, kid: str, count: int = 1) -> Any:
    return await floor.client.post(
        f"/api/knockdowns/{kid}/taps", json={"count": count}, headers=bearer(token)
    )


async def buy(floor: Floor, token: str, kid: str, key: str | None = None) -> Any:
    return await floor.client.post(
        f"/api/knockdowns/{kid}/buy", json={"key": key or uuid.uuid4().hex}, headers=bearer(token)
    )


async def read(floor: Floor, kid: str) -> dict[str, Any]:
    data: dict[str, Any] = await (await floor.client.get(f"/api/knockdowns/{kid}")).json()
    return data


async def test_taps_knock_the_price_down_and_the_first_buyers_get_each_price(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("SHOE-1", stock=10)
    ana, bo, cy = (buyer(make_token, n) for n in ("ana", "bo", "cy"))
    async with listen(app, floor.stream_id) as log:
        resp = await start(floor, "SHOE-1", per_price=2)
        assert resp.status == 201, await resp.text()
        knock = await resp.json()
        assert resp.headers["Location"] == f"/api/knockdowns/{knock['id']}"
        assert (knock["price"], knock["next_price"], knock["taps_to_next"]) == (
            eur(1000),
            eur(900),
            5,
        )
        # The quantity is the knock-down's from now on.
        assert await floor.stock("SHOE-1") == (4, 6, 0, 0)
        await log.wait_for("knockdown.started")

        first = await (await buy(floor, ana, knock["id"], key="b1")).json()
        assert (first["price"], first["left"]) == (eur(1000), 5)
        again = await (await buy(floor, ana, knock["id"], key="b1")).json()
        assert (again["replayed"], again["hold_id"]) == (True, first["hold_id"])
        await assert_error(await buy(floor, ana, knock["id"]), 409, "over_limit")
        assert (await buy(floor, bo, knock["id"])).status == 200
        # Two units at this price, and they are gone.
        await assert_error(await buy(floor, cy, knock["id"]), 409, "price_sold_out")
        assert await floor.stock("SHOE-1") == (4, 4, 2, 0)

        # Four taps do not move it; the fifth does.
        tapped = await (await tap(floor, cy, knock["id"], 4)).json()
        assert (tapped["price"], tapped["taps_to_next"]) == (eur(1000), 1)
        stepped = await (await tap(floor, cy, knock["id"])).json()
        assert (stepped["price"], stepped["taps_to_next"]) == (eur(900), 5)
        await log.wait_for("knockdown.updated")
        assert any(u["price"] == eur(900) for u in log.of("knockdown.updated"))
        assert (await buy(floor, cy, knock["id"])).status == 200

        # Taps from many viewers at once: each step exactly once, never under the floor.
        viewers = [buyer(make_token, f"v{i}") for i in range(20)]
        answers = await asyncio.gather(*(tap(floor, v, knock["id"]) for v in viewers))
        assert {r.status for r in answers} == {200}
        now = await read(floor, knock["id"])
        assert (now["price"], now["next_price"], now["taps"], now["steps"]) == (
            eur(700),
            None,
            25,
            3,
        )
        # The seller neither taps nor buys; nobody anonymous does.
        await assert_error(await tap(floor, floor.seller, knock["id"]), 403, "own_knockdown")
        await assert_error(await buy(floor, floor.seller, knock["id"]), 403, "own_knockdown")
        await assert_error(
            await floor.client.post(f"/api/knockdowns/{knock['id']}/taps", json={"count": 1}),
            401,
            "unauthorized",
        )
        # The floor's two units go and the knock-down is sold out; the rest returns.
        assert (await buy(floor, viewers[0], knock["id"])).status == 200
        assert (await buy(floor, viewers[1], knock["id"])).status == 200
        await log.wait_for("knockdown.ended")
        assert log.of("knockdown.ended")[0]["state"] == "sold_out"
    assert await floor.stock("SHOE-1") == (5, 0, 5, 0)
    await assert_error(await buy(floor, viewers[2], knock["id"]), 409, "knockdown_ended")
    await assert_error(await tap(floor, viewers[2], knock["id"]), 409, "knockdown_ended")

    # A buyer's hold is a cart line at the knock-down price; checkout is as usual.
    cart = await (await floor.client.get("/api/cart", headers=bearer(cy))).json()
    (line,) = cart["lines"]
    assert line["line_total"] == eur(900)
    resp = await floor.client.post("/api/checkout", headers={**bearer(cy), "Idempotency-Key": "p1"})
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["total"] == eur(900)
    assert await floor.stock("SHOE-1") == (5, 0, 4, 1)

    stats_url = f"/api/streams/{floor.stream_id}/knockdown-stats"
    await assert_error(await floor.client.get(stats_url, headers=bearer(ana)), 403, "forbidden")
    stats = await (await floor.client.get(stats_url, headers=bearer(floor.seller))).json()
    assert (stats["runs"], stats["sold_out"], stats["taps"], stats["steps"], stats["units"]) == (
        1,
        1,
        25,
        3,
        5,
    )
    assert stats["gmv"] == [eur(1000 + 1000 + 900 + 700 + 700)]
    metrics = await (await floor.client.get("/metrics")).text()
    assert "livecast_knockdown_taps_total 25.0" in metrics
    assert "livecast_knockdown_steps_total 3.0" in metrics
    assert 'livecast_knockdowns_ended_total{state="sold_out"} 1.0' in metrics


async def test_concurrent_buys_never_take_more_than_the_quantity(
    floor: Floor, make_token: MakeToken
) -> None:
    await floor.product("CAP-1", stock=8)
    knock = await (await start(floor, "CAP-1", quantity=5, pay_within_s=1)).json()
    buyers = [buyer(make_token, f"b{i}") for i in range(12)]
    answers = await asyncio.gather(*(buy(floor, t, knock["id"]) for t in buyers))
    assert sorted(r.status for r in answers) == [200] * 5 + [409] * 7
    refused = {(await r.json())["error"]["code"] for r in answers if r.status == 409}
    assert refused <= {"sold_out", "knockdown_ended"}
    assert (await read(floor, knock["id"]))["state"] == "sold_out"
    assert await floor.stock("CAP-1") == (3, 0, 5, 0)

    # Unpaid, the holds expire back to free stock.
    async def back() -> bool:
        return await floor.stock("CAP-1") == (8, 0, 0, 0)

    await eventually(back, within=10)


async def test_the_clock_knocks_one_step_at_a_time_and_the_deadline_ends_it(
    floor: Floor, make_token: MakeToken
) -> None:
    await floor.product("TIE-1", stock=4)
    knock = await (
        await start(
            floor, "TIE-1", mode="time", step_every_s=0.3, floor=eur(800), duration_s=2, quantity=4
        )
    ).json()
    assert knock["next_step_at_ms"] == knock["starts_at_ms"] + 300

    async def at_floor() -> bool:
        return bool((await read(floor, knock["id"]))["price"] == eur(800))

    await eventually(at_floor, within=10)
    now = await read(floor, knock["id"])
    assert (now["steps"], now["level"], now["next_step_at_ms"]) == (2, 2, None)
    # In time mode taps are counted but move nothing.
    tapped = await (await tap(floor, buyer(make_token, "ana"), knock["id"], 50)).json()
    assert (tapped["price"], tapped["taps_to_next"]) == (eur(800), 0)

    async def ended() -> bool:
        return bool((await read(floor, knock["id"]))["state"] == "ended")

    await eventually(ended, within=10)
    assert (await read(floor, knock["id"]))["steps"] == 2
    assert await floor.stock("TIE-1") == (4, 0, 0, 0)


async def test_bad_knockdowns_change_nothing(floor: Floor, make_token: MakeToken) -> None:
    await floor.product("BELT-1", stock=3)
    bad: list[tuple[dict[str, Any], int, str]] = [
        ({"floor": eur(1000)}, 422, "invalid_knockdown"),
        ({"floor": {"amount_minor": 700, "currency": "USD"}}, 422, "invalid_knockdown"),
        (
            {
                "start_price": {"amount_minor": 1000, "currency": "USD"},
                "step": {"amount_minor": 100, "currency": "USD"},
                "floor": {"amount_minor": 700, "currency": "USD"},
            },
            422,
            "currency_mismatch",
        ),
        ({"step": eur(0)}, 422, "invalid_knockdown"),
        ({"quantity": 4}, 409, "insufficient_stock"),
        ({"quantity": 0}, 422, "invalid_field"),
        ({"mode": "sometimes"}, 422, "invalid_field"),
        ({"sku": "NOPE-1"}, 404, "unknown_sku"),
    ]
    for change, status, code in bad:
        await assert_error(await start(floor, "BELT-1", **{"quantity": 3, **change}), status, code)
    viewer = buyer(make_token, "eve")
    resp = await floor.client.post(
        f"/api/streams/{floor.stream_id}/knockdowns",
        json={
            "sku": "BELT-1",
            "start_price": eur(1000),
            "step": eur(100),
            "floor": eur(700),
            "quantity": 1,
            "duration_s": 60,
        },
        headers=bearer(viewer),
    )
    await assert_error(resp, 403, "forbidden")
    await assert_error(await buy(floor, viewer, "nope"), 404, "unknown_knockdown")
    assert await floor.stock("BELT-1") == (3, 0, 0, 0)
    # One at a time per stream; the host ends it and what is left returns.
    knock = await (await start(floor, "BELT-1", quantity=2)).json()
    await assert_error(await start(floor, "BELT-1", quantity=1), 409, "knockdown_running")
    end_url = f"/api/knockdowns/{knock['id']}/end"
    await assert_error(await floor.client.post(end_url, headers=bearer(viewer)), 403, "forbidden")
    ended = await (await floor.client.post(end_url, headers=bearer(floor.seller))).json()
    assert (ended["state"], ended["left"]) == ("ended", 0)
    await assert_error(
        await floor.client.post(end_url, headers=bearer(floor.seller)), 409, "knockdown_ended"
    )
    assert await floor.stock("BELT-1") == (3, 0, 0, 0)


async def test_a_running_knockdown_survives_a_restart(
    settings: Settings, make_token: MakeToken
) -> None:
    """Everything is in Redis: the node that started it stops, another one (same Redis)
    counts the next taps from where they were, and sells at the knocked-down price."""
    seller = make_token(Role.SELLER, sub="seller-1", name="Ana")
    ana = buyer(make_token, "ana")
    first = create_app(settings)
    async with TestClient(AppServer(first)) as client:
        floor = Floor(client=client, app=first, seller=seller, stream_id="")
        resp = await client.post("/api/streams", json={"title": "Drop"}, headers=bearer(seller))
        floor.stream_id = (await resp.json())["id"]
        await client.post(f"/api/streams/{floor.stream_id}/start", headers=bearer(seller))
        await floor.product("SCARF-1", stock=3)
        knock = await (await start(floor, "SCARF-1", quantity=3)).json()
        assert (await tap(floor, ana, knock["id"], 3)).status == 200

    second = create_app(settings)
    async with TestClient(AppServer(second)) as client:
        floor.client, floor.app = client, second
        async with client.ws_connect(f"/ws/streams/{floor.stream_id}") as ws:
            hello = await ws.receive_json()
        assert hello["data"]["state"]["knockdown"]["id"] == knock["id"]
        stepped = await (await tap(floor, ana, knock["id"], 2)).json()
        assert stepped["price"] == eur(900)
        bought = await (await buy(floor, ana, knock["id"])).json()
        assert bought["price"] == eur(900)
        assert await floor.stock("SCARF-1") == (0, 2, 1, 0)
