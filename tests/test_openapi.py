"""The served OpenAPI document is whole (every reference resolves, every route is there)
and changes only on purpose: it must equal ``tests/snapshots/openapi.json``.

After a deliberate change to a route or a type, refresh the snapshot with::

    LIVECAST_UPDATE_SNAPSHOT=1 python -m pytest tests/test_openapi.py -k snapshot

and review its diff with the change.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from livecast.error_codes import ErrorCode
from livecast.openapi import OPENAPI, contract_of
from tests.conftest import Client
from tests.contract import AnswerCheck
from tests.snapshots import assert_matches, refs


async def test_every_reference_resolves(client: Client) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
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
    assert doc["webhooks"]["order"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/OrderEvent"}
    assert {"Order", "OrderLine", "StreamStats", "OrderEvent", "Money"} <= set(
        doc["components"]["schemas"]
    )


def test_the_document_matches_its_snapshot(app: web.Application) -> None:
    assert_matches(
        "openapi.json",
        app[OPENAPI].body.decode() + "\n",
        served_as="GET /api/openapi.json",
        refresh="python -m pytest tests/test_openapi.py -k snapshot",
    )


async def test_the_served_document_is_the_generated_one(
    client: Client, app: web.Application
) -> None:
    served = await (await client.get("/api/openapi.json")).json()
    assert served == json.loads(app[OPENAPI].body)


async def test_every_described_error_code_has_the_status_it_is_under(client: Client) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, answer in operation["responses"].items():
                schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
                if "allOf" not in schema:
                    continue
                codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
                for code in codes:
                    assert ErrorCode.of(code).status == int(status), (path, method, status, code)


def test_the_answer_check_catches_what_the_document_does_not_say(app: web.Application) -> None:
    check = AnswerCheck(app[OPENAPI])
    stream = {
        "id": "s1",
        "title": "t",
        "description": "",
        "seller_id": "u",
        "seller_name": "U",
        "state": "live",
        "public": True,
        "featured_skus": [],
        "scheduled_start": None,
        "created_at": "2026-11-22T10:00:00.000Z",
        "started_at": None,
        "ended_at": None,
        "updated_at": None,
    }

    def answer(status: int, body: Any) -> str | None:
        encoded = json.dumps(body).encode()
        return check.check("GET", "/api/streams/{stream_id}", status, "application/json", encoded)

    assert answer(200, stream) is None
    assert "lacks" in (answer(200, {**stream, "extra": 1}) or "")
    assert "not a Stream" in (answer(200, {k: v for k, v in stream.items() if k != "id"}) or "")
    assert "not a Stream" in (answer(200, {**stream, "state": "paused"}) or "")
    assert "not documented" in (answer(409, {"error": {"code": "conflict", "message": ""}}) or "")
    wrong_code = {"error": {"code": "unknown_sku", "message": "no"}}
    assert "unknown_sku is not documented" in (answer(404, wrong_code) or "")
    assert answer(404, {"error": {"code": "stream_not_found", "message": "no"}}) is None


async def test_every_object_schema_lists_its_required_fields(client: Client) -> None:
    """An answer's schema requires every field (answers always carry them all); a request's
    leaves out only fields with a default, or those of a patch (absent: unchanged)."""
    doc = await (await client.get("/api/openapi.json")).json()
    for name, schema in doc["components"]["schemas"].items():
        if "properties" not in schema:
            continue
        required = set(schema.get("required", []))
        for field, described in schema["properties"].items():
            if field in required or name == "PatchStream":
                continue
            assert "default" in described, f"{name}.{field} is neither required nor defaulted"


def test_every_api_route_declares_its_contract(app: web.Application) -> None:
    """Every route but the pages' files declares its contract beside its handler."""
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        path = route.resource.canonical
        if not path.startswith(
            ("/api/", "/whip/", "/whep/", "/ws/", "/hls/", "/metrics", "/healthz", "/readyz")
        ):
            continue
        assert contract_of(route.handler) is not None, f"{route.method} {path} has no contract"


async def test_every_path_parameter_is_declared_once(client: Client) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    for path, item in doc["paths"].items():
        named = set(re.findall(r"\{([^}]+)\}", path))
        for method, operation in item.items():
            if method == "parameters":
                continue
            declared = [*item.get("parameters", []), *operation.get("parameters", [])]
            keys = [(p["name"], p["in"]) for p in declared]
            assert len(keys) == len(set(keys)), (path, method, keys)
            in_path = {p["name"] for p in declared if p["in"] == "path" and p.get("required")}
            assert in_path == named, (path, method, in_path)
