"""Group buy price tiers: from ``min_buyers`` members on, everyone pays ``price``.

A table is a list of :class:`~livecast.selling.groupbuy_types.PriceTier`, thresholds
rising and prices falling; the scripts read it as ``"min_buyers price_minor ..."``
(:func:`encode_tiers`, :func:`decode_tiers`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from livecast.error_codes import ErrorCode
from livecast.errors import Unprocessable
from livecast.inventory.money import Money
from livecast.selling.groupbuy_types import PriceTier

__all__ = ["check_tiers", "decode_tiers", "encode_tiers", "price_now"]


def check_tiers(tiers: Sequence[PriceTier], min_buyers: int, cap: int) -> None:
    """Thresholds rise strictly, prices fall strictly, one currency; the minimum and the
    first threshold fit under the cap (422 ``invalid_tiers``)."""
    problem = ""
    if not 1 <= len(tiers) <= 10:
        problem = "give 1 to 10 tiers"
    elif len({t.price.currency for t in tiers}) > 1:
        problem = "every tier's price must be in one currency"
    elif any(a.min_buyers >= b.min_buyers for a, b in itertools.pairwise(tiers)):
        problem = "tier thresholds must rise strictly"
    elif any(a.price.amount_minor <= b.price.amount_minor for a, b in itertools.pairwise(tiers)):
        problem = "tier prices must fall strictly"
    elif min_buyers > cap or tiers[0].min_buyers > cap:
        problem = "the minimum and the first threshold cannot be above the cap"
    if problem:
        raise Unprocessable(problem, code=ErrorCode.INVALID_TIERS)


def encode_tiers(tiers: Sequence[PriceTier]) -> str:
    return " ".join(f"{t.min_buyers} {t.price.amount_minor}" for t in tiers)


def decode_tiers(raw: str, currency: str) -> list[PriceTier]:
    parts = [int(p) for p in raw.split()]
    return [
        PriceTier(min_buyers=parts[i], price=Money(amount_minor=parts[i + 1], currency=currency))
        for i in range(0, len(parts), 2)
    ]


def price_now(tiers: Sequence[PriceTier], members: int) -> tuple[Money, PriceTier | None, int]:
    """What everyone pays with ``members`` members, the next lower tier and how many more
    members it needs."""
    price = tiers[0].price
    for tier in tiers:
        if members >= tier.min_buyers:
            price = tier.price
    later = [
        t for t in tiers if t.min_buyers > members and t.price.amount_minor < price.amount_minor
    ]
    nxt = later[0] if later else None
    return price, nxt, (nxt.min_buyers - members if nxt else 0)
