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
``{"error": {"code": ..., "message": ...}}`` with the status. Each package adds its own
codes (``sold_out``, ``hold_expired``) as instances of these classes, never new statuses.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
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
]


class ApiError(Exception):
    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details

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
