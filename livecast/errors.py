"""Errors a client can cause, each with an HTTP status and a stable code.

::

    ApiError                       status  default code
    ├── BadRequest                 400     bad_request       (malformed JSON/SDP, wrong types)
    ├── Unauthorized               401     unauthorized      (missing, expired or forged token)
    ├── Forbidden                  403     forbidden         (valid token, wrong role or stream)
    ├── NotFound                   404     not_found         (unknown id)
    ├── Conflict                   409     conflict          (illegal state change, busy resource)
    ├── PayloadTooLarge            413     payload_too_large
    ├── UnsupportedMediaType       415     unsupported_media_type
    ├── Unprocessable              422     unprocessable     (well-formed but not acceptable)
    └── TooManyRequests            429     rate_limited

Handlers raise these; the error middleware turns them into
``{"error": {"code": ..., "message": ...}}`` with the status and :attr:`ApiError.headers`
(every 401 carries an RFC 6750 ``WWW-Authenticate: Bearer`` challenge). Each package adds its own
codes (``sold_out``, ``hold_expired``) as instances of these classes, never new statuses.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "INVALID_TOKEN_CODES",
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
    "UnsupportedMediaType",
    "bearer_challenge",
]


# Unauthorized codes for a token that was sent but is not good (RFC 6750 "invalid_token");
# any other 401 means no token was sent.
INVALID_TOKEN_CODES = frozenset({"token_invalid", "token_expired"})
_REALM = "livecast"


def bearer_challenge(code: str) -> str:
    """The ``WWW-Authenticate`` value of a 401 with error ``code`` (RFC 6750 3)."""
    if code == "token_expired":
        return f'Bearer realm="{_REALM}", error="invalid_token", error_description="token expired"'
    if code in INVALID_TOKEN_CODES:
        return f'Bearer realm="{_REALM}", error="invalid_token"'
    return f'Bearer realm="{_REALM}"'


class ApiError(Exception):
    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details

    @property
    def headers(self) -> dict[str, str]:
        """Headers the error response carries besides the JSON body."""
        return {}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.details)
        return {"error": body}


class BadRequest(ApiError):
    status = 400
    default_code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    default_code = "unauthorized"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": bearer_challenge(self.code)}


class Forbidden(ApiError):
    status = 403
    default_code = "forbidden"


class NotFound(ApiError):
    status = 404
    default_code = "not_found"


class Conflict(ApiError):
    status = 409
    default_code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    default_code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    default_code = "unsupported_media_type"


class Unprocessable(ApiError):
    status = 422
    default_code = "unprocessable"


class TooManyRequests(ApiError):
    status = 429
    default_code = "rate_limited"
