"""``livecast bench reserve`` runs end to end and reports what the inventory issue asks for.

These check outcomes (nothing oversold, the books balance), never speed: the figures are
for the operator to read.
"""

from __future__ import annotations

import pytest

from tests.bench._run import run_bench


@pytest.mark.timeout(150)
def test_reserve_bench_reports_its_figures_and_oversells_nothing() -> None:
    report = run_bench(
        "reserve", "--concurrency", "20", "--seconds", "1", "--stock", "5000",
        "--ceiling-calls", "2000",
    )  # fmt: skip
    for key in (
        "reservations_per_s",
        "latency_ms_p50",
        "latency_ms_p99",
        "oversold",
        "evalsha_ceiling_per_s",
    ):
        assert key in report, key
    assert report["oversold"] == 0
    assert report["consistent"] is True
    assert report["succeeded"] > 0
    assert report["stock_left"] + report["held"] == 5000
