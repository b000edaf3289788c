"""The reservation contract on real Redis: never oversell, holds expire back to stock,
replays change nothing, limits hold across holds, multi-SKU commits are all or nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from livecast.errors import ApiError
from livecast.inventory.reserve import Hold, HoldRef, HoldState, StockLevels, is_hold_id
from tests.inventory.conftest import Services


async def _attempts(
    services: Services,
    sku: str,
    *,
    users: int,
    per_user: int,
    ttl_s: float,
    deal_id: str | None = None,
) -> tuple[list[Hold], list[ApiError]]:
    calls = [
        services.reservations.reserve(
            sku,
            1,
            f"user-{u}",
            f"h-{u}-{a}",
            ttl_s=ttl_s,
            per_user_limit=1,
            deal_id=deal_id,
        )
        for a in range(per_user)
        for u in range(users)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    holds = [r for r in results if isinstance(r, Hold)]
    errors = [r for r in results if isinstance(r, ApiError)]
    assert len(holds) + len(errors) == len(calls), [
        r for r in results if not isinstance(r, Hold | ApiError)
    ]
    return holds, errors


async def _wait_past(services: Services, holds: list[Hold]) -> None:
    last = max(h.expires_at_ms for h in holds)
    now = await services.now_ms()
    await asyncio.sleep((last - now) / 1000 + 0.02)
    assert await services.now_ms() > last


async def test_ten_thousand_attempts_for_a_thousand_units(services: Services) -> None:
    await services.add_product("FLASH-1", 1000)
    holds, errors = await _attempts(services, "FLASH-1", users=5000, per_user=2, ttl_s=3)

    assert len(holds) == 1000
    assert len({h.hold_id.split("-")[1] for h in holds}) == 1000  # one per user
    assert {e.code for e in errors} <= {"sold_out", "over_limit"}
    levels = await services.reservations.stock("FLASH-1")
    assert levels is not None
    assert (levels.available, levels.held, levels.sold) == (0, 1000, 0)

    # Replaying every attempt, won or lost, reserves nothing more.
    again, _ = await _attempts(services, "FLASH-1", users=5000, per_user=2, ttl_s=3)
    assert sorted(h.hold_id for h in again) == sorted(h.hold_id for h in holds)
    assert all(h.replayed for h in again)
    assert await services.reservations.stock("FLASH-1") == levels

    await _wait_past(services, holds)
    expiry = await services.reservations.expire_due("FLASH-1", batch=5000)
    assert expiry.expired == 1000
    assert expiry.next_due_ms is None
    levels = await services.reservations.stock("FLASH-1")
    assert levels is not None
    assert (levels.available, levels.held, levels.sold) == (1000, 0, 0)
    assert await services.redis.hlen(services.reservations.base("FLASH-1") + ":users") == 0

    # Expired holds stay expired when their ids are replayed.
    replayed = await asyncio.gather(
        *(
            services.reservations.reserve(
                "FLASH-1",
                1,
                f"user-{h.hold_id.split('-')[1]}",
                h.hold_id,
                ttl_s=3,
                per_user_limit=1,
            )
            for h in holds
        )
    )
    assert {h.state for h in replayed} == {HoldState.EXPIRED}
    assert await services.reservations.stock("FLASH-1") == levels
    # A second sweep (another node) finds nothing to do.
    assert (await services.reservations.expire_due("FLASH-1")).expired == 0


async def test_hold_is_idempotent_and_conflicting_reuse_is_refused(services: Services) -> None:
    await services.add_product("SKU-A", 5)
    first = await services.reservations.reserve("SKU-A", 2, "ann", "hold-1")
    second = await services.reservations.reserve("SKU-A", 2, "ann", "hold-1")
    assert (second.qty, second.expires_at_ms, second.replayed) == (2, first.expires_at_ms, True)
    with pytest.raises(ApiError) as err:
        await services.reservations.reserve("SKU-A", 3, "ann", "hold-1")
    assert err.value.code == "hold_conflict"
    with pytest.raises(ApiError) as err:
        await services.reservations.reserve("SKU-A", 1, "bob", "hold-1")
    assert err.value.code == "hold_conflict"
    levels = await services.reservations.stock("SKU-A")
    assert levels is not None
    assert (levels.available, levels.held) == (3, 2)


async def test_bad_reservations_change_nothing(services: Services) -> None:
    await services.add_product("SKU-B", 3)
    cases: list[tuple[dict[str, object], str]] = [
        ({"sku": "NOPE"}, "unknown_sku"),
        ({"sku": "bad sku!"}, "unknown_sku"),
        ({"qty": 0}, "invalid_quantity"),
        ({"qty": -1}, "invalid_quantity"),
        ({"qty": 101}, "invalid_quantity"),
        ({"qty": 4}, "insufficient_stock"),
        ({"hold_id": "no spaces"}, "invalid_field"),
        ({"user": ""}, "invalid_field"),
        ({"deal_id": "nodeal"}, "unknown_deal"),
        ({"qty": 2, "per_user_limit": 1}, "over_limit"),
    ]
    for change, code in cases:
        args: dict[str, object] = {"sku": "SKU-B", "qty": 1, "user": "u1", "hold_id": "h1"}
        args.update(change)
        extra = {k: args.pop(k) for k in ("per_user_limit", "deal_id") if k in args}
        with pytest.raises(ApiError) as err:
            await services.reservations.reserve(**args, **extra)  # type: ignore[arg-type]
        assert err.value.code == code, change
    levels = await services.reservations.stock("SKU-B")
    assert levels is not None
    assert (levels.available, levels.held) == (3, 0)
    assert await services.reservations.get_hold("SKU-B", "h1") is None


async def test_per_user_limit_counts_live_holds_and_purchases(services: Services) -> None:
    await services.add_product("SKU-C", 10)
    res = services.reservations
    await res.reserve("SKU-C", 1, "ann", "a1", per_user_limit=2)
    await res.reserve("SKU-C", 1, "ann", "a2", per_user_limit=2)
    with pytest.raises(ApiError) as err:
        await res.reserve("SKU-C", 1, "ann", "a3", per_user_limit=2)
    assert err.value.code == "over_limit"
    await res.commit("SKU-C", "a1")  # a purchase still counts
    with pytest.raises(ApiError):
        await res.reserve("SKU-C", 1, "ann", "a4", per_user_limit=2)
    assert await res.release("SKU-C", "a2") is HoldState.RELEASED  # a released one does not
    await res.reserve("SKU-C", 1, "ann", "a5", per_user_limit=2)
    await res.reserve("SKU-C", 2, "bob", "b1", per_user_limit=2)  # others are unaffected
    levels = await res.stock("SKU-C")
    assert levels is not None
    assert (levels.available, levels.held, levels.sold) == (6, 3, 1)


async def test_hold_state_machine(services: Services) -> None:
    await services.add_product("SKU-D", 3)
    res = services.reservations
    await res.reserve("SKU-D", 1, "ann", "x1")
    committed = await res.commit("SKU-D", "x1")
    assert committed.state is HoldState.COMMITTED
    assert (await res.commit("SKU-D", "x1")).state is HoldState.COMMITTED  # idempotent
    with pytest.raises(ApiError) as err:
        await res.release("SKU-D", "x1")
    assert err.value.code == "not_held"
    await res.reserve("SKU-D", 1, "ann", "x2")
    assert await res.release("SKU-D", "x2") is HoldState.RELEASED
    assert await res.release("SKU-D", "x2") is HoldState.RELEASED  # idempotent
    with pytest.raises(ApiError) as err:
        await res.commit("SKU-D", "x2")
    assert err.value.code == "not_held"
    await res.reserve("SKU-D", 1, "ann", "x3", ttl_s=0.05)
    await asyncio.sleep(0.1)
    with pytest.raises(ApiError) as err:
        await res.commit("SKU-D", "x3")
    assert err.value.code == "hold_expired"
    assert (await res.expire_due("SKU-D")).expired == 1
    with pytest.raises(ApiError) as err:
        await res.release("SKU-D", "x3")
    assert err.value.code == "not_held"
    levels = await res.stock("SKU-D")
    assert levels is not None
    assert (levels.available, levels.held, levels.sold) == (2, 0, 1)
    assert HoldState.HELD.can_become(HoldState.COMMITTED)
    assert not HoldState.EXPIRED.can_become(HoldState.HELD)
    assert HoldState.COMMITTED.is_final


async def test_multi_sku_commit_is_all_or_nothing(services: Services) -> None:
    res = services.reservations
    for sku in ("CART-1", "CART-2", "CART-3"):
        await services.add_product(sku, 5)
    await res.reserve("CART-1", 1, "ann", "c1")
    await res.reserve("CART-2", 2, "ann", "c2")
    await res.reserve("CART-3", 1, "ann", "c3", ttl_s=0.05)
    await asyncio.sleep(0.1)
    refs = [HoldRef("CART-1", "c1"), HoldRef("CART-2", "c2"), HoldRef("CART-3", "c3")]
    with pytest.raises(ApiError) as err:
        await res.commit_holds(refs, "txn-1")
    assert err.value.code == "commit_failed"
    assert err.value.details["failed"][0]["sku"] == "CART-3"
    for sku, hold_id in (("CART-1", "c1"), ("CART-2", "c2")):
        hold = await res.get_hold(sku, hold_id)
        assert hold is not None
        assert hold.state is HoldState.HELD  # rolled back, still the buyer's
        levels = await res.stock(sku)
        assert levels is not None
        assert levels.sold == 0

    committed = await res.commit_holds(refs[:2], "txn-2")
    assert [h.state for h in committed] == [HoldState.COMMITTED, HoldState.COMMITTED]
    again = await res.commit_holds(refs[:2], "txn-2")  # a retried checkout
    assert [h.state for h in again] == [HoldState.COMMITTED, HoldState.COMMITTED]
    sold = [(await res.stock(s)) for s in ("CART-1", "CART-2")]
    assert [(lv.sold, lv.held) for lv in sold if lv] == [(1, 0), (2, 0)]


async def test_stuck_commit_is_settled_by_its_decision(services: Services) -> None:
    """A coordinator that died after prepare: the sweeper aborts, unless commit was recorded."""
    res = services.reservations
    await services.add_product("STUCK-1", 5)
    await services.add_product("STUCK-2", 5)
    await res.reserve("STUCK-1", 1, "ann", "s1")
    await res.reserve("STUCK-2", 1, "ann", "s2")
    prepare = res._prepare
    for sku, hold_id, txn in (("STUCK-1", "s1", "dead-1"), ("STUCK-2", "s2", "dead-2")):
        await res.batcher.call(prepare, (res.base(sku), hold_id, txn, 1))
    await services.redis.set(res.txn_key("dead-2"), "commit")
    await asyncio.sleep(0.05)
    for sku in ("STUCK-1", "STUCK-2"):
        expiry = await res.expire_due(sku)
        assert len(expiry.stuck) == 1
        for hold_id, txn in expiry.stuck:
            await res.settle_stuck(sku, hold_id, txn)
    one = await res.get_hold("STUCK-1", "s1")
    two = await res.get_hold("STUCK-2", "s2")
    assert one is not None
    assert one.state is HoldState.HELD
    assert two is not None
    assert two.state is HoldState.COMMITTED


async def test_a_stream_reserves_another_sellers_product_only_with_a_grant(
    services: Services,
) -> None:
    """A product owned by another seller (its ``owner`` field) is reserved for a stream
    only if the owner granted it to the stream or its seller; the check is part of the
    reservation, so a refusal holds nothing."""
    await services.add_product("LOOM", 5)
    reservations = services.reservations
    base = reservations.base("LOOM")
    await services.redis.hset(base + ":product", "owner", "maker")

    def reserve(hold_id: str, stream_id: str, seller_id: str) -> Any:
        return reservations.reserve(
            "LOOM", 1, "ann", hold_id, stream_id=stream_id, seller_id=seller_id
        )

    with pytest.raises(ApiError) as refused:
        await reserve("h1", "st-1", "reseller")
    assert refused.value.code == "product_not_granted"
    assert (await reservations.stock("LOOM")) == StockLevels(5, 0, 0, 0)

    assert (await reserve("h2", "st-2", "maker")).state is HoldState.HELD  # the owner's stream
    await services.redis.hset(base + ":grants", "stream:st-1", "0 1 maker")
    assert (await reserve("h3", "st-1", "reseller")).state is HoldState.HELD
    await services.redis.hset(base + ":grants", "seller:other", "1 1 maker")
    assert (await reserve("h4", "st-9", "other")).state is HoldState.HELD
    assert (await reservations.stock("LOOM")) == StockLevels(2, 3, 0, 0)


async def test_new_hold_ids_are_unique_valid_and_never_an_option(services: Services) -> None:
    """Hold ids the server makes: 12 url-safe characters (72 random bits), drawn in bulk,
    each one a valid hold id that never starts with "-"."""
    ids = [services.reservations.new_hold_id() for _ in range(5_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 12 and is_hold_id(i) and not i.startswith("-") for i in ids)
