"""The OpenAPI description, assembled from a fragment per package.

Each package keeps an ``openapi.json`` beside its routes with ``paths`` and
``components.schemas``; they are merged into one document served at
``/api/openapi.json``. A duplicated path or schema name is a programming error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["build_openapi", "openapi_route"]


def build_openapi(fragments: list[Path], *, version: str) -> dict[str, Any]:
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "livecast",
            "version": version,
            "description": "Live-shopping streaming server: streams, live events, inventory, "
            'cart and checkout. Errors are {"error": {"code", "message"}}. Any route that '
            "needs Redis answers 503 redis_unavailable (with Retry-After) while Redis is "
            "unreachable. Every 401 carries an RFC 6750 challenge, "
            'WWW-Authenticate: Bearer realm="livecast", with error="invalid_token" when the '
            "token sent is malformed, forged or expired (token_invalid, token_expired).",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": {},
        },
        "paths": {},
    }
    for path in fragments:
        fragment = json.loads(path.read_text())
        for name, item in fragment.get("paths", {}).items():
            if name in document["paths"]:
                raise ValueError(f"{path}: path {name} is described twice")
            document["paths"][name] = item
        for name, schema in fragment.get("components", {}).get("schemas", {}).items():
            if name in document["components"]["schemas"]:
                raise ValueError(f"{path}: schema {name} is described twice")
            document["components"]["schemas"][name] = schema
    return document


def openapi_route(document: dict[str, Any]) -> web.RouteDef:
    body = json.dumps(document, indent=1).encode()

    async def serve_openapi(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return web.get("/api/openapi.json", serve_openapi)
