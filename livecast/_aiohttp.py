"""The one place livecast reaches into aiohttp's server internals.

A request that aiohttp's HTTP parser refuses (a request line or a header over 8 KB, a
malformed header, an unknown method) is answered by ``RequestHandler.handle_error``
below the application: no middleware and no signal sees it, and aiohttp offers no hook
for it (aio-libs/aiohttp#3287). The same method answers an exception that escapes every
middleware (500) and a handler timeout (504). :func:`answer_errors_with` wraps it so that
these answers come from livecast's own error responses; aiohttp's method still runs
first, for its logging and its check that nothing was sent yet.

This relies on aiohttp 3.x calling ``handle_error(request, status, exc, message)`` on
``RequestHandler`` for those cases; :func:`check_compatible` fails loudly at start-up if
an aiohttp version lays it out otherwise.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Final

from aiohttp import web_protocol
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import Response, StreamResponse

__all__ = ["ErrorResponder", "answer_errors_with", "check_compatible"]

# (status, message) -> the response to send instead of aiohttp's text/plain one.
ErrorResponder = Callable[[int, str], Response]

_WRAPPED: Final = "__livecast_wrapped__"
_PARAMETERS: Final = ("self", "request", "status", "exc", "message")


@functools.cache
def check_compatible() -> None:
    """Raise if this aiohttp's ``RequestHandler.handle_error`` is not the one wrapped here
    (checked once per process: it reads aiohttp's source)."""
    handle_error = getattr(web_protocol.RequestHandler, "handle_error", None)
    if handle_error is None:
        raise RuntimeError("this aiohttp has no RequestHandler.handle_error")
    original = getattr(handle_error, _WRAPPED, handle_error)
    found = tuple(inspect.signature(original).parameters)
    if found != _PARAMETERS:
        raise RuntimeError(f"this aiohttp's RequestHandler.handle_error takes {found}")
    source = inspect.getsource(web_protocol.RequestHandler)
    if "self.handle_error(" not in source:
        raise RuntimeError("this aiohttp's RequestHandler does not answer errors there")
    if LineTooLong(b"", 8190).args[1:2] != (8190,):
        raise RuntimeError("this aiohttp's LineTooLong does not carry its limit second")


def answer_errors_with(respond: ErrorResponder) -> None:
    """Answer parser errors, escaped exceptions and timeouts with ``respond(status,
    message)`` in every aiohttp server of the process (again: the latest wins).

    The message is the parser's for a 4xx (what was wrong with the request; for a line
    over the limit, which limit) and never the exception's for a 5xx, whose detail only
    the log gets.
    """
    check_compatible()
    current = web_protocol.RequestHandler.handle_error
    original = getattr(current, _WRAPPED, current)

    def handle_error(
        self: web_protocol.RequestHandler,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        original(self, request, status, exc, message)
        text = message if status < 500 and message else ""
        if isinstance(exc, LineTooLong):
            # Its own message quotes the first 100 bytes of the line as a Python repr.
            text = f"the request line or a header is over {exc.args[1]} bytes"
        response = respond(status, text)
        response.force_close()
        return response

    setattr(handle_error, _WRAPPED, original)
    web_protocol.RequestHandler.handle_error = handle_error  # type: ignore[method-assign]
