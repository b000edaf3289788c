"""Errors of the live-events package.

Chat refusals reuse the shared classes with their own codes (``banned``, ``timed_out``
as Forbidden; ``empty``, ``too_long``, ``links_not_allowed``, ``word_filtered`` as
Unprocessable; ``slow_mode``, ``rate_limited`` as TooManyRequests; bad frames as
BadRequest with ``malformed``, ``unknown_type``, ``invalid_field``). On a socket they
become ``error`` events with the same code. Two classes are added::

    ApiError
    ├── ServiceUnavailable   503  unavailable   (Redis did not answer; try again)
    └── InternalError        500  internal      (a defect, logged; the socket stays open)
"""

from __future__ import annotations

from livecast.errors import ApiError

__all__ = ["InternalError", "ServiceUnavailable"]


class ServiceUnavailable(ApiError):
    status = 503
    default_code = "unavailable"


class InternalError(ApiError):
    status = 500
    default_code = "internal"
