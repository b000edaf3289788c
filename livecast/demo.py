"""``livecast demo``: seed a small catalog and a scheduled stream, print the links to try it.

Seeding goes through the public REST API with a seller token, the same calls a merchant's
backend makes: to the server already running at ``server.host``/``server.port`` if one
answers there, otherwise to the app started in-process on a loopback port for the
seeding (with the configured Redis, or the data dir's embedded one) and stopped again.
The printed studio and control links carry the seller's token, the watch link a viewer's,
all in the URL fragment, which browsers never send to the server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from livecast.auth import Role, TokenIssuer, load_or_create_secret
from livecast.config import Settings

__all__ = ["DEMO_PRODUCTS", "DemoError", "DemoLinks", "public_url", "run_demo", "seed_demo"]

SELLER_SUB = "demo-seller"
SELLER_NAME = "Demo Sneaker Shop"
VIEWER_NAME = "Demo Viewer"
STREAM_TITLE = "Autumn sneaker drop: live deals"
STARTS_IN = dt.timedelta(minutes=10)

# The demo catalog: prices in minor units; images are files the app serves itself.
DEMO_PRODUCTS: list[dict[str, Any]] = [
    {
        "sku": "DEMO-RUNNER-RED-42",
        "title": "Retro runner, red, EU 42",
        "description": "Suede and mesh everyday runner.",
        "image": "/static/img/demo-runner-red.svg",
        "price": {"amount_minor": 8900, "currency": "EUR"},
        "stock": 40,
    },
    {
        "sku": "DEMO-RUNNER-BLUE-43",
        "title": "Retro runner, blue, EU 43",
        "description": "The same runner in ocean blue.",
        "image": "/static/img/demo-runner-blue.svg",
        "price": {"amount_minor": 8900, "currency": "EUR"},
        "stock": 25,
    },
    {
        "sku": "DEMO-SOCKS-3PK",
        "title": "Cushioned socks, 3 pairs",
        "description": "Organic cotton, one size.",
        "image": "/static/img/demo-socks.svg",
        "price": {"amount_minor": 1500, "currency": "EUR"},
        "stock": 200,
    },
]


_WRONG_SECRET = (
    "the server at {} refused the demo's token: give `livecast demo` the same --config and "
    "--data-dir (or auth.secret) as the server"
)


class DemoError(Exception):
    """The server refused part of the seeding; the message says what and why."""


@dataclass(frozen=True, slots=True)
class DemoLinks:
    stream_id: str
    studio: str
    control: str
    watch: str
    seeded_products: int
    catalog_available: bool


async def seed_demo(
    http: aiohttp.ClientSession, api_url: str, issuer: TokenIssuer, *, page_url: str, ttl_s: int
) -> DemoLinks:
    """Seed through the REST API at ``api_url``; links point at ``page_url``."""
    api = api_url.rstrip("/")
    pages = page_url.rstrip("/")
    seller = issuer.issue(sub=SELLER_SUB, name=SELLER_NAME, role=Role.SELLER, ttl_s=ttl_s)
    auth = {"Authorization": f"Bearer {seller}"}

    seeded = 0
    catalog_available = True
    for product in DEMO_PRODUCTS:
        body = {k: v for k, v in product.items() if k not in {"sku", "image"}}
        body["image_url"] = pages + product["image"]
        async with http.put(f"{api}/api/products/{product['sku']}", json=body, headers=auth) as r:
            if r.status in (404, 405) and (await _error_code(r)) in {
                "not_found",
                "method_not_allowed",
            }:
                catalog_available = False  # this server has no catalog API
                break
            if r.status == 401:
                raise DemoError(_WRONG_SECRET.format(api))
            if r.status not in (200, 201):
                raise DemoError(f"storing {product['sku']} failed: {r.status} {await r.text()}")
        seeded += 1

    starts = dt.datetime.now(dt.UTC) + STARTS_IN
    stream_body = {
        "title": STREAM_TITLE,
        "description": "Go live from the studio, then run a flash deal from the control panel.",
        "scheduled_start": starts.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "featured_skus": [p["sku"] for p in DEMO_PRODUCTS],
    }
    async with http.post(f"{api}/api/streams", json=stream_body, headers=auth) as r:
        if r.status == 401:
            raise DemoError(_WRONG_SECRET.format(api))
        if r.status != 201:
            raise DemoError(f"creating the demo stream failed: {r.status} {await r.text()}")
        stream_id: str = (await r.json())["id"]

    viewer = issuer.issue(sub="demo-viewer", name=VIEWER_NAME, role=Role.VIEWER, ttl_s=ttl_s)
    return DemoLinks(
        stream_id=stream_id,
        studio=f"{pages}/studio/{stream_id}#token={seller}",
        control=f"{pages}/control/{stream_id}#token={seller}",
        watch=f"{pages}/watch/{stream_id}#token={viewer}",
        seeded_products=seeded,
        catalog_available=catalog_available,
    )


async def _error_code(response: aiohttp.ClientResponse) -> str | None:
    try:
        body = await response.json()
    except (aiohttp.ContentTypeError, ValueError):
        return None
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def public_url(settings: Settings) -> str:
    """Where a browser on this machine reaches ``livecast serve`` with these settings."""
    host = settings.server.host
    if host in {"0.0.0.0", "::", ""}:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.server.port}"


def run_demo(settings: Settings) -> tuple[DemoLinks, bool]:
    """Seed (blocking, for the CLI); also says whether a running server was used."""
    return asyncio.run(_run(settings))


async def _run(settings: Settings) -> tuple[DemoLinks, bool]:
    issuer = TokenIssuer(
        load_or_create_secret(settings.auth.secret, settings.data_dir), issuer=settings.auth.issuer
    )
    url = public_url(settings)
    ttl = settings.auth.default_ttl_s
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        if await _answers(http, url):
            return await seed_demo(http, url, issuer, page_url=url, ttl_s=ttl), True
        from livecast.app import create_app

        runner = web.AppRunner(
            create_app(settings),
            access_log=None,
            shutdown_timeout=settings.server.shutdown_timeout_s,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            api = f"http://127.0.0.1:{runner.addresses[0][1]}"
            return await seed_demo(http, api, issuer, page_url=url, ttl_s=ttl), False
        finally:
            await runner.cleanup()


async def _answers(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
            return r.status == 200 and (await _ready(r))
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


async def _ready(response: aiohttp.ClientResponse) -> bool:
    try:
        body = await response.json()
    except (aiohttp.ContentTypeError, ValueError):
        return False
    return isinstance(body, dict) and body.get("status") == "ready"
