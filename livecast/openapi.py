"""The OpenAPI 3.1 description, generated from the route table and the types.

Each handler declares its contract beside it, under its route decorator::

    @routes.post("/api/streams")
    @contract(
        summary="Create a scheduled stream (seller or admin)",
        body=CreateStream,
        responses={201: Reply(Stream, "created", headers={"Location": "the stream's URL"})},
        errors=[ErrorCode.FORBIDDEN, ErrorCode.PRODUCT_NOT_GRANTED],
        auth=Auth.REQUIRED,
    )
    async def create_stream(request: web.Request) -> web.Response: ...

:func:`build_openapi` walks the app's routes, as Starlette's ``SchemaGenerator`` does,
and turns every contract into an operation: its paths and methods come from the route
table, its schemas from the types through :func:`schema_components` (msgspec), and its
error answers from :class:`~livecast.error_codes.ErrorCode`, grouped by status with each
code's registered meaning. The codes every route of a kind can answer are added for it:
a JSON body's (``malformed_json``, ``invalid_field``, 413, 415, 417), a token's (401),
``redis_unavailable`` for a route that needs Redis, and ``internal`` for any. Prose
(summaries, descriptions, what an error means on one route) is hand-written beside the
route.

To add a field to a request or response, add it to its ``msgspec.Struct``; to add a route,
give it a :func:`contract`. ``tests/snapshots/openapi.json`` then needs refreshing (see
``tests/test_openapi.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal, TypeVar

import msgspec
from aiohttp import web

from livecast.error_codes import ErrorCode
from livecast.errors import Error

__all__ = [
    "OPENAPI",
    "ApiDocument",
    "Auth",
    "Body",
    "Contract",
    "Param",
    "Reply",
    "Webhook",
    "build_openapi",
    "contract",
    "contract_of",
    "openapi_route",
    "schema_components",
]

REF_TEMPLATE = "#/components/schemas/{name}"
_DESCRIPTION = (
    "Live-shopping streaming server: streams, live events, inventory, cart and checkout. "
    'Errors are {"error": {"code", "message"}}; each operation lists the codes it can '
    "answer, by status, with what they mean. Any route that needs Redis answers 503 "
    "redis_unavailable (with Retry-After) while Redis is unreachable. Every 401 carries an "
    'RFC 6750 challenge, WWW-Authenticate: Bearer realm="livecast", with '
    'error="invalid_token" when the token sent is malformed, forged or expired '
    "(token_invalid, token_expired)."
)
_PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")

Handler = TypeVar("Handler", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])


class Auth(StrEnum):
    """Whether a route reads a bearer token."""

    NONE = "none"  # never reads one
    OPTIONAL = "optional"  # reads one when sent (a bad one is a 401)
    REQUIRED = "required"  # needs one (none is a 401 unauthorized)


@dataclass(frozen=True)
class Reply:
    """One documented answer: its body's type (``None`` for no body, or one not typed,
    like a file), what it means, its media type (or types) and the headers it carries
    (name to description)."""

    body: Any = None
    description: str = "ok"
    media_type: str | tuple[str, ...] = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Body:
    """A request body: its type (for JSON), media type (or types) and description. A
    JSON body is read with :func:`livecast.http.read_json`."""

    type: Any
    media_type: str | tuple[str, ...] = "application/json"
    description: str = ""
    required: bool = True


@dataclass(frozen=True)
class Param:
    """A query, path or header parameter; ``type`` may carry ``msgspec.Meta`` constraints."""

    name: str
    location: Literal["query", "path", "header"] = "query"
    type: Any = str
    description: str = ""
    required: bool = False
    default: Any = msgspec.NODEFAULT


@dataclass(frozen=True)
class Contract:
    """What a route declares about itself; made by :func:`contract`."""

    summary: str
    description: str
    body: Body | None
    params: tuple[Param, ...]
    responses: Mapping[int, Reply]
    errors: Mapping[ErrorCode, str]
    auth: Auth
    redis: bool


@dataclass(frozen=True)
class Webhook:
    """A request livecast sends to a URL the operator configures (OpenAPI ``webhooks``)."""

    summary: str
    body: Any
    description: str = ""


_ATTRIBUTE = "__livecast_contract__"


def contract(
    *,
    summary: str,
    description: str = "",
    body: Any = None,
    params: Sequence[Param] = (),
    responses: Mapping[int, Reply | Any],
    errors: Iterable[ErrorCode] | Mapping[ErrorCode, str] = (),
    auth: Auth = Auth.NONE,
    redis: bool = True,
) -> Callable[[Handler], Handler]:
    """Attach the contract of the handler it decorates (under the route decorator).

    ``body`` is a type (a JSON body) or a :class:`Body`; ``responses`` maps a status to a
    :class:`Reply` or just the JSON body's type; ``errors`` lists the codes the route can
    answer beyond those its kind adds, or maps them to what they mean on this route.
    """
    notes = dict(errors) if isinstance(errors, Mapping) else dict.fromkeys(errors, "")
    declared = Contract(
        summary=summary,
        description=description,
        body=body if body is None or isinstance(body, Body) else Body(body),
        params=tuple(params),
        responses={
            status: reply if isinstance(reply, Reply) else Reply(reply)
            for status, reply in responses.items()
        },
        errors=notes,
        auth=auth,
        redis=redis,
    )

    def attach(handler: Handler) -> Handler:
        setattr(handler, _ATTRIBUTE, declared)
        return handler

    return attach


def contract_of(handler: object) -> Contract | None:
    found = getattr(handler, _ATTRIBUTE, None)
    return found if isinstance(found, Contract) else None


def schema_components(types: Sequence[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The JSON Schema of each type (a ``$ref`` for a Struct or Enum), and the components
    they refer to, named ``#/components/schemas/{name}``. Shared by the OpenAPI and
    AsyncAPI documents."""
    refs, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)
    return list(refs), dict(components)


