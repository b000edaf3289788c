"""Errors of the inventory package: its scripts' status words become error codes.

Its codes (``unknown_sku``, ``sold_out``, ``hold_expired``, ...) are in
:mod:`livecast.error_codes` with every other code, each with its status and its meaning,
which is the message's text here. Each Lua script answers with a status word;
:func:`raise_for_status` turns a status other than ``ok`` into the matching error, so the
words are the codes clients see (``tests/test_error_codes.py`` checks each is registered).
"""

from __future__ import annotations

from typing import Any, NoReturn

from livecast.error_codes import ErrorCode
from livecast.errors import ApiError

__all__ = ["raise_for_status"]


def raise_for_status(status: str | ErrorCode, subject: str, **details: Any) -> NoReturn:
    """Raise the ApiError for a script's status word about ``subject`` (a SKU, a hold).

    A word that is not a registered code is a defect: ValueError, logged as a 500.
    """
    code = ErrorCode.of(status)
    raise ApiError.of(code, f"{subject}: {code.meaning}", **details)
