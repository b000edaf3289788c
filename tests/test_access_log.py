"""What the access log shows of a request target."""

from __future__ import annotations

import pytest

from livecast.access_log import loggable_target

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
