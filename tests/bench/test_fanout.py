"""``livecast bench fanout`` runs end to end: every viewer gets every message, in order."""

from __future__ import annotations

import pytest

from tests.bench._run import run_bench


@pytest.mark.timeout(150)
@pytest.mark.parametrize("protocol", ["json", "msgpack"])
def test_fanout_bench_delivers_everything_and_reports_its_figures(protocol: str) -> None:
    report = run_bench(
        "fanout", "--clients", "20", "--messages-per-second", "20", "--seconds", "1",
        "--protocol", protocol,
    )  # fmt: skip
    for key in (
        "delivered_per_s",
        "delivered_per_core_s",
        "latency_ms_p50",
        "latency_ms_p99",
        "lost",
        "rss_per_client_kb",
    ):
        assert key in report, key
    assert report["lost"] == 0
    assert report["out_of_order"] == 0
    assert report["viewer_received_min"] == report["posted"] > 0
