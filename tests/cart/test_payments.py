"""The test payment provider: idempotent by payment id, declines on its triggers, and
moves authorized -> captured | voided only."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from livecast.cart.payments import PaymentDeclined, PaymentState
from livecast.cart.payments import TestPaymentProvider as Provider
from livecast.inventory.money import Money
from livecast.redisdb import KeySpace

EUR_10 = Money(amount_minor=1000, currency="EUR")


def _provider(redis: aioredis.Redis, prefix: str, limit: int = 0) -> Provider:
    return Provider(
        redis, KeySpace(prefix), decline_card="4000000000000002", decline_amount_minor=limit
    )


async def test_authorize_capture_is_idempotent(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    provider = _provider(redis_client, key_prefix)
    first = await provider.authorize("ord_1", EUR_10, buyer="b", card_number=None)
    again = await provider.authorize("ord_1", EUR_10, buyer="b", card_number=None)
    assert first == again
    assert first.state is PaymentState.AUTHORIZED
    captures = await asyncio.gather(*(provider.capture("ord_1") for _ in range(5)))
    assert {c.state for c in captures} == {PaymentState.CAPTURED}
    with pytest.raises(ValueError, match="cannot become"):
        await provider.void("ord_1")


async def test_declines_on_card_and_amount(redis_client: aioredis.Redis, key_prefix: str) -> None:
    provider = _provider(redis_client, key_prefix, limit=50_000)
    with pytest.raises(PaymentDeclined, match="card declined"):
        await provider.authorize("ord_2", EUR_10, buyer="b", card_number="4000000000000002")
    # the decline sticks to the payment id, whatever is sent next
    with pytest.raises(PaymentDeclined):
        await provider.authorize("ord_2", EUR_10, buyer="b", card_number=None)
    big = Money(amount_minor=50_000, currency="EUR")
    with pytest.raises(PaymentDeclined, match="limit"):
        await provider.authorize("ord_3", big, buyer="b", card_number=None)
    voided = await provider.authorize("ord_4", EUR_10, buyer="b", card_number="4242")
    assert (await provider.void(voided.id)).state is PaymentState.VOIDED
    with pytest.raises(LookupError):
        await provider.capture("ord_unknown")


async def test_capture_of_less_than_authorized(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    """A group buy authorizes its top price and captures the lower final one."""
    provider = _provider(redis_client, key_prefix)
    await provider.authorize("ord_5", EUR_10, buyer="b", card_number=None)
    with pytest.raises(ValueError, match="more than was authorized"):
        await provider.capture("ord_5", Money(amount_minor=1001, currency="EUR"))
    with pytest.raises(ValueError, match="more than was authorized"):
        await provider.capture("ord_5", Money(amount_minor=700, currency="USD"))
    assert (await provider.get("ord_5")) is not None
    less = Money(amount_minor=700, currency="EUR")
    captures = await asyncio.gather(*(provider.capture("ord_5", less) for _ in range(3)))
    assert {(c.state, c.captured) for c in captures} == {(PaymentState.CAPTURED, less)}
    assert await provider.get("ord_5") == captures[0]
    assert captures[0].amount == EUR_10
