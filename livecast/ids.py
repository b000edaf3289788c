"""Identifier formats shared across packages, and how new ids are made."""

from __future__ import annotations

import re
import secrets

__all__ = [
    "SKU_PATTERN",
    "STREAM_ID_PATTERN",
    "SUBJECT_PATTERN",
    "is_sku",
    "is_stream_id",
    "is_subject",
    "new_id",
]

# A SKU names one sellable variant (size, colour): what a merchant's catalog calls it.
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# Stream ids are unguessable url-safe tokens; the pattern also admits ids made elsewhere.
STREAM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# A user id as tokens carry it (``sub``): a seller, a buyer, a host.
SUBJECT_PATTERN = r"^[A-Za-z0-9._:@-]{1,64}$"

_SKU = re.compile(SKU_PATTERN)
_STREAM_ID = re.compile(STREAM_ID_PATTERN)
_SUBJECT = re.compile(SUBJECT_PATTERN)


def is_sku(value: str) -> bool:
    return bool(_SKU.match(value))


def is_stream_id(value: str) -> bool:
    return bool(_STREAM_ID.match(value))


def is_subject(value: str) -> bool:
    return bool(_SUBJECT.match(value))


def new_id(nbytes: int = 9) -> str:
    """A url-safe random id; 9 bytes give 12 characters and 72 bits.

    Ids are typed on command lines (`livecast token --stream ID`), where one that starts with
    "-" reads as an option, so such a draw is thrown away: one draw in 64, under 0.03 bits lost.
    """
    while True:
        value = secrets.token_urlsafe(nbytes)
        if not value.startswith("-"):
            return value
