"""Errors of the ingest package: the two that need more than a code.

Its codes (``malformed_sdp``, ``session_not_found``, ``codec_unsupported``, ...) are in
:mod:`livecast.error_codes` with every other code, each with its status and meaning; the
endpoints raise the shared classes of :mod:`livecast.errors` with them. Two classes are
added::

    ApiError
    ├── PreconditionFailed   412  etag_mismatch     a PATCH If-Match names an old state
    └── Conflict
        └── PublishedElsewhere    publisher_active  answered by WHIP as 307 to the origin
"""

from __future__ import annotations

from livecast.error_codes import ErrorCode
from livecast.errors import ApiError, Conflict

__all__ = ["PreconditionFailed", "PublishedElsewhere"]


class PreconditionFailed(ApiError):
    """RFC 9725 4.3.1: a PATCH whose If-Match does not name the session's ETag."""

    default_code = ErrorCode.ETAG_MISMATCH


class PublishedElsewhere(Conflict):
    """Another node is the stream's origin: a publisher belongs there.

    WHIP answers it as ``307 Temporary Redirect`` to :attr:`whip_url` (RFC 9725 4.5),
    with the body of a 409 ``publisher_active`` for clients that do not follow.
    """

    def __init__(self, origin_url: str) -> None:
        super().__init__(
            "this stream is published through another node",
            code=ErrorCode.PUBLISHER_ACTIVE,
            origin_url=origin_url,
        )
        self.origin_url = origin_url

    def whip_url(self, stream_id: str) -> str:
        return f"{self.origin_url}/whip/{stream_id}"
