"""The HTTP boundary: JSON in and out, errors as JSON, the caller's identity.

Every request body is validated here, once, into a typed ``msgspec.Struct``; handlers
trust what they receive. Every 4xx/5xx leaves as ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from livecast.appkeys import SETTINGS, TOKENS
from livecast.auth import Identity, identity_from_request
from livecast.errors import (
    ApiError,
    BadRequest,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
    bearer_challenge,
)
from livecast.redisdb import UNAVAILABLE_ERRORS

__all__ = ["error_middleware", "error_response", "identity", "json_response", "read_json"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_IDENTITY = web.RequestKey("identity", Identity)
_encoder = msgspec.json.Encoder()

# Codes for errors aiohttp raises itself (routing, body size).
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
}


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encoder.encode(data), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


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
        raise Unprocessable(str(exc), code="invalid_field") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", code="malformed_json") from None


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
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
        if exc.status == 401:
            headers["WWW-Authenticate"] = bearer_challenge(code)
        return error_response(exc.status, code, message, headers)
    except UNAVAILABLE_ERRORS as exc:
        # Redis is down or restarting: the request may be retried, and nothing a script
        # does is half-applied (each one is atomic), so say so rather than 500.
        log.warning("Redis unavailable for %s %s: %s", request.method, request.path, exc)
        return error_response(
            503, "redis_unavailable", "storage is unavailable; try again", {"Retry-After": "1"}
        )
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal", "internal server error")
