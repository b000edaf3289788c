"""Group buy price tiers: the price everyone pays at each member count, the next tier and
how many more it needs, and the tables refused."""

from __future__ import annotations

import pytest

from livecast.errors import ApiError
from livecast.inventory.money import Money
from livecast.selling.groupbuy_tiers import check_tiers, decode_tiers, encode_tiers, price_now
from livecast.selling.groupbuy_types import PriceTier


def tier(n: int, amount: int, currency: str = "EUR") -> PriceTier:
    return PriceTier(min_buyers=n, price=Money(amount_minor=amount, currency=currency))


TIERS = [tier(1, 2000), tier(10, 1700), tier(25, 1500)]


@pytest.mark.parametrize(
    ("members", "price", "next_at", "needed"),
    [
        (0, 2000, 10, 10),
        (1, 2000, 10, 9),
        (9, 2000, 10, 1),
        (10, 1700, 25, 15),
        (30, 1500, None, 0),
    ],
)
def test_the_price_falls_with_each_tier_reached(
    members: int, price: int, next_at: int | None, needed: int
) -> None:
    now, nxt, more = price_now(TIERS, members)
    assert (now.amount_minor, nxt.min_buyers if nxt else None, more) == (price, next_at, needed)


def test_tables_round_trip_through_the_scripts_text() -> None:
    assert encode_tiers(TIERS) == "1 2000 10 1700 25 1500"
    assert decode_tiers(encode_tiers(TIERS), "EUR") == TIERS


@pytest.mark.parametrize(
    ("tiers", "minimum", "cap"),
    [
        ([tier(1, 2000), tier(1, 1500)], 1, 50),
        ([tier(1, 2000), tier(5, 2000)], 1, 50),
        ([tier(1, 2000), tier(5, 1500, "USD")], 1, 50),
        ([tier(60, 2000)], 60, 50),
        ([tier(1, 2000)], 51, 50),
        ([tier(i + 1, 2000 - i) for i in range(11)], 1, 50),
    ],
)
def test_bad_tables_are_refused(tiers: list[PriceTier], minimum: int, cap: int) -> None:
    with pytest.raises(ApiError) as refused:
        check_tiers(tiers, minimum, cap)
    assert refused.value.code == "invalid_tiers"


def test_a_good_table_passes() -> None:
    check_tiers(TIERS, 10, 100)
