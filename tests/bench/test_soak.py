"""``livecast bench soak`` runs end to end: a server, OBS's stack publishing, viewers."""

from __future__ import annotations

import pytest

from tests.bench._run import run_bench


@pytest.mark.timeout(120)
def test_soak_keeps_a_third_party_publisher_and_its_viewers_up_and_reports_it() -> None:
    report = run_bench("soak", "--seconds", "12", "--viewers", "2", "--progress-s", "4")
    assert report["benchmark"] == "soak"
    assert report["publisher"].startswith("libdatachannel ")
    assert report["viewers"] == 2
    assert report["reconnects"] == 0, report
    assert report["publisher_reconnects"] == report["viewer_reconnects"] == 0
    assert len(report["fps_per_viewer"]) == 2
    assert report["fps_min"] > 0
    assert report["source_fps"] > 0
    assert isinstance(report["frames_lost"], int)
    assert isinstance(report["packets_lost"], int)
    assert report["stream_state"] == "live"
    assert report["publisher_delete_status"] == 200
    # a sample at the start, one per progress line
    assert len(report["rss_mb"]) >= 3
    assert all(mb > 0 for _, mb in report["rss_mb"])
