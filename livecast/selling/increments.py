"""Bid increment tables: by how much a bid must rise at each price.

A table is a list of :class:`IncrementStep`, lowest price band first, the last open. The
bid script reads it as ``"below step below step ..."`` (0 for the open bound):
:func:`encode_steps` and :func:`decode_steps`.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated

import msgspec

from livecast.error_codes import ErrorCode
from livecast.errors import Unprocessable

__all__ = [
    "DEFAULT_INCREMENTS",
    "IncrementStep",
    "check_increments",
    "decode_steps",
    "encode_steps",
    "step_for",
]


class IncrementStep(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Bids must rise by ``step_minor`` while the price is below ``below_minor`` (null on
    the last step: any price)."""

    below_minor: Annotated[int, msgspec.Meta(ge=1)] | None
    step_minor: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]


# Below 10.00 by 0.50, below 100.00 by 1.00, below 500.00 by 5.00, then by 10.00.
DEFAULT_INCREMENTS = (
    IncrementStep(1_000, 50),
    IncrementStep(10_000, 100),
    IncrementStep(50_000, 500),
    IncrementStep(None, 1_000),
)


def check_increments(steps: list[IncrementStep] | tuple[IncrementStep, ...]) -> None:
    """422 ``invalid_increments`` unless bounds rise strictly and only the last is open."""
    if not 1 <= len(steps) <= 20:
        raise Unprocessable("give 1 to 20 increment steps", code=ErrorCode.INVALID_INCREMENTS)
    bounds = [s.below_minor for s in steps]
    if bounds[-1] is not None or None in bounds[:-1]:
        raise Unprocessable(
            "only the last increment step, and it always, has below_minor null",
            code=ErrorCode.INVALID_INCREMENTS,
        )
    closed = [b for b in bounds if b is not None]
    if any(b <= a for a, b in pairwise(closed)):
        raise Unprocessable(
            "increment bounds must rise strictly", code=ErrorCode.INVALID_INCREMENTS
        )


def step_for(steps: list[IncrementStep] | tuple[IncrementStep, ...], price_minor: int) -> int:
    """The increment at ``price_minor`` (what ``auction_bid.lua`` computes)."""
    for step in steps:
        if step.below_minor is None or price_minor < step.below_minor:
            return step.step_minor
    return steps[-1].step_minor


def encode_steps(steps: list[IncrementStep] | tuple[IncrementStep, ...]) -> str:
    return " ".join(f"{s.below_minor or 0} {s.step_minor}" for s in steps)


def decode_steps(raw: str) -> list[IncrementStep]:
    numbers = [int(n) for n in raw.split()]
    return [IncrementStep(numbers[i] or None, numbers[i + 1]) for i in range(0, len(numbers), 2)]
