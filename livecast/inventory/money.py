"""Money: integer minor units plus an ISO 4217 currency code, never a float.

:data:`MINOR_DIGITS` is ISO 4217's list of active currency codes (List One: currencies and
funds) with each one's minor-unit digits: how many decimal places one minor unit is.
``{"amount_minor": 1500, "currency": "JPY"}`` is 1,500 yen, ``"KWD"`` 1.500 dinars and
``"EUR"`` 15.00 euros. The codes ISO lists without a minor unit (gold, silver, the SDR,
XTS, XXX) are not money a shop sells in and are refused. The table lives here rather than
in a dependency: no maintained package that fits carries it alone, it changes a few
times a decade (an amendment of ISO 4217), and the pages keep a copy in
``web/js/currencies.js`` that the tests compare with this one.

A code is checked when a request is decoded (the :data:`Currency` pattern), not when
stored values are read back, so a product saved before a code was withdrawn still loads.
No server text renders an amount; the pages do, with these digits.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Final

import msgspec

__all__ = ["CURRENCY_PATTERN", "MINOR_DIGITS", "Currency", "Money"]

# Codes by minor-unit digits, as ISO 4217's List One gives them.
# fmt: off
_DIGITS: Final = {
    0: (
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
        "VND", "VUV", "XAF", "XOF", "XPF",
    ),
    2: (
        "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
        "BGN", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
        "CDF", "CHE", "CHF", "CHW", "CNY", "COP", "COU", "CRC", "CUC", "CUP", "CVE", "CZK",
        "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS",
        "GIP", "GMD", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR",
        "JMD", "KES", "KGS", "KHR", "KPW", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
        "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
        "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK",
        "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK",
        "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS",
        "TMT", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "USN", "UYU", "UZS", "VED",
        "VES", "WST", "XCD", "XCG", "YER", "ZAR", "ZMW", "ZWG",
    ),
    # Three digits: the dinars and rials of Bahrain, Iraq, Jordan, Kuwait, Libya, Oman,
    # Tunisia.
    3: (
        "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND",
    ),
    # Four: Chile's and Uruguay's indexed units of account.
    4: (
        "CLF", "UYW",
    ),
}
# fmt: on

MINOR_DIGITS: Final[Mapping[str, int]] = MappingProxyType(
    dict(sorted((code, digits) for digits, codes in _DIGITS.items() for code in codes))
)

# Matches exactly the codes above; checked by msgspec whenever a request is decoded.
CURRENCY_PATTERN: Final = "^(?:" + "|".join(MINOR_DIGITS) + ")$"
Currency = Annotated[
    str,
    msgspec.Meta(
        pattern=CURRENCY_PATTERN,
        description="An active ISO 4217 currency code (EUR, USD, JPY, KWD, ...).",
    ),
]
# Up to 10^15 minor units: well past any price, and exact in a Lua (double) number.
AmountMinor = Annotated[int, msgspec.Meta(ge=0, le=10**15)]


class Money(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``{"amount_minor": 1999, "currency": "EUR"}`` is 19.99 EUR.

    Decoded with ``strict=True``, so ``19.99`` and even ``1999.0`` are refused, and so is
    a currency that is not an active ISO 4217 code (``ZZZ``).
    """

    amount_minor: AmountMinor
    currency: Currency
