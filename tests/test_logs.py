"""The outage filter on a real redis-py failure: a loop that fails every interval while
Redis is unreachable logs one line, not a traceback per interval; other errors pass."""

from __future__ import annotations

import logging
import socket
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from livecast.logs import OutageFilter


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def kept() -> Kept:
    handler = Kept()
    handler.addFilter(OutageFilter(quiet_s=0.3))
    return handler


def _unreachable_redis_error() -> redis.ConnectionError:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free, and nobody listens once closed
    client = redis.Redis(port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except redis.ConnectionError as exc:
        return exc
    finally:
        client.close()
    raise AssertionError("a closed port answered")


def _fail(log: logging.Logger, exc: BaseException, what: str = "sweep") -> None:
    try:
        raise exc
    except BaseException:
        log.exception("%s failed; retrying next interval", what)


def test_an_outage_is_one_line_per_loop_then_a_count(kept: Kept) -> None:
    log = logging.getLogger("livecast.test.outage")
    log.addHandler(kept)
    log.propagate = False
    try:
        outage = _unreachable_redis_error()
        for _ in range(5):
            _fail(log, outage)
        other_loop = logging.getLogger("livecast.test.notify")
        other_loop.addHandler(kept)
        other_loop.propagate = False
        _fail(other_loop, outage, "flush")  # another loop: said too
        other_loop.removeHandler(kept)
        assert len(kept.lines) == 2, kept.lines
        first, other = kept.lines
        assert first.startswith("ERROR livecast.test.outage: sweep failed; retrying next")
        assert "ConnectionError" in first
        assert "Traceback" not in first
        assert "flush failed" in other
        time.sleep(0.35)
        _fail(log, outage)
        assert "4 more like it in the last" in kept.lines[-1]
        assert "Traceback" not in kept.lines[-1]
    finally:
        log.removeHandler(kept)


def test_other_errors_keep_their_traceback_every_time(kept: Kept) -> None:
    log = logging.getLogger("livecast.test.other")
    log.addHandler(kept)
    log.propagate = False
    try:
        for _ in range(3):
            _fail(log, ValueError("a defect"))
        assert len(kept.lines) == 3
        assert all("Traceback" in line and "ValueError: a defect" in line for line in kept.lines)
        log.warning("plain %s", "line")
        assert kept.lines[-1] == "WARNING livecast.test.other: plain line"
    finally:
        log.removeHandler(kept)
