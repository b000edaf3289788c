"""``livecast bench relay`` runs end to end: a server, a publisher and viewer processes."""

from __future__ import annotations

import pytest

from tests.bench._run import run_bench


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    ("codec", "extra"), [("h264", ()), ("vp8", ()), ("h264", ("--ignore-keyframe-requests",))]
)
def test_relay_bench_viewers_get_frames_and_it_reports_its_figures(
    codec: str, extra: tuple[str, ...]
) -> None:
    report = run_bench("relay", "--viewers", "2", "--seconds", "2", "--codec", codec, *extra)
    assert report["keyframe_requests_honoured"] == (not extra)
    for key in (
        "viewers_per_core",
        "server_cpu_per_viewer",
        "fps_per_viewer_min",
        "first_frame_ms_p50",
        "first_frame_ms_p95",
        "lost_packets",
        "rss_per_viewer_kb",
    ):
        assert key in report, key
    assert report["viewers"] == 2
    assert report["fps_per_viewer_min"] > 0
    assert report["packets_received"] > 0
    assert report["viewers_waiting_keyframe"] == 0


@pytest.mark.timeout(150)
def test_relay_bench_measures_the_box_with_workers() -> None:
    report = run_bench("relay", "--viewers", "4", "--seconds", "2", "--workers", "2")
    assert report["workers"] == 2
    assert len(report["worker_cores"]) == 2
    assert report["fps_per_viewer_min"] > 0
    assert report["viewers_waiting_keyframe"] == 0
    assert report["source_fps"] > 0  # read at the stream's origin worker
