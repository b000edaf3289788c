"""``redis_url`` on two servers: the embedded Redis and the cluster-mode one, where a command
or script whose keys span slots fails. A package whose every test should run on both imports
it into its conftest (``from tests.redis_both import redis_url as redis_url``)."""

from __future__ import annotations

import pytest

from livecast.embedded_redis import EmbeddedRedis


@pytest.fixture(params=["embedded", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    if request.param == "cluster":
        url: str = request.getfixturevalue("cluster_redis_url")
        return url
    embedded: EmbeddedRedis = request.getfixturevalue("embedded_redis")
    return embedded.url