@dataclass(frozen=True)
class ApiDocument:
    """The served document, and the type behind each component (for checking answers)."""

    document: dict[str, Any]
    types: Mapping[str, Any]

    @cached_property
    def body(self) -> bytes:
        return json.dumps(self.document, indent=1).encode()


OPENAPI = web.AppKey("openapi", ApiDocument)


def build_openapi(
    app: web.Application,
    *,
    version: str,
    webhooks: Mapping[str, Webhook] | None = None,
) -> ApiDocument:
    """The document of every route of ``app`` that has a contract, and the ``webhooks``
    it sends."""
    webhooks = webhooks or {}
    operations: list[tuple[str, str, Contract]] = []
    for route in app.router.routes():
        declared = contract_of(route.handler)
        if declared is None or route.method in ("HEAD", "*") or route.resource is None:
            continue
        operations.append((route.resource.canonical, route.method.lower(), declared))

    inputs: list[Any] = []
    outputs: list[Any] = [Error]
    for _, _, declared in operations:
        if declared.body is not None and declared.body.type is not None:
            inputs.append(declared.body.type)
        inputs += [p.type for p in declared.params]
        outputs += [r.body for r in declared.responses.values() if r.body is not None]
    outputs += [hook.body for hook in webhooks.values()]
    types = inputs + outputs
    refs, components = schema_components(types)
    _require_every_answer_field(components, refs[: len(inputs)])
    schema_of = {id(t): ref for t, ref in zip(types, refs, strict=True)}
    named = {
        t.__name__: t
        for t in types
        if isinstance(t, type) and getattr(t, "__name__", None) in components
    }

    paths: dict[str, dict[str, Any]] = {}
    for path, method, declared in operations:
        paths.setdefault(path, {})[method] = _operation(path, declared, schema_of)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "livecast", "version": version, "description": _DESCRIPTION},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": dict(sorted(components.items())),
        },
        "paths": paths,
    }
    if webhooks:
        document["webhooks"] = {
            name: {"post": _webhook(hook, schema_of)} for name, hook in webhooks.items()
        }
    return ApiDocument(document, named)


def _require_every_answer_field(components: dict[str, Any], input_schemas: list[Any]) -> None:
    """An answer always carries every field of its Struct (none omits defaults), so a
    schema only answers use lists them all as required; one a request uses keeps
    msgspec's (fields with defaults may be left out)."""
    in_requests: set[str] = set()
    pending = list(input_schemas)
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in in_requests:
                    in_requests.add(name)
                    pending.append(components[name])
            pending += node.values()
        elif isinstance(node, list):
            pending += node
    for name, schema in components.items():
        if name not in in_requests and "properties" in schema:
            schema["required"] = list(schema["properties"])


