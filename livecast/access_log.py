"""The access log: one line per HTTP request on the ``livecast.access`` logger.

::

    127.0.0.1 "GET /api/streams/abc?token=REDACTED" 200 512B 3.1ms

Remote address, method, path and query as sent (still percent-encoded, so no request
can write a line of its own), status, response body bytes and handling time. A
``token`` or ``access_token`` query value is replaced by ``REDACTED``, and the session
id of a WHIP/WHEP session URL is cut to what the session log lines show (a session URL
is a capability). No request header is logged, so no ``Authorization`` either.

``server.access_log = false`` turns it off (:func:`access_log_options`). Requests under
``/hls/`` answered without an error (below 400) are logged only with ``hls.access_log =
true``: every LL-HLS player asks a few times a second, so 1,000 players would write some
4,000 lines a second that nobody reads (nginx users turn media access logs off likewise).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, Request, StreamResponse

from livecast.appkeys import SETTINGS
from livecast.config import ServerSettings
from livecast.ingest.sessions import short_id

__all__ = ["AccessLogger", "access_log_options", "loggable_target"]

ACCESS_LOGGER = "livecast.access"
_SECRET_PARAMS = frozenset({"token", "access_token"})
_SESSION_URL = re.compile(r"^(/wh[ie]p/[^/]+/)([^/]+)$")


def loggable_target(raw_path: str, raw_query: str) -> str:
    """The request target as the access log shows it."""
    session = _SESSION_URL.match(raw_path)
    if session is not None:
        raw_path = f"{session.group(1)}{short_id(session.group(2))}..."
    if not raw_query:
        return raw_path
    params = []
    for param in raw_query.split("&"):
        name, sep, _ = param.partition("=")
        if unquote(name).lower() in _SECRET_PARAMS:
            param = f"{name}{sep}REDACTED"
        params.append(param)
    return f"{raw_path}?{'&'.join(params)}"


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if (
            response.status < 400
            and request.raw_path.startswith("/hls/")
            and isinstance(request, Request)
            and not request.app[SETTINGS].hls.access_log
        ):
            return
        target = loggable_target(request.rel_url.raw_path, request.rel_url.raw_query_string)
        self.logger.info(
            '%s "%s %s" %d %dB %.1fms',
            request.remote or "-",
            request.method,
            target,
            response.status,
            response.body_length,
            time * 1000,
        )


def access_log_options(settings: ServerSettings) -> dict[str, Any]:
    """The access-log arguments of ``web.run_app`` / ``web.AppRunner`` for ``settings``."""
    if not settings.access_log:
        return {"access_log": None}
    return {"access_log_class": AccessLogger, "access_log": logging.getLogger(ACCESS_LOGGER)}
