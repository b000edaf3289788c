"""Fixtures for the streams API tests: each runs on the embedded and the cluster-mode Redis."""

from tests.redis_both import redis_url as redis_url
