"""Debian's nginx as the CDN (``proxy_cache`` with ``proxy_cache_lock``), in front of one
node or of two (the stream's origin and a node that forwards to it): hundreds of LL-HLS
players through it (the multivariant playlist, then both renditions) cause about one
origin request per object, because parts and segments are immutable, identical blocking
requests get identical, cacheable answers, and every node answers with the same bytes.
The README shows this configuration."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from livecast.bench._nginx import LOCATION, UPSTREAM, nginx_binary, start_nginx
from tests.conftest import Client
from tests.hls.playlists import complete_segments, hint, next_part, renditions
from tests.ingest.conftest import MakeNode, SellerStream
from tests.ingest.peers import publish

PLAYERS = 200
ROUNDS = 3


@pytest.fixture(params=[1, 2], ids=["one node", "two nodes"])
async def nodes(request: pytest.FixtureRequest, make_node: MakeNode) -> list[Client]:
    """The nodes behind the CDN; the stream is published on the first. Its origin record
    lives the default 10 s (not the HLS tests' 1 s, for failover): hundreds of players
    keep the loop of a node in this one test process busy, and a heartbeat late by a
    second on a loaded machine would send the forwarding node's players a 404."""
    return [await make_node(origin_ttl_s=10.0) for _ in range(request.param)]


@pytest.fixture
def nginx(nodes: list[Client], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """nginx on loopback caching ``nodes``; its base URL and access log."""
    if nginx_binary() is None:
        pytest.fail("nginx is not installed: apt-get install nginx-light (.ci/run does)")
    ports = [node.make_url("/").port for node in nodes]
    process, base = start_nginx(tmp_path / "nginx", [port for port in ports if port is not None])
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
    nodes: list[Client],
    stream: SellerStream,
    nginx: tuple[str, Path],
    session: aiohttp.ClientSession,
) -> None:
    cdn, access_log = nginx
    sender = await publish(nodes[0], stream.id, stream.seller_token)
    try:
        await complete_segments(nodes[0], stream.id, 1)
        base = f"{cdn}/hls/{stream.id}"

        async def get(url: str) -> tuple[int, bytes]:
            for _ in range(50):  # nginx may still be starting
                try:
                    async with session.get(url) as resp:
                        return resp.status, await resp.read()
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            raise AssertionError(f"nginx never answered {url}")

        async def follow(playlist: str) -> int:
            """Follow one rendition's live edge for ROUNDS parts, as an LL-HLS player does."""
            status, body = await get(f"{base}/{playlist}")
            assert status == 200, (playlist, body)
            fetched = 0
            for _ in range(ROUNDS):
                text = body.decode()
                name, (msn, index) = hint(text), next_part(text)
                blocking = get(f"{base}/{playlist}?_HLS_msn={msn}&_HLS_part={index}")
                (status, body), (part_status, part) = await asyncio.gather(
                    blocking, get(f"{base}/{name}")
                )
                assert status == 200
                assert part_status == 200
                fetched += len(part) > 0
            return fetched

        async def player() -> int:
            """The multivariant playlist, then both renditions at once."""
            status, body = await get(f"{base}/index.m3u8")
            assert status == 200
            names = renditions(body.decode())
            assert set(names) == {"video", "audio"}
            return sum(await asyncio.gather(*(follow(name) for name in names.values())))

        fetched = await asyncio.gather(*(player() for _ in range(PLAYERS)))
    finally:
        await sender.close()
    assert sum(fetched) >= 2 * PLAYERS  # the players did get parts of both renditions

    # what reached the origin: nginx logs an upstream address for those requests only
    origin: Counter[str] = Counter()
    asked: Counter[str] = Counter()  # node address -> requests nginx sent it
    served = 0
    for line in access_log.read_text().splitlines():
        _cache_status, upstream, uri = line.split(" ", 2)
        served += 1
        if upstream != "-":
            origin[uri] += 1
            asked[upstream] += 1
    assert served >= PLAYERS * (1 + 2 * (1 + 2 * ROUNDS))
    objects = len(origin)
    total = sum(origin.values())
    # about one origin request per object, however many players asked for it
    assert total <= objects * 1.5, origin.most_common(5)
    assert max(origin.values()) <= 3, origin.most_common(5)
    assert total * 20 <= served
    # every node was asked for some: whichever answered, the players got the same objects
    assert len(asked) == len(nodes), asked


def _directives(text: str) -> list[str]:
    """nginx directives one per line, without comments and indentation."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def test_the_readme_shows_the_tested_configuration() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("\n### A CDN in front\n") :]
    shown = _directives(section.split("```nginx\n", 1)[1].split("```", 1)[0])
    location = _directives(LOCATION)
    start = shown.index(location[0])
    assert shown[start : start + len(location)] == location
    upstream = _directives(UPSTREAM.format(servers=""))
    start = shown.index(upstream[0])
    end = shown.index("}", start)
    servers = [line for line in shown[start + 1 : end] if line.startswith("server ")]
    assert len(servers) >= 2  # every node, not only the origins
    others = [line for line in shown[start : end + 1] if not line.startswith("server ")]
    assert others == upstream
