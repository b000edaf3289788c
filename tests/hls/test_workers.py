"""LL-HLS through ``livecast serve --workers 2`` on the shared public port: the worker that
holds the publisher packages the stream, the other forwards to it, and a player gets the
multivariant playlist, both media playlists and their parts whichever worker the kernel
hands each of its connections to."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import cast

import aiohttp
import pytest
import redis.asyncio as aioredis

from livecast.auth import Role, TokenIssuer, load_or_create_secret
from livecast.ingest.nodes import owner_of
from tests.conftest import Client, bearer
from tests.hls.playlists import hint, next_part, renditions
from tests.ingest.peers import publish
from tests.test_workers import Workers, _fresh, _node_urls, _ready, redis, started

__all__ = ["redis", "started"]  # the fixtures, used by name

pytestmark = pytest.mark.timeout(150)

_FORWARDED = re.compile(r'livecast_hls_forwarded_requests_total\{outcome="answered"\} (\S+)')


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url) as resp:
        return resp.status, await resp.read()


async def test_ll_hls_plays_through_the_shared_port_whichever_worker_answers(
    tmp_path: Path, started: list[Workers], redis: aioredis.Redis
) -> None:
    data_dir = tmp_path / "data"
    issuer = TokenIssuer(load_or_create_secret("", data_dir))
    server = Workers(
        data_dir,
        env={"LIVECAST_HLS_PART_DURATION_S": "0.3", "LIVECAST_HLS_SEGMENT_DURATION_S": "1.0"},
    )
    started.append(server)
    assert await _ready(server) == {1, 2}
    nodes = await _node_urls(redis)
    assert len(nodes) == 2
    seller = issuer.issue(sub="ana", name="Ana", role=Role.SELLER, ttl_s=600)
    async with _fresh() as http, aiohttp.ClientSession(base_url=server.url) as shared:
        async with http.post(
            f"{server.url}/api/streams", json={"title": "Drop"}, headers=bearer(seller)
        ) as resp:
            assert resp.status == 201, await resp.text()
            stream_id = (await resp.json())["id"]
        publisher = await publish(cast(Client, shared), stream_id, seller)
        origin = owner_of(publisher.location.rsplit("/", 1)[1])
        (other,) = set(nodes) - {origin}
        base = f"{server.url}/hls/{stream_id}"
        try:
            # a new connection per request: the kernel spreads them over both workers
            names: dict[str, str] = {}
            body = b""
            deadline = time.monotonic() + 40
            while set(names) != {"video", "audio"} or b"#EXTINF" not in body:
                assert time.monotonic() < deadline, server.output()
                status, multivariant = await _get(http, f"{base}/index.m3u8")
                if status == 200:
                    names = renditions(multivariant.decode())
                    status, body = await _get(http, f"{base}/{names['video']}")
                else:
                    body = b""
                    await asyncio.sleep(0.2)
            for name in names.values():
                status, body = await _get(http, f"{base}/{name}")
                assert status == 200
                text = body.decode()
                msn, index = next_part(text)
                hinted = hint(text)
                # a blocking reload and the hinted part, each from either worker
                (status, reloaded), (part_status, part) = await asyncio.gather(
                    _get(http, f"{base}/{name}?_HLS_msn={msn}&_HLS_part={index}"),
                    _get(http, f"{base}/{hinted}"),
                )
                assert status == 200
                assert f'URI="{hinted}"' in reloaded.decode()
                assert part_status == 200
                assert part
                # the same bytes, however many times and whoever answers
                for _ in range(6):
                    assert await _get(http, f"{base}/{hinted}") == (200, part)
            # the worker without the publisher did answer some, forwarding to the origin
            async with http.get(f"{nodes[other]}/metrics") as resp:
                forwarded = _FORWARDED.search(await resp.text())
            assert forwarded is not None
            assert float(forwarded[1]) >= 1
        finally:
            await publisher.close()
