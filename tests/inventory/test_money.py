"""Money's currencies are ISO 4217 codes with their minor-unit digits: a made-up code is
refused over HTTP and changes nothing, and the pages' copy of the digits is this one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from livecast.auth import Role
from livecast.inventory.money import MINOR_DIGITS, Money
from tests.conftest import Client, MakeToken, bearer
from tests.inventory.conftest import assert_error, create_live_stream, put_product

PAGES_TABLE = Path(__file__).parent.parent.parent / "web" / "js" / "currencies.js"


def test_minor_digits_are_iso_4217s() -> None:
    assert {c: MINOR_DIGITS[c] for c in ("JPY", "KRW", "EUR", "USD", "KWD", "BHD", "CLF")} == {
        "JPY": 0,
        "KRW": 0,
        "EUR": 2,
        "USD": 2,
        "KWD": 3,
        "BHD": 3,
        "CLF": 4,
    }
    assert all(re.fullmatch(r"[A-Z]{3}", code) for code in MINOR_DIGITS)
    # Codes without a minor unit (metals, the SDR, testing, "no currency") are no prices.
    assert not {"XAU", "XAG", "XDR", "XTS", "XXX"} & set(MINOR_DIGITS)
    assert 150 < len(MINOR_DIGITS) < 200


def test_the_pages_format_with_the_same_digits() -> None:
    found = re.findall(r"\b([A-Z]{3}): (\d)\b", PAGES_TABLE.read_text())
    assert {code: int(digits) for code, digits in found} == dict(MINOR_DIGITS)
    assert len(found) == len(MINOR_DIGITS)


@pytest.mark.parametrize("currency", ["ZZZ", "eur", "EURO", "XAU", ""])
def test_only_iso_codes_decode(currency: str) -> None:
    raw = msgspec.json.encode({"amount_minor": 100, "currency": currency})
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw, type=Money, strict=True)


def _product(currency: str, amount: int = 1500) -> dict[str, Any]:
    return {
        "title": "Matcha",
        "price": {"amount_minor": amount, "currency": currency},
        "stock": 5,
    }


async def test_a_product_in_a_made_up_currency_is_refused(
    client: Client, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER, sub="seller-m")
    resp = await client.put("/api/products/TEA-1", json=_product("ZZZ"), headers=bearer(seller))
    body = await assert_error(resp, 422, "invalid_field")
    message = body["error"]["message"]
    assert "ISO 4217" in message
    assert "$.price.currency" in message
    assert len(message) < 200
    resp = await client.get("/api/products/TEA-1")
    await assert_error(resp, 404, "unknown_sku")

    for currency, digits_worth in (("JPY", 1500), ("KWD", 12345)):
        resp = await client.put(
            f"/api/products/TEA-{currency}",
            json=_product(currency, digits_worth),
            headers=bearer(seller),
        )
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["price"] == {"amount_minor": digits_worth, "currency": currency}


async def test_a_deal_in_a_made_up_currency_is_refused(
    client: Client, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER, sub="seller-m")
    stream_id = await create_live_stream(client, seller)
    await put_product(client, seller, "TEA-2", 5, price=1500, currency="JPY")
    deal = {
        "sku": "TEA-2",
        "price": {"amount_minor": 999, "currency": "ZZZ"},
        "quantity": 2,
        "duration_s": 60,
    }
    resp = await client.post(f"/api/streams/{stream_id}/deals", json=deal, headers=bearer(seller))
    await assert_error(resp, 422, "invalid_field")
    product = await (await client.get("/api/products/TEA-2")).json()
    assert (product["stock"], product["in_deals"]) == (5, 0)
    deal["price"] = {"amount_minor": 999, "currency": "JPY"}
    resp = await client.post(f"/api/streams/{stream_id}/deals", json=deal, headers=bearer(seller))
    assert resp.status == 201, await resp.text()
