"""Errors a client can cause: each carries an :class:`~livecast.error_codes.ErrorCode`,
whose registered HTTP status it is answered with.

::

    ApiError                       default code            status
    ├── BadRequest                 bad_request             400
    ├── Unauthorized               unauthorized            401
    ├── Forbidden                  forbidden               403
    ├── NotFound                   not_found               404
    ├── Conflict                   conflict                409
    ├── PayloadTooLarge            payload_too_large       413
    ├── UnsupportedMediaType       unsupported_media_type  415
    ├── Unprocessable              unprocessable           422
    ├── TooManyRequests            rate_limited            429
    ├── InternalError              internal                500
    └── ServiceUnavailable         redis_unavailable       503

Handlers raise these with a code of the class's status (``NotFound("...",
code=ErrorCode.UNKNOWN_SKU)``; ``tests/test_error_codes.py`` checks that they agree); the
error middleware turns them into ``{"error": {"code": ..., "message": ...}}`` with the
status and :attr:`ApiError.headers` (every 401 carries an RFC 6750 ``WWW-Authenticate:
Bearer`` challenge). :meth:`ApiError.of` builds the error of any code, for codes that
come from a Lua script's status word.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from livecast.error_codes import ErrorCode

__all__ = [
    "INVALID_TOKEN_CODES",
    "ApiError",
    "BadRequest",
    "Conflict",
    "Error",
    "ErrorDetail",
    "Forbidden",
    "InternalError",
    "NotFound",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
    "UnsupportedMediaType",
    "bearer_challenge",
]


class ErrorDetail(msgspec.Struct, frozen=True):
    """What went wrong: a stable code and a message for people. Some codes carry more
    fields: ``retry_after_ms`` (slow_mode, rate_limited, timed_out), ``holds``
    (hold_in_checkout), ``failed`` (commit_failed), ``state`` (not_held, deal errors),
    ``origin_url`` (publisher_active)."""

    code: ErrorCode
    message: str


class Error(msgspec.Struct, frozen=True):
    """Every 4xx and 5xx answer has this shape, the server's own HTTP errors included:
    unknown route (404 not_found), wrong method (405 method_not_allowed, with Allow), a
    request line or header over 8 KB or a malformed request (400 bad_request), a bad
    Expect header (417 expectation_failed)."""

    error: ErrorDetail


# Unauthorized codes for a token that was sent but is not good (RFC 6750 "invalid_token");
# any other 401 means no token was sent.
INVALID_TOKEN_CODES = frozenset({ErrorCode.TOKEN_INVALID, ErrorCode.TOKEN_EXPIRED})
_REALM = "livecast"


def bearer_challenge(code: ErrorCode) -> str:
    """The ``WWW-Authenticate`` value of a 401 with error ``code`` (RFC 6750 3)."""
    if code is ErrorCode.TOKEN_EXPIRED:
        return f'Bearer realm="{_REALM}", error="invalid_token", error_description="token expired"'
    if code in INVALID_TOKEN_CODES:
        return f'Bearer realm="{_REALM}", error="invalid_token"'
    return f'Bearer realm="{_REALM}"'


class ApiError(Exception):
    default_code: ClassVar[ErrorCode] = ErrorCode.BAD_REQUEST

    def __init__(self, message: str, *, code: ErrorCode | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details

    @classmethod
    def of(cls, code: ErrorCode, message: str, **details: Any) -> ApiError:
        """The error of ``code``, as the class of its status (so ``except NotFound`` sees it)."""
        kind = _BY_STATUS.get(code.status, ApiError)
        return kind(message, code=code, **details)

    @property
    def status(self) -> int:
        return self.code.status

    @property
    def headers(self) -> dict[str, str]:
        """Headers the error response carries besides the JSON body."""
        return {}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.details)
        return {"error": body}


class BadRequest(ApiError):
    default_code = ErrorCode.BAD_REQUEST


class Unauthorized(ApiError):
    default_code = ErrorCode.UNAUTHORIZED

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": bearer_challenge(self.code)}


class Forbidden(ApiError):
    default_code = ErrorCode.FORBIDDEN


class NotFound(ApiError):
    default_code = ErrorCode.NOT_FOUND


class Conflict(ApiError):
    default_code = ErrorCode.CONFLICT


class PayloadTooLarge(ApiError):
    default_code = ErrorCode.PAYLOAD_TOO_LARGE


class UnsupportedMediaType(ApiError):
    default_code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class Unprocessable(ApiError):
    default_code = ErrorCode.UNPROCESSABLE


class TooManyRequests(ApiError):
    default_code = ErrorCode.RATE_LIMITED


class InternalError(ApiError):
    """A defect, logged; on a socket the ``error`` event says so and the socket stays open."""

    default_code = ErrorCode.INTERNAL


class ServiceUnavailable(ApiError):
    """Redis did not answer: nothing was changed, and the same request may be sent again."""

    default_code = ErrorCode.REDIS_UNAVAILABLE


_BY_STATUS: dict[int, type[ApiError]] = {
    kind.default_code.status: kind
    for kind in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unprocessable,
        TooManyRequests,
        InternalError,
        ServiceUnavailable,
    )
}
