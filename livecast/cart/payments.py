"""Payment providers: authorize before stock is committed, capture after, void on failure.

:class:`PaymentProvider` is the interface a real gateway (Stripe, Adyen, a local PSP)
implements. Every call is idempotent by ``payment_id`` (livecast passes the order id),
as real gateways are by idempotency key, so a retried checkout never charges twice.

A capture may take less than was authorized (``capture(payment_id, amount)``), as card
networks allow: a group buy authorizes its top price when a buyer joins and captures
the lower price the group reached; the rest of the authorization is released.

The built-in ``test`` provider keeps its ledger in Redis and moves no money. It approves
every payment except a configured card number and, optionally, totals at or above a
configured amount, so the decline path can be exercised end to end.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Protocol

import msgspec
import redis.asyncio as aioredis

from livecast.inventory.batch import ScriptBatcher, Steps
from livecast.inventory.money import Money
from livecast.redisdb import KeySpace, load_lua

_HERE = Path(__file__).parent

__all__ = [
    "Payment",
    "PaymentDeclined",
    "PaymentProvider",
    "PaymentState",
    "PaymentStateError",
    "TestPaymentProvider",
]


class PaymentState(StrEnum):
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    VOIDED = "voided"
    DECLINED = "declined"


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    provider: str
    # None for a payment voided before it was ever authorized.
    amount: Money | None
    state: PaymentState
    decline_reason: str = ""
    # What a capture took, when it took less than ``amount``; None: all of it.
    captured: Money | None = None


class PaymentDeclined(Exception):
    def __init__(self, payment: Payment) -> None:
        super().__init__(payment.decline_reason)
        self.payment = payment


class PaymentStateError(ValueError):
    """A capture or void of a payment in a state that cannot move so (``payment`` says
    which: a declined payment has no authorization to let go, a voided one none to take)."""

    def __init__(self, message: str, payment: Payment) -> None:
        super().__init__(message)
        self.payment = payment


class PaymentProvider(Protocol):
    name: str

    async def authorize(
        self, payment_id: str, amount: Money, *, buyer: str, card_number: str | None
    ) -> Payment:
        """Reserve ``amount`` on the buyer's instrument; raise PaymentDeclined if refused."""
        ...

    async def capture(self, payment_id: str, amount: Money | None = None) -> Payment:
        """Take the authorized amount, or ``amount`` of it (at most the authorized
        amount, in its currency: ValueError otherwise). A replayed capture returns the
        payment as first captured."""
        ...

    async def void(self, payment_id: str) -> Payment:
        """Let an authorization go; nothing is charged. Also for a payment never
        authorized (the checkout stopped before it reached the provider): that id then
        stays voided, so an authorization arriving late for it is declined."""
        ...


class TestPaymentProvider:
    """Approves everything but the decline triggers; its ledger is a Redis hash per payment."""

    name = "test"

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        *,
        decline_card: str,
        decline_amount_minor: int,
        batcher: ScriptBatcher | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        # Its commands ride in the app's batched pipelines.
        self._batcher = batcher or ScriptBatcher(redis)
        self._move_script = load_lua(redis, _HERE / "payment_move.lua")
        self._decline_card = decline_card
        self._decline_amount_minor = decline_amount_minor
        self._decoder = msgspec.json.Decoder(Payment)
        self._encoder = msgspec.json.Encoder()

    def _key(self, payment_id: str) -> str:
        return self._keys.key("payments", "test", payment_id)

    async def get(self, payment_id: str) -> Payment | None:
        raw = await self._batcher.command("GET", self._key(payment_id))
        return self._decoder.decode(raw) if raw is not None else None

    async def authorize(
        self, payment_id: str, amount: Money, *, buyer: str, card_number: str | None
    ) -> Payment:
        reason = ""
        if card_number is not None and card_number == self._decline_card:
            reason = "card declined"
        elif self._decline_amount_minor and amount.amount_minor >= self._decline_amount_minor:
            reason = "amount over the card's limit"
        payment = Payment(
            id=payment_id,
            provider=self.name,
            amount=amount,
            state=PaymentState.DECLINED if reason else PaymentState.AUTHORIZED,
            decline_reason=reason,
        )
        # First write wins: a replay gets the payment as it was first decided.
        key = self._key(payment_id)
        _, raw = await self._batcher.send(
            Steps().command("SET", key, self._encoder.encode(payment), "NX").command("GET", key)
        )
        stored = self._decoder.decode(raw)
        if stored.state is PaymentState.DECLINED:
            raise PaymentDeclined(stored)
        if stored.state is PaymentState.VOIDED:
            raise PaymentDeclined(
                msgspec.structs.replace(stored, decline_reason="the payment was voided")
            )
        return stored

    async def capture(self, payment_id: str, amount: Money | None = None) -> Payment:
        return await self._move(payment_id, PaymentState.CAPTURED, amount)

    async def void(self, payment_id: str) -> Payment:
        voided = Payment(
            id=payment_id,
            provider=self.name,
            amount=None,
            state=PaymentState.VOIDED,
        )
        # Never authorized: keep the id voided, so a late authorization is refused.
        await self._batcher.command(
            "SET", self._key(payment_id), self._encoder.encode(voided), "NX"
        )
        return await self._move(payment_id, PaymentState.VOIDED)

    async def _move(
        self, payment_id: str, target: PaymentState, amount: Money | None = None
    ) -> Payment:
        """authorized -> captured | voided, checked and written in one script run."""
        part = b"" if amount is None else self._encoder.encode(amount)
        limit = -1 if amount is None else amount.amount_minor
        currency = "" if amount is None else amount.currency
        reply = await self._batcher.call(
            self._move_script, (self._key(payment_id), target.value, part, limit, currency)
        )
        outcome = reply[0]
        if outcome == b"missing":
            raise LookupError(f"no payment {payment_id}")
        payment = self._decoder.decode(reply[1])
        if outcome == b"illegal":
            raise PaymentStateError(
                f"payment {payment_id} is {payment.state}, cannot become {target}", payment
            )
        if outcome == b"over":
            raise PaymentStateError(
                f"payment {payment_id}: cannot capture more than was authorized", payment
            )
        return payment
