"""Every error leaves in the JSON error shape, aiohttp's own included: those its HTTP
parser answers before any middleware runs (sent here over a raw socket), and routing,
method, body-size and ``Expect`` errors, over real HTTP through the app."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from livecast import _aiohttp
from livecast.auth import Role
from tests.conftest import Client, MakeToken


async def _raw(client: Client, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as bytes; the status, headers (lower-case names) and body."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()  # the server closes after an error
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def _assert_json_error(status: int, headers: dict[str, str], body: bytes, want: int) -> str:
    assert status == want, body
    assert headers["content-type"].startswith("application/json"), headers
    assert int(headers["content-length"]) == len(body)
    data: dict[str, Any] = json.loads(body)
    assert list(data) == ["error"]
    assert isinstance(data["error"]["code"], str)
    assert data["error"]["code"]
    message: str = data["error"]["message"]
    assert message
    return message


PARSER_REFUSALS = {
    "url_over_8kb": b"GET /api/products/" + b"A" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "header_over_8kb": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    "bad_header_name": b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    "bad_content_length": b"POST /api/cart HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "bad_method": b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "not_http": b"hello\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", PARSER_REFUSALS.values(), ids=PARSER_REFUSALS.keys())
async def test_requests_the_http_parser_refuses_get_the_json_error(
    client: Client, request_bytes: bytes
) -> None:
    status, headers, body = await _raw(client, request_bytes)
    _assert_json_error(status, headers, body, 400)
    assert json.loads(body)["error"]["code"] == "bad_request"


async def test_an_8kb_url_says_what_was_too_long(client: Client) -> None:
    status, headers, body = await _raw(client, PARSER_REFUSALS["url_over_8kb"])
    message = _assert_json_error(status, headers, body, 400)
    assert "8190 bytes" in message
    # The server still serves the next connection.
    resp = await client.get("/healthz")
    assert resp.status == 200


async def test_routing_method_size_and_expect_errors_are_json(
    client: Client, make_token: MakeToken
) -> None:
    status, headers, body = await _raw(
        client, b"GET /no/such/route HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    _assert_json_error(status, headers, body, 404)
    assert json.loads(body)["error"]["code"] == "not_found"

    status, headers, body = await _raw(
        client, b"DELETE /api/streams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    _assert_json_error(status, headers, body, 405)
    assert json.loads(body)["error"]["code"] == "method_not_allowed"
    assert "POST" in headers["allow"]

    big = 2 * 1024 * 1024
    token = make_token(Role.SELLER).encode()
    status, headers, body = await _raw(
        client,
        b"POST /api/streams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (token, big) + b" " * big,
    )
    _assert_json_error(status, headers, body, 413)
    assert json.loads(body)["error"]["code"] == "payload_too_large"

    # aiohttp answers a bad Expect header before any middleware runs.
    status, headers, body = await _raw(
        client,
        b"POST /api/streams HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: teapot\r\n"
        b"Content-Length: 2\r\n\r\n{}",
    )
    _assert_json_error(status, headers, body, 417)
    assert json.loads(body)["error"]["code"] == "expectation_failed"


def test_the_installed_aiohttp_is_the_one_the_hook_fits() -> None:
    _aiohttp.check_compatible()
