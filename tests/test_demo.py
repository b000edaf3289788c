"""``livecast demo``: it seeds, through the REST API, a scheduled stream featuring the demo
catalog, and prints links whose tokens grant exactly what each page needs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from livecast.appkeys import STREAMS, TOKENS
from livecast.auth import Role, TokenIssuer, load_or_create_secret
from livecast.demo import DEMO_PRODUCTS, seed_demo
from livecast.pages import web_root
from livecast.streams.registry import StreamState
from tests.conftest import free_port

AiohttpServer = Callable[[web.Application], Awaitable[TestServer]]


async def test_seed_creates_a_scheduled_stream_and_scoped_tokens(
    aiohttp_server: AiohttpServer, app: web.Application
) -> None:
    server = await aiohttp_server(app)
    issuer = app[TOKENS]
    async with aiohttp.ClientSession() as http:
        links = await seed_demo(
            http, str(server.make_url("")), issuer, page_url="http://shop.test:9000/", ttl_s=600
        )
        stream = await app[STREAMS].get(links.stream_id)
        assert stream.state is StreamState.SCHEDULED
        assert stream.scheduled_start is not None
        assert stream.featured_skus == [p["sku"] for p in DEMO_PRODUCTS]

        assert links.catalog_available
        assert links.seeded_products == len(DEMO_PRODUCTS)
        query = [("sku", p["sku"]) for p in DEMO_PRODUCTS]
        async with http.get(server.make_url("/api/products"), params=query) as resp:
            products = {p["sku"]: p for p in (await resp.json())["products"]}
        for wanted in DEMO_PRODUCTS:
            got = products[wanted["sku"]]
            assert got["price"] == wanted["price"]
            assert got["stock"] == wanted["stock"]
            assert got["image_url"] == "http://shop.test:9000" + wanted["image"]

    for url, page in [(links.studio, "studio"), (links.control, "control")]:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
            f"http://shop.test:9000/{page}/{stream.id}"
        )
        seller = issuer.verify(parts.fragment.removeprefix("token="))
        assert seller.role is Role.SELLER
        assert seller.can_manage(stream.id, stream.seller_id)
    viewer = issuer.verify(urlsplit(links.watch).fragment.removeprefix("token="))
    assert viewer.role is Role.VIEWER
    assert not viewer.can_manage(stream.id, stream.seller_id)


def test_demo_product_images_are_served_files() -> None:
    for product in DEMO_PRODUCTS:
        assert (web_root() / product["image"].removeprefix("/static/")).is_file()
        assert isinstance(product["price"]["amount_minor"], int)


def _env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env["LIVECAST_SERVER_PORT"] = str(port)
    return env


def _demo(data_dir: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livecast", "demo", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=50, env=_env(port), check=False,
    )  # fmt: skip


def _links(output: str) -> dict[str, str]:
    found = dict(re.findall(r"^(Studio|Control panel|Watch)\b.*?(http://\S+)$", output, re.M))
    assert set(found) == {"Studio", "Control panel", "Watch"}, output
    return found


def _get_json(url: str) -> tuple[int, dict[str, object]]:
    import json

    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, json.loads(resp.read())


@pytest.mark.timeout(60)
def test_cli_seeds_the_data_dir_then_serve_shows_it(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "d", free_port()
    result = _demo(data_dir, port)
    assert result.returncode == 0, result.stderr
    assert "livecast serve --data-dir" in result.stdout
    assert f"featuring {len(DEMO_PRODUCTS)} demo products" in result.stdout
    links = _links(result.stdout)
    stream_id = urlsplit(links["Watch"]).path.rsplit("/", 1)[1]
    assert links["Studio"].startswith(f"http://127.0.0.1:{port}/studio/{stream_id}#token=")
    issuer = TokenIssuer(load_or_create_secret("", data_dir))
    token = urlsplit(links["Studio"]).fragment.removeprefix("token=")
    assert issuer.verify(token).role is Role.SELLER

    server = subprocess.Popen(
        [sys.executable, "-m", "livecast", "serve", "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(port),
    )  # fmt: skip
    try:
        _wait_ready(port, server)
        status, stream = _get_json(f"http://127.0.0.1:{port}/api/streams/{stream_id}")
        assert status == 200
        assert stream["state"] == "scheduled"
        # With the server running, a second demo seeds through it and says nothing of starting it.
        again = _demo(data_dir, port)
        assert again.returncode == 0, again.stderr
        assert "livecast serve" not in again.stdout
        second = urlsplit(_links(again.stdout)["Watch"]).path.rsplit("/", 1)[1]
        assert _get_json(f"http://127.0.0.1:{port}/api/streams/{second}")[0] == 200
        # Another data dir signs with another secret: refused, and told why.
        stranger = _demo(tmp_path / "other", port)
        assert stranger.returncode == 1
        assert "same --config and --data-dir" in stranger.stderr
    finally:
        server.terminate()
        server.wait(timeout=20)


def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, "livecast serve exited"
        try:
            if _get_json(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("livecast serve did not become ready")
