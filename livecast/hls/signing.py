"""Signed, expiring playback URLs: how a private stream plays through a shared CDN.

A signed URL carries its expiry and an HMAC of (stream id, expiry) in the *path*::

    /hls/{stream id}/signed/{expires}/{signature}/index.m3u8

The playlist names its init segment, segments and parts relatively, so a player resolves
them under the same prefix and every request it makes carries the signature without the
playlist being rewritten per viewer. A query string would not travel that way (players
drop it when resolving relative URIs), and a CDN keys on the path whatever its settings.

Expiries are rounded up to a whole ``_STEP_S``, so everyone who asks within the same few
minutes gets the same URL and a CDN caches each object once for all of them, not once per
viewer. A URL stays valid between ``ttl_s`` and ``ttl_s + _STEP_S`` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
from typing import Final

from livecast.error_codes import ErrorCode
from livecast.errors import Forbidden

__all__ = ["PlaybackSigner"]

_STEP_S: Final = 300
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{22}")


class PlaybackSigner:
    """Makes and checks the signed path prefix of a stream's playback URLs."""

    def __init__(self, key: bytes, *, ttl_s: int) -> None:
        self._key = key
        self._ttl_s = ttl_s

    @property
    def ttl_s(self) -> int:
        return self._ttl_s

    def _signature(self, stream_id: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{stream_id}\n{expires}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:16]).decode().rstrip("=")

    def sign(self, stream_id: str, *, now: float | None = None) -> tuple[str, int]:
        """The playlist path for ``stream_id`` and its expiry (Unix seconds)."""
        at = time.time() if now is None else now
        expires = math.ceil((at + self._ttl_s) / _STEP_S) * _STEP_S
        signature = self._signature(stream_id, expires)
        return f"/hls/{stream_id}/signed/{expires}/{signature}/index.m3u8", expires

    def check(self, stream_id: str, expires: str, signature: str) -> int:
        """The expiry of a valid, unexpired signed path; else 403 ``playback_url_invalid``
        (not ours, or altered) or ``playback_url_expired`` (ask for a new one)."""
        if (
            not expires.isascii()
            or not expires.isdigit()
            or len(expires) > 12
            or not _SIGNATURE.fullmatch(signature)
            or not hmac.compare_digest(self._signature(stream_id, int(expires)), signature)
        ):
            raise Forbidden("this playback URL is not valid", code=ErrorCode.PLAYBACK_URL_INVALID)
        if int(expires) <= time.time():
            raise Forbidden(
                "this playback URL has expired; ask for a new one",
                code=ErrorCode.PLAYBACK_URL_EXPIRED,
            )
        return int(expires)
