"""What the access log shows of a request target, and which requests it shows."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from livecast.access_log import ACCESS_LOGGER, AccessLogger, loggable_target
from livecast.appkeys import SETTINGS
from livecast.config import HlsSettings, Settings

SESSION = "QJ0MXcGpVVhPQF7sABPAe5CQ5ZqLpmqZ"


@pytest.mark.parametrize(
    ("path", "query", "shown"),
    [
        ("/api/streams", "", "/api/streams"),
        ("/api/streams", "state=live&limit=5", "/api/streams?state=live&limit=5"),
        ("/api/streams/s1/chat", "token=abc.def.ghi", "/api/streams/s1/chat?token=REDACTED"),
        ("/x", "a=1&TOKEN=abc&access_token=def&b", "/x?a=1&TOKEN=REDACTED&access_token=REDACTED&b"),
        ("/x", "t%6Fken=abc", "/x?t%6Fken=REDACTED"),
        (f"/whep/s1/{SESSION}", "", "/whep/s1/QJ0MXcGp..."),
        (f"/whip/s1/{SESSION}", "", "/whip/s1/QJ0MXcGp..."),
        ("/whip/s1", "", "/whip/s1"),
        ("/watch/a%0Ab", "", "/watch/a%0Ab"),
    ],
)
def test_targets_keep_secrets_out(path: str, query: str, shown: str) -> None:
    assert loggable_target(path, query) == shown


@pytest.mark.parametrize(
    ("path", "status", "hls_access_log", "logged"),
    [
        ("/api/streams", 200, False, True),
        ("/hls/s1/index.m3u8?_HLS_msn=3&_HLS_part=1", 200, False, False),
        ("/hls/s1/part-0a1b2c3d-7.m4s", 304, False, False),
        ("/hls/s1/part-0a1b2c3d-7.m4s", 404, False, True),
        ("/hls/s1/index.m3u8", 401, False, True),
        ("/hls/s1/part-0a1b2c3d-7.m4s", 200, True, True),
    ],
)
def test_hls_answers_are_logged_only_when_asked(
    caplog: pytest.LogCaptureFixture, path: str, status: int, hls_access_log: bool, logged: bool
) -> None:
    app = web.Application()
    app[SETTINGS] = Settings(hls=HlsSettings(access_log=hls_access_log))
    request = make_mocked_request("GET", path, app=app)
    logger = logging.getLogger(ACCESS_LOGGER)
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        AccessLogger(logger, "").log(request, web.Response(status=status), 0.002)
    assert [r.name for r in caplog.records] == ([ACCESS_LOGGER] if logged else [])
