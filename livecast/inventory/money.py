"""Money: integer minor units plus an ISO 4217 currency code, never a float."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["Currency", "Money"]

# Three upper-case letters, as ISO 4217 writes them (EUR, USD, JPY).
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
# Up to 10^15 minor units: well past any price, and exact in a Lua (double) number.
AmountMinor = Annotated[int, msgspec.Meta(ge=0, le=10**15)]


class Money(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``{"amount_minor": 1999, "currency": "EUR"}`` is 19.99 EUR.

    Decoded with ``strict=True``, so ``19.99`` and even ``1999.0`` are refused.
    """

    amount_minor: AmountMinor
    currency: Currency
