"""Error codes of the inventory package, all instances of the shared :mod:`livecast.errors`.

::

    Forbidden (403)       not_product_owner, product_not_granted, deals_not_granted
    NotFound (404)        unknown_sku, unknown_hold, unknown_deal, unknown_grant
    Conflict (409)        sold_out, insufficient_stock, over_limit, deal_not_started,
                          deal_ended, hold_expired, hold_conflict, not_held, not_prepared,
                          below_committed, deal_exists, stream_not_live, commit_failed,
                          too_many_grants
    Unprocessable (422)   invalid_quantity, currency_mismatch, invalid_field,
                          deal_not_in_stream

Each Lua script answers with a status word; :func:`raise_for_status` turns a status other
than ``ok`` into the matching error, so the words are the codes clients see.
"""

from __future__ import annotations

from typing import Any, NoReturn

from livecast.errors import ApiError, Conflict, Forbidden, NotFound, Unprocessable

__all__ = ["raise_for_status"]

_FORBIDDEN = {"not_product_owner", "product_not_granted", "deals_not_granted"}
_NOT_FOUND = {"unknown_sku", "unknown_hold", "unknown_deal", "unknown_grant"}
_UNPROCESSABLE = {"invalid_quantity", "currency_mismatch", "invalid_field", "deal_not_in_stream"}

_MESSAGES = {
    "unknown_sku": "no product with this SKU",
    "unknown_hold": "no hold with this id for this SKU",
    "unknown_deal": "no such deal",
    "sold_out": "sold out",
    "insufficient_stock": "not enough stock left for this quantity",
    "over_limit": "this would take the buyer over the per-buyer limit",
    "deal_not_started": "the deal has not started yet",
    "deal_ended": "the deal has ended",
    "hold_expired": "the hold has expired",
    "hold_conflict": "this hold id was already used for a different reservation",
    "not_held": "the hold is no longer held",
    "not_prepared": "the hold was not prepared by this commit",
    "below_committed": "stock cannot go below what is held, sold or in live deals",
    "deal_exists": "a deal with this id exists",
    "currency_mismatch": "the price's currency differs from the product's",
    "not_product_owner": "only the product's owner (or an admin) may change it",
    "product_not_granted": "this stream may not sell this product: its owner has not allowed it",
    "deals_not_granted": "this stream may not run flash deals on this product: its owner has "
    "not allowed it",
    "unknown_grant": "no such grant on this product",
    "too_many_grants": "this product has as many grants as it may have",
    "deal_not_in_stream": "the deal runs on another stream",
}


def raise_for_status(status: str, subject: str, **details: Any) -> NoReturn:
    """Raise the ApiError for a script's status word about ``subject`` (a SKU, a hold)."""
    message = f"{subject}: {_MESSAGES.get(status, status.replace('_', ' '))}"
    error: ApiError
    if status in _FORBIDDEN:
        error = Forbidden(message, code=status, **details)
    elif status in _NOT_FOUND:
        error = NotFound(message, code=status, **details)
    elif status in _UNPROCESSABLE:
        error = Unprocessable(message, code=status, **details)
    else:
        error = Conflict(message, code=status, **details)
    raise error
