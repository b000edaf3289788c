"""Serving the pages over real HTTP: routes, content types, cache and security headers,
path safety, dev-mode viewer tokens, and the installed layout of ``web/``."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from livecast.app import create_app
from livecast.appkeys import TOKENS
from livecast.auth import Role
from livecast.config import DevSettings, Settings
from livecast.pages import CONTENT_TYPES, web_root
from tests.conftest import AiohttpClient, Client, MakeToken, bearer

REPO = Path(__file__).parent.parent


async def _create_stream(client: Client, token: str, title: str = "Sneaker drop") -> str:
    resp = await client.post("/api/streams", json={"title": title}, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    stream_id: str = (await resp.json())["id"]
    return stream_id


@pytest.fixture
async def dev_client(
    aiohttp_client: AiohttpClient, settings: Settings
) -> tuple[Client, web.Application]:
    dev = dataclasses.replace(settings, dev=DevSettings(mint_viewer_tokens=True))
    app = create_app(dev)
    return await aiohttp_client(app), app


async def test_directory_page_is_html_with_strict_headers(client: Client) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert resp.charset == "utf-8"
    body = await resp.text()
    assert '<script type="module" src="/static/js/directory.js">' in body
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    assert "ETag" in resp.headers


@pytest.mark.parametrize(
    ("page", "module"),
    [("watch", "watch.js"), ("studio", "studio.js"), ("control", "control.js")],
)
async def test_stream_pages_serve_their_html(
    client: Client, make_token: MakeToken, page: str, module: str
) -> None:
    stream_id = await _create_stream(client, make_token(Role.SELLER))
    resp = await client.get(f"/{page}/{stream_id}")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert f"/static/js/{module}" in await resp.text()
    assert "Content-Security-Policy" in resp.headers


@pytest.mark.parametrize("stream_id", ["nosuchstream", "bad%20id"])
async def test_unknown_stream_page_is_404_but_still_a_page(client: Client, stream_id: str) -> None:
    resp = await client.get(f"/watch/{stream_id}")
    assert resp.status == 404
    assert resp.content_type == "text/html"
    assert "/static/js/watch.js" in await resp.text()


def _referenced_assets() -> set[str]:
    found: set[str] = set()
    for html in (REPO / "web").glob("*.html"):
        found.update(re.findall(r'(?:src|href)="(/static/[^"]+)"', html.read_text()))
    for js in (REPO / "web" / "js").glob("*.js"):
        for name in re.findall(r"from '\./([\w-]+\.js)'", js.read_text()):
            found.add(f"/static/js/{name}")
        for vendored in re.findall(r"'\.\./(vendor/[\w./-]+)'", js.read_text()):
            found.add(f"/static/{vendored}")
    return found


async def test_every_referenced_asset_is_served_with_its_type(client: Client) -> None:
    assets = _referenced_assets()
    assert {"/static/css/app.css", "/static/js/api.js", "/static/js/events.js"} <= assets
    assert "/static/vendor/hls.js/hls.min.mjs" in assets
    for path in sorted(assets):
        resp = await client.get(path)
        assert resp.status == 200, path
        expected = CONTENT_TYPES[Path(path).suffix].split(";")[0]
        assert resp.content_type == expected, path
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_revalidation_answers_304(client: Client) -> None:
    first = await client.get("/static/js/api.js")
    etag = first.headers["ETag"]
    again = await client.get("/static/js/api.js", headers={"If-None-Match": etag})
    assert again.status == 304


@pytest.mark.parametrize(
    "path",
    [
        "/static/../livecast/pages.py",
        "/static/%2e%2e/pyproject.toml",
        "/static/js/../../pyproject.toml",
        "/static/js/nothing.js",
        "/static/js",
        "/static/.hidden.js",
        "/static/index.py",
    ],
)
async def test_static_serves_nothing_outside_web_or_of_unknown_type(
    client: Client, path: str
) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    body: dict[str, Any] = await resp.json()
    assert body["error"]["code"] == "not_found"


async def test_dev_tokens_are_404_when_dev_mode_is_off(client: Client) -> None:
    assert (await (await client.get("/api/dev")).json()) == {"mint_viewer_tokens": False}
    resp = await client.post("/api/dev/tokens", json={"name": "Ana"})
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_dev_mode_mints_a_viewer_token_that_the_api_accepts(
    dev_client: tuple[Client, web.Application],
) -> None:
    client, app = dev_client
    assert (await (await client.get("/api/dev")).json()) == {"mint_viewer_tokens": True}
    resp = await client.post("/api/dev/tokens", json={"name": "  Ana   B  "})
    assert resp.status == 201
    body = await resp.json()
    assert body["role"] == "viewer"
    assert body["name"] == "Ana B"
    who = app[TOKENS].verify(body["token"])
    assert who.name == "Ana B"
    assert who.role is Role.VIEWER
    assert who.sub == body["sub"]
    assert not who.streams
    # A viewer token is an identity, not a licence to sell.
    resp = await client.post("/api/streams", json={"title": "x"}, headers=bearer(body["token"]))
    assert resp.status == 403
    second = await (await client.post("/api/dev/tokens", json={"name": "Ana B"})).json()
    assert second["sub"] != body["sub"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": ""}, 422),
        ({"name": "   "}, 422),
        ({"name": "x" * 65}, 422),
        ({"name": "bell\x07"}, 422),
        ({"name": "nul\x00"}, 422),
        ({"name": "Ana\nB"}, 422),
        ({"name": "evil\u202egnp.exe"}, 422),
        ({"name": "iso\u2066late"}, 422),
        ({"name": "zero\u200bwidth"}, 422),
        ({"name": 5}, 422),
        ({}, 422),
        ({"name": "Ana", "role": "admin"}, 422),
    ],
)
async def test_dev_tokens_reject_bad_names(
    dev_client: tuple[Client, web.Application], body: dict[str, Any], status: int
) -> None:
    client, _ = dev_client
    resp = await client.post("/api/dev/tokens", json=body)
    assert resp.status == status
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_field"
    assert "name" in error["message"] or "role" in error["message"]


async def test_dev_tokens_need_json(dev_client: tuple[Client, web.Application]) -> None:
    client, _ = dev_client
    resp = await client.post("/api/dev/tokens", data="name=Ana")
    assert resp.status == 415
    resp = await client.post(
        "/api/dev/tokens", data="{", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400


def test_source_checkout_serves_the_repo_web_dir() -> None:
    assert web_root() == REPO / "web"


# Run by the installed copy: build the app (reads every packaged JSON fragment) and say
# where the pages were found.
_PROBE = """
import sys
import livecast.pages as p
from livecast.app import create_app
from livecast.config import load_settings
create_app(load_settings(env={}, overrides={"data.dir": sys.argv[1]}))
print(p.__file__, p.web_root())
"""


@pytest.mark.timeout(120)
def test_pip_install_ships_the_pages(tmp_path: Path) -> None:
    """``pip install .`` puts web/ where an installed livecast finds it."""
    # Build from a copy, so the checkout gets no build/ or egg-info litter.
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md", "LICENSE", "livecast", "web", "config"):
        original = REPO / name
        if original.is_dir():
            shutil.copytree(original, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif original.is_file():
            source.mkdir(exist_ok=True)
            shutil.copy2(original, source / name)
    prefix = tmp_path / "prefix"
    install = subprocess.run(
        [
            # --ignore-installed: without it pip first uninstalls the livecast of the venv
            # running this suite (the developer's editable install and its console script).
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
            "--no-index", "--ignore-installed", "--prefix", str(prefix), str(source),
        ],
        capture_output=True, text=True, timeout=110, check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    site = next(prefix.glob("lib/python*/site-packages"))
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / "data")],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(site)}, check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    module_file, root = probe.stdout.split()
    assert Path(module_file).is_relative_to(site)
    installed = Path(root)
    assert installed == prefix / "share" / "livecast" / "web"
    expected = {p.relative_to(REPO / "web") for p in (REPO / "web").rglob("*") if p.is_file()}
    shipped = {p.relative_to(installed) for p in installed.rglob("*") if p.is_file()}
    assert expected == shipped


async def test_dev_endpoints_are_described_in_openapi(client: Client) -> None:
    document = await (await client.get("/api/openapi.json")).json()
    assert set(document["paths"]["/api/dev/tokens"]) == {"post"}
    assert "DevToken" in document["components"]["schemas"]


async def test_directory_lists_live_streams_with_their_viewer_count(
    client: Client, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER)
    live = await _create_stream(client, seller, "Live one")
    await client.post(f"/api/streams/{live}/start", headers=bearer(seller))
    scheduled = await _create_stream(client, seller, "Later")
    resp = await client.get("/api/directory")
    assert resp.status == 200
    streams = {s["id"]: s for s in (await resp.json())["streams"]}
    assert streams[live]["viewers"] == 0
    assert streams[live]["title"] == "Live one"
    assert streams[scheduled]["viewers"] is None

    async with client.ws_connect(f"/ws/streams/{live}", protocols=["livecast.v1.json"]) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        for _ in range(50):
            streams = {
                s["id"]: s for s in (await (await client.get("/api/directory")).json())["streams"]
            }
            if streams[live]["viewers"] == 1:
                break
            await asyncio.sleep(0.1)
        assert streams[live]["viewers"] == 1


async def test_directory_hides_private_streams_from_others(
    client: Client, make_token: MakeToken
) -> None:
    seller = make_token(Role.SELLER, sub="owner")
    resp = await client.post(
        "/api/streams", json={"title": "Staff only", "public": False}, headers=bearer(seller)
    )
    private = (await resp.json())["id"]
    anonymous = {s["id"] for s in (await (await client.get("/api/directory")).json())["streams"]}
    assert private not in anonymous
    mine = await client.get("/api/directory", headers=bearer(seller))
    assert private in {s["id"] for s in (await mine.json())["streams"]}
