"""The selling formats on the video timeline: their start, price changes and end carry
``media_time_ms`` and are on the stream's stored timeline, in the MULTI that publishes
them (over real HTTP and Redis)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from livecast.appkeys import REDIS
from livecast.ingest.keys import MEDIA
from tests.conftest import MakeToken, bearer
from tests.inventory.conftest import listen
from tests.selling.conftest import Floor, buyer
from tests.selling.test_groupbuy_api import join
from tests.selling.test_groupbuy_api import start as start_groupbuy
from tests.selling.test_knockdown_api import buy, tap
from tests.selling.test_knockdown_api import start as start_knockdown
from tests.selling.test_stream_end import _post, _start_poll


async def _on_air(app: web.Application, stream_id: str) -> int:
    """The publisher came (this node is the stream's origin); the Redis clock now."""
    origins = app[MEDIA].origins
    async with origins.exclusive(stream_id):
        assert await origins.claim(stream_id) is None
    seconds, micros = await app[REDIS].time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _timeline(floor: Floor) -> list[dict[str, Any]]:
    resp = await floor.client.get(f"/api/streams/{floor.stream_id}/timeline")
    assert resp.status == 200, await resp.text()
    entries: list[dict[str, Any]] = (await resp.json())["entries"]
    return entries


def _stamped(log: Any, kinds: list[str], before: int) -> dict[str, int]:
    """Each event's media time, checked to lie between ``before`` and now-ish."""
    times = {}
    for kind in kinds:
        for event in log.events:
            if event["type"] == kind:
                assert before <= event["media_time_ms"] <= before + 60_000, event
                times[kind] = event["media_time_ms"]
    return times


async def test_a_poll_is_on_the_timeline(floor: Floor, app: web.Application) -> None:
    before = await _on_air(app, floor.stream_id)
    async with listen(app, floor.stream_id) as log:
        poll = await _start_poll(floor, question="Red or blue?")
        await _post(floor, f"/api/polls/{poll['id']}/close", {}, floor.seller)
        await log.wait_for("poll.closed")
    times = _stamped(log, ["poll.started", "poll.closed"], before)
    entries = await _timeline(floor)
    assert [(e["kind"], e["poll_id"], e["title"], e.get("state")) for e in entries] == [
        ("poll.started", poll["id"], "Red or blue?", None),
        ("poll.closed", poll["id"], "Red or blue?", "closed"),
    ]
    assert [e["media_time_ms"] for e in entries] == list(times.values())


async def test_a_giveaway_is_on_the_timeline(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("PEN-1", stock=1)
    before = await _on_air(app, floor.stream_id)
    async with listen(app, floor.stream_id) as log:
        url = f"/api/streams/{floor.stream_id}/giveaways"
        giveaway = await _post(floor, url, {"sku": "PEN-1"}, floor.seller)
        ana = buyer(make_token, "ana")
        await floor.client.put(f"/api/giveaways/{giveaway['id']}/entry", headers=bearer(ana))
        await _post(floor, f"/api/giveaways/{giveaway['id']}/draw", {}, floor.seller)
        await log.wait_for("giveaway.drawn")
    times = _stamped(log, ["giveaway.started", "giveaway.drawn"], before)
    entries = await _timeline(floor)
    assert [(e["kind"], e["giveaway_id"], e["sku"], e.get("state")) for e in entries] == [
        ("giveaway.started", giveaway["id"], "PEN-1", None),
        ("giveaway.drawn", giveaway["id"], "PEN-1", "drawn"),
    ]
    assert [e["media_time_ms"] for e in entries] == list(times.values())


async def test_a_group_buy_and_its_price_changes_are_on_the_timeline(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("KETTLE-1", stock=5)
    before = await _on_air(app, floor.stream_id)
    async with listen(app, floor.stream_id) as log:
        group = await (await start_groupbuy(floor, "KETTLE-1")).json()
        for name in ("ana", "bo"):  # ana: the price stays 20.00; bo: it drops to 17.00
            assert (await join(floor, buyer(make_token, name), group["id"])).status == 200
        await log.wait_for("groupbuy.updated", 2)
        await _post(floor, f"/api/groupbuys/{group['id']}/end", {}, floor.seller)
        await log.wait_for("groupbuy.ended")
    _stamped(log, ["groupbuy.started", "groupbuy.updated", "groupbuy.ended"], before)
    entries = await _timeline(floor)
    assert [
        (e["kind"], e["groupbuy_id"], e["price"]["amount_minor"], e.get("state")) for e in entries
    ] == [
        ("groupbuy.started", group["id"], 2000, None),
        ("groupbuy.updated", group["id"], 1700, None),  # the price change only
        ("groupbuy.ended", group["id"], 1700, "capturing"),
    ]
    assert all(before <= e["media_time_ms"] for e in entries)


async def test_a_knockdown_and_its_price_drops_are_on_the_timeline(
    floor: Floor, make_token: MakeToken, app: web.Application
) -> None:
    await floor.product("SHOE-1", stock=10)
    before = await _on_air(app, floor.stream_id)
    ana = buyer(make_token, "ana")
    async with listen(app, floor.stream_id) as log:
        knock = await (await start_knockdown(floor, "SHOE-1")).json()
        assert (await tap(floor, ana, knock["id"], 5)).status == 200  # one step: 9.00
        await log.wait_for("knockdown.updated")
        assert (await buy(floor, ana, knock["id"])).status == 200  # same price
        await log.wait_for("knockdown.updated", 2)
        await _post(floor, f"/api/knockdowns/{knock['id']}/end", {}, floor.seller)
        await log.wait_for("knockdown.ended")
    _stamped(log, ["knockdown.started", "knockdown.updated", "knockdown.ended"], before)
    entries = await _timeline(floor)
    assert [
        (e["kind"], e["knockdown_id"], e["price"]["amount_minor"], e.get("state")) for e in entries
    ] == [
        ("knockdown.started", knock["id"], 1000, None),
        ("knockdown.updated", knock["id"], 900, None),  # the price drop only
        ("knockdown.ended", knock["id"], 900, "ended"),
    ]
    assert all(before <= e["media_time_ms"] for e in entries)
