"""Debian's nginx in front of the origin as the CDN (``proxy_cache`` with
``proxy_cache_lock``): hundreds of LL-HLS players through it cause about one origin
request per object, because parts and segments are immutable and identical blocking
requests get identical, cacheable answers."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from livecast.bench._nginx import nginx_binary, start_nginx
from tests.conftest import Client
from tests.hls.playlists import hint, next_part
from tests.hls.test_routes import complete_segments
from tests.ingest.conftest import SellerStream
from tests.ingest.peers import publish

PLAYERS = 200
ROUNDS = 3


@pytest.fixture
def nginx(client: Client, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """nginx on loopback caching ``client``'s origin; its base URL and access log."""
    if nginx_binary() is None:
        pytest.fail("nginx is not installed: apt-get install nginx-light (.ci/run does)")
    origin_port = client.make_url("/").port
    assert origin_port is not None
    process, base = start_nginx(tmp_path / "nginx", origin_port)
    try:
        yield base, tmp_path / "nginx" / "access.log"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        yield http


async def test_hundreds_of_players_through_nginx_cost_about_one_origin_request_per_object(
    client: Client,
    stream: SellerStream,
    nginx: tuple[str, Path],
    session: aiohttp.ClientSession,
) -> None:
    cdn, access_log = nginx
    sender = await publish(client, stream.id, stream.seller_token)
    try:
        await complete_segments(client, stream.id, 1)
        base = f"{cdn}/hls/{stream.id}"

        async def get(url: str) -> tuple[int, bytes]:
            for _ in range(50):  # nginx may still be starting
                try:
                    async with session.get(url) as resp:
                        return resp.status, await resp.read()
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            raise AssertionError(f"nginx never answered {url}")

        async def player() -> int:
            """Follow the live edge for ROUNDS parts, as an LL-HLS player does."""
            status, body = await get(f"{base}/index.m3u8")
            assert status == 200
            fetched = 0
            for _ in range(ROUNDS):
                text = body.decode()
                name, (msn, index) = hint(text), next_part(text)
                blocking = get(f"{base}/index.m3u8?_HLS_msn={msn}&_HLS_part={index}")
                (status, body), (part_status, part) = await asyncio.gather(
                    blocking, get(f"{base}/{name}")
                )
                assert status == 200
                assert part_status == 200
                fetched += len(part) > 0
            return fetched

        fetched = await asyncio.gather(*(player() for _ in range(PLAYERS)))
    finally:
        await sender.close()
    assert sum(fetched) >= PLAYERS  # the players did get parts

    # what reached the origin: nginx logs an upstream address for those requests only
    origin: Counter[str] = Counter()
    served = 0
    for line in access_log.read_text().splitlines():
        _cache_status, upstream, uri = line.split(" ", 2)
        served += 1
        if upstream != "-":
            origin[uri] += 1
    assert served >= PLAYERS * (1 + 2 * ROUNDS)
    objects = len(origin)
    total = sum(origin.values())
    # about one origin request per object, however many players asked for it
    assert total <= objects * 1.5, origin.most_common(5)
    assert max(origin.values()) <= 3, origin.most_common(5)
    assert total * 20 <= served