def _operation(path: str, declared: Contract, schema_of: Mapping[int, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": declared.summary}
    if declared.description:
        operation["description"] = declared.description
    if declared.auth is Auth.REQUIRED:
        operation["security"] = [{"bearer": []}]
    elif declared.auth is Auth.OPTIONAL:
        operation["security"] = [{}, {"bearer": []}]
    parameters = _parameters(path, declared.params, schema_of)
    if parameters:
        operation["parameters"] = parameters
    if declared.body is not None:
        body = declared.body
        media: dict[str, Any] = {}
        if body.type is not None:
            media["schema"] = schema_of[id(body.type)]
        request_body: dict[str, Any] = {
            "required": body.required,
            "content": dict.fromkeys(_kinds(body.media_type), media),
        }
        if body.description:
            request_body["description"] = body.description
        operation["requestBody"] = request_body
    responses: dict[str, Any] = {}
    for status, reply in sorted(declared.responses.items()):
        answer: dict[str, Any] = {"description": reply.description}
        if reply.headers:
            answer["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in reply.headers.items()
            }
        if reply.body is not None:
            schema = schema_of[id(reply.body)]
            answer["content"] = {kind: {"schema": schema} for kind in _kinds(reply.media_type)}
        elif reply.media_type != "application/json":
            answer["content"] = {kind: {} for kind in _kinds(reply.media_type)}
        responses[str(status)] = answer
    for status, codes in sorted(_error_codes(declared).items()):
        responses[str(status)] = _error_answer(codes, declared.errors)
    operation["responses"] = responses
    return operation


def _webhook(hook: Webhook, schema_of: Mapping[int, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": hook.summary}
    if hook.description:
        operation["description"] = hook.description
    operation["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": schema_of[id(hook.body)]}},
    }
    operation["responses"] = {"2XX": {"description": "acknowledged; anything else is retried"}}
    return operation


def _parameters(path: str, params: Sequence[Param], schema_of: Mapping[int, Any]) -> list[Any]:
    """The route's path parameters (typed where ``params`` declares them), then the rest."""
    in_path = {p.name: p for p in params if p.location == "path"}
    found = [
        _parameter(in_path.get(name, Param(name, "path")), schema_of)
        for name in _PATH_PARAM.findall(path)
    ]
    return found + [_parameter(p, schema_of) for p in params if p.location != "path"]


def _parameter(param: Param, schema_of: Mapping[int, Any]) -> dict[str, Any]:
    schema = dict(schema_of.get(id(param.type), {"type": "string"}))
    if param.default is not msgspec.NODEFAULT:
        schema["default"] = param.default
    described: dict[str, Any] = {"name": param.name, "in": param.location}
    if param.description:
        described["description"] = param.description
    if param.location == "path" or param.required:
        described["required"] = True
    described["schema"] = schema
    return described


def _error_codes(declared: Contract) -> dict[int, list[ErrorCode]]:
    codes = {*declared.errors, ErrorCode.INTERNAL}
    if declared.body is not None:
        codes |= {
            ErrorCode.PAYLOAD_TOO_LARGE,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            ErrorCode.EXPECTATION_FAILED,
        }
        if "application/json" in _kinds(declared.body.media_type):
            codes |= {ErrorCode.MALFORMED_JSON, ErrorCode.INVALID_FIELD}
    if declared.auth is not Auth.NONE:
        codes |= {ErrorCode.TOKEN_INVALID, ErrorCode.TOKEN_EXPIRED}
    if declared.auth is Auth.REQUIRED:
        codes.add(ErrorCode.UNAUTHORIZED)
    if declared.redis:
        codes.add(ErrorCode.REDIS_UNAVAILABLE)
    by_status: dict[int, list[ErrorCode]] = {}
    for code in sorted(codes):
        by_status.setdefault(code.status, []).append(code)
    return by_status


def _kinds(media_type: str | tuple[str, ...]) -> tuple[str, ...]:
    return (media_type,) if isinstance(media_type, str) else media_type


def _error_answer(codes: Sequence[ErrorCode], notes: Mapping[ErrorCode, str]) -> dict[str, Any]:
    description = "; ".join(f"{code.value}: {notes.get(code) or code.meaning}" for code in codes)
    answer: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        {"$ref": REF_TEMPLATE.format(name="Error")},
                        {
                            "properties": {
                                "error": {
                                    "properties": {"code": {"enum": [code.value for code in codes]}}
                                }
                            }
                        },
                    ]
                }
            }
        },
    }
    if any(code.retry for code in codes):
        answer["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before sending the request again, when known",
                "schema": {"type": "string"},
            }
        }
    return answer


def openapi_route() -> web.RouteDef:
    """``GET /api/openapi.json``: the document in ``app[OPENAPI]``, built once the app's
    routes are all added (see :func:`livecast.app.create_app`)."""

    @contract(
        summary="This document",
        responses={200: Reply(dict[str, Any], "OpenAPI 3.1 document")},
        redis=False,
    )
    async def serve_openapi(request: web.Request) -> web.Response:
        return web.Response(body=request.app[OPENAPI].body, content_type="application/json")

    return web.get("/api/openapi.json", serve_openapi)
