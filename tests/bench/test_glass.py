"""``livecast bench glass`` runs end to end: a clock-painting publisher, and Chromium reading
the clock back from the watch page over LL-HLS (hls.js) and WebRTC at once."""

from __future__ import annotations

import pytest

from tests.bench._run import run_bench

pytestmark = pytest.mark.browser


@pytest.mark.timeout(180)
def test_glass_bench_reads_the_painted_clock_in_both_modes() -> None:
    report = run_bench("glass", "--seconds", "2", "--warmup", "1", timeout_s=170)
    assert report["read_by"] in ("requestVideoFrameCallback", "animationFrame")
    for mode in ("hls", "webrtc"):
        assert report[f"{mode}_samples"] > 0, mode
        p50, p95, top = (report[f"{mode}_latency_ms_{q}"] for q in ("p50", "p95", "max"))
        # a picture is shown after it was painted, and within a minute of it
        assert 0 < p50 <= p95 <= top < 60_000, (mode, p50, p95, top)
    assert report["part_target_s"] == report["part_duration_s"]
    assert report["part_hold_back_s"] is not None
    assert report["target_duration_s"] is not None
