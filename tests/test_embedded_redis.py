"""The embedded redis-server: start, persistence across restarts, one owner per data dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from livecast.embedded_redis import DataDirBusy, EmbeddedRedis, EmbeddedRedisError


def test_data_survives_a_restart(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        client.set("order:1", "paid")
        client.close()
    assert (tmp_path / "livecast.aof").exists() or (tmp_path / "appendonlydir").exists()
    assert not (tmp_path / "redis.sock").exists()

    with EmbeddedRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        assert client.get("order:1") == b"paid"
        client.close()


def test_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as first:
        client = redis.Redis.from_url(first.url)
        client.set("k", "v")
        with pytest.raises(DataDirBusy, match="in use by another livecast process"):
            EmbeddedRedis(tmp_path).start()
        # the refusal did not disturb the running server
        assert client.get("k") == b"v"
        client.close()
    # once the first has stopped, the directory is free again
    with EmbeddedRedis(tmp_path) as again:
        client = redis.Redis.from_url(again.url)
        assert client.get("k") == b"v"
        client.close()


def test_stop_ends_the_process(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    server.start()
    pid = server.pid
    assert pid is not None
    server.stop()
    assert server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_overlong_socket_path_is_a_clear_error(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    with pytest.raises(EmbeddedRedisError, match="too long"):
        EmbeddedRedis(deep).start()
