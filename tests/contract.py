"""Every answer a test server gives is checked against the app's own OpenAPI document.

:class:`AnswerCheck` hooks ``on_response_prepare`` and, for each answer to a described
operation, checks that the document lists its status and media type, and that a JSON
body is exactly the type the document names for it: it is decoded strictly into that
type (msgspec, the library that generated the schema; so required fields, types, enums
and patterns are checked) and encoded back, and the two must be equal, so that a field
the type lacks is caught too. An error body must be an ``Error`` whose code is one the
document lists for that status. JSON answers under ``/api/`` to routes the document does
not describe (an unknown route, a wrong method) must be errors.

Violations are collected and raised when the server closes, so the test that caused
them fails with every one named.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from livecast.errors import Error
from livecast.openapi import OPENAPI, ApiDocument

_REF = "#/components/schemas/"


class AnswerCheck:
    def __init__(self, api: ApiDocument) -> None:
        self.api = api
        self.violations: list[str] = []

    async def record(self, request: web.Request, response: web.StreamResponse) -> None:
        if request.method == "HEAD" or not isinstance(response, web.Response):
            return
        body = response.body if isinstance(response.body, bytes) else None
        problem = self.check(
            request.method, _template(request), response.status, response.content_type, body
        )
        if problem is not None:
            self.violations.append(
                f"{request.method} {request.path} -> {response.status}: {problem}"
            )

    def check(
        self, method: str, template: str | None, status: int, media: str, body: bytes | None
    ) -> str | None:
        """What is wrong with this answer, or None."""
        operation = self.api.document["paths"].get(template or "", {}).get(method.lower())
        if operation is None:
            if media == "application/json" and (template or "").startswith("/api/"):
                return f"{template} {method} is not in the OpenAPI document"
            if media == "application/json" and body and status >= 400:
                return _check_error(body, None)
            return None
        answer = operation["responses"].get(str(status))
        if answer is None:
            code = _code(body) if media == "application/json" else None
            return f"status {status} ({code or 'no error code'}) is not documented"
        content = answer.get("content")
        if not body:
            return None
        if content is None or media not in content:
            return f"{media} is not documented for status {status}"
        if content[media].get("schema") == {"$ref": _REF + "Error"}:
            return _check_error(body, None)
        if media != "application/json":
            return None
        schema = content[media].get("schema")
        if schema is None:
            return None
        if "allOf" in schema:
            codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
            return _check_error(body, codes)
        return self._check_body(body, schema)

    def _check_body(self, body: bytes, schema: dict[str, Any]) -> str | None:
        ref = schema.get("$ref", "")
        kind = self.api.types.get(ref.removeprefix(_REF)) if ref.startswith(_REF) else None
        if kind is None:
            return None  # a hand-written fragment's schema: no type to check against yet
        try:
            value = msgspec.json.decode(body, type=kind, strict=True)
        except msgspec.ValidationError as exc:
            return f"body is not a {kind.__name__}: {exc}"
        if msgspec.to_builtins(value) != msgspec.json.decode(body):
            return f"body has fields a {kind.__name__} lacks: {body[:300]!r}"
        return None


def _check_error(body: bytes, codes: list[str] | None) -> str | None:
    try:
        error = msgspec.json.decode(body, type=Error, strict=True)
    except msgspec.ValidationError as exc:
        return f"body is not an Error: {exc}"
    if codes is not None and error.error.code not in codes:
        return f"error code {error.error.code.value} is not documented (only {', '.join(codes)})"
    return None


def _code(body: bytes | None) -> str | None:
    try:
        return msgspec.json.decode(body or b"", type=Error).error.code.value
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def _template(request: web.Request) -> str | None:
    """The route's path as the document spells it, or None for no route."""
    if request.match_info.http_exception is not None:
        return None
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def install(app: web.Application) -> AnswerCheck | None:
    """Check every answer ``app`` gives (an app without a document is not checked)."""
    api = app.get(OPENAPI)
    if api is None:
        return None
    check = AnswerCheck(api)
    app.on_response_prepare.append(check.record)
    return check
