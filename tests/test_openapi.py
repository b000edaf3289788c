"""The served OpenAPI document is whole: every reference resolves, every route is there."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.conftest import Client


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


async def test_every_reference_resolves(client: Client) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, f"{ref} does not resolve"


async def test_every_api_route_is_described(client: Client, app: web.Application) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    described = {
        (path, method.upper())
        for path, item in doc["paths"].items()
        for method in item
        if method != "parameters"
    }
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if not path or route.method in ("HEAD", "OPTIONS", "*"):
            continue
        if path.startswith(("/api/", "/metrics", "/healthz", "/readyz")):
            assert (path, route.method) in described, f"{route.method} {path} is not in the OpenAPI"


async def test_order_stats_and_webhook_payloads_are_described(client: Client) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    assert {"Order", "OrderLine", "StreamStats", "WebhookEvent", "Money"} <= set(
        doc["components"]["schemas"]
    )
