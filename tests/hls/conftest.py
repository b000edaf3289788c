"""The HLS tests run the real app with short parts and segments, and a seller's stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from livecast.config import Settings
from tests.conftest import make_settings
from tests.ingest.conftest import make_node, stream

__all__ = ["make_node", "stream"]


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    return make_settings(
        redis_url,
        key_prefix,
        tmp_path,
        webrtc__publisher_stale_s=1.0,
        webrtc__origin_ttl_s=1.0,
        hls__part_duration_s=0.3,
        hls__segment_duration_s=1.0,
    )
