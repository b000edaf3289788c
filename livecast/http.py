"""The HTTP boundary: JSON in and out, errors as JSON, the caller's identity.

Every request body is validated here, once, into a typed ``msgspec.Struct``; handlers
trust what they receive. Every 4xx/5xx leaves as ``{"error": {"code", "message"}}``:
what handlers raise, through :func:`error_middleware`; what aiohttp answers by itself
(unknown route, wrong method, body too large, a bad ``Expect``, and requests its parser
refuses before any middleware runs: a URL or header over 8 KB, a malformed header),
through :func:`setup_error_responses`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, TypeVar

import msgspec
from aiohttp import hdrs, web

from livecast import _aiohttp
from livecast.appkeys import SETTINGS, TOKENS
from livecast.auth import Identity, identity_from_request
from livecast.error_codes import ErrorCode
from livecast.errors import (
    ApiError,
    BadRequest,
    Error,
    ErrorDetail,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
    bearer_challenge,
)
from livecast.inventory.money import CURRENCY_PATTERN
from livecast.redisdb import UNAVAILABLE_ERRORS

__all__ = [
    "error_middleware",
    "error_response",
    "http_error_response",
    "identity",
    "json_response",
    "read_json",
    "setup_error_responses",
    "validation_message",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_IDENTITY = web.RequestKey("identity", Identity)
_encoder = msgspec.json.Encoder()

# Codes for the errors aiohttp answers by itself (routing, body size, parser, timeouts).
_HTTP_CODES = {
    code.status: code
    for code in (
        ErrorCode.BAD_REQUEST,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.FORBIDDEN,
        ErrorCode.NOT_FOUND,
        ErrorCode.METHOD_NOT_ALLOWED,
        ErrorCode.CONFLICT,
        ErrorCode.PAYLOAD_TOO_LARGE,
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        ErrorCode.EXPECTATION_FAILED,
        ErrorCode.UNPROCESSABLE,
        ErrorCode.RATE_LIMITED,
        ErrorCode.INTERNAL,
        ErrorCode.TIMEOUT,
    )
}
_CURRENCY_EXPECTED = f"`str` matching regex '{CURRENCY_PATTERN}'"
# Headers of aiohttp's own errors worth keeping on ours.
_KEPT_HEADERS = {"allow", "retry-after"}


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encoder.encode(data), status=status, content_type="application/json", headers=headers
    )


def error_response(
    code: ErrorCode, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The JSON error of ``code``, with its registered status."""
    return json_response(Error(ErrorDetail(code, message)), status=code.status, headers=headers)


async def read_json(request: web.Request, into: type[T]) -> T:
    """Read the body as JSON and validate it into ``into``.

    415 unless the body is ``application/json``; 413 past the size limit; 400 for
    malformed JSON; 422 naming the field for a wrong type, a missing field, an unknown
    field or a value out of range.
    """
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"send the body as application/json, not {request.content_type or 'nothing'}"
        )
    body = await read_body(request)
    try:
        return msgspec.json.decode(body, type=into, strict=True)
    except msgspec.ValidationError as exc:
        raise Unprocessable(validation_message(exc), code=ErrorCode.INVALID_FIELD) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", code=ErrorCode.MALFORMED_JSON) from None


def validation_message(exc: msgspec.ValidationError) -> str:
    """msgspec's message for a value that failed validation, with the long patterns it
    quotes (every ISO 4217 code) named instead."""
    return str(exc).replace(_CURRENCY_EXPECTED, "an active ISO 4217 currency code")


async def read_body(request: web.Request) -> bytes:
    limit = request.app[SETTINGS].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"body of {request.content_length} bytes is over the {limit} byte limit"
        )
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"body is over the {limit} byte limit") from None


def identity(request: web.Request, *, allow_query: bool = False) -> Identity:
    """The caller (anonymous if no token); 401 for a bad token. Cached per request."""
    cached = request.get(_IDENTITY)
    if cached is None:
        cached = identity_from_request(request.app[TOKENS], request, allow_query=allow_query)
        request[_IDENTITY] = cached
    return cached


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response(exc.to_json(), status=exc.status, headers=exc.headers or None)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_error_response(exc.status, _exception_message(exc), _kept_headers(exc))
    except UNAVAILABLE_ERRORS as exc:
        # Redis is down or restarting: the request may be retried, and nothing a script
        # does is half-applied (each one is atomic), so say so rather than 500.
        log.warning("Redis unavailable for %s %s: %s", request.method, request.path, exc)
        return error_response(
            ErrorCode.REDIS_UNAVAILABLE, "storage is unavailable; try again", {"Retry-After": "1"}
        )
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(ErrorCode.INTERNAL, "internal server error")


def http_error_response(
    status: int, message: str = "", headers: dict[str, str] | None = None
) -> web.Response:
    """The JSON error for an HTTP status aiohttp chose (its code from the status), with
    the status's reason phrase when there is no message."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    code = _code(status)
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": bearer_challenge(code)}
    return json_response(
        Error(ErrorDetail(code, message or phrase)), status=status, headers=headers
    )


def _code(status: int) -> ErrorCode:
    """The code of a status aiohttp chose; one it never chooses gets its class's."""
    found = _HTTP_CODES.get(status)
    if found is not None:
        return found
    return ErrorCode.INTERNAL if status >= 500 else ErrorCode.BAD_REQUEST


def _exception_message(exc: web.HTTPException) -> str:
    # aiohttp's default text is "<status>: <reason>"; a text given on purpose is kept.
    text = exc.text
    return text if text and not text.startswith(f"{exc.status}:") else exc.reason


def _kept_headers(response: web.StreamResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() in _KEPT_HEADERS}


async def _http_exception_as_json(request: web.Request, response: web.StreamResponse) -> None:
    """An aiohttp error that reached no middleware (a bad ``Expect`` header is answered
    before them) leaves in the JSON error shape too."""
    if not isinstance(response, web.HTTPException) or response.status < 400:
        return
    if response.content_type == "application/json":
        return
    body = _encoder.encode(Error(ErrorDetail(_code(response.status), _exception_message(response))))
    # The headers are prepared by now (signals run just before they are written).
    response.body = body
    response.headers[hdrs.CONTENT_TYPE] = "application/json"
    response.headers[hdrs.CONTENT_LENGTH] = str(len(body))


def setup_error_responses(app: web.Application) -> None:
    """Send aiohttp's own errors in the JSON error shape: those that pass no middleware
    (see :mod:`livecast._aiohttp` for the ones its HTTP parser answers; that part holds
    for every aiohttp server of the process). Raises at start-up if aiohttp changed."""
    _aiohttp.answer_errors_with(http_error_response)
    app.on_response_prepare.append(_http_exception_as_json)
