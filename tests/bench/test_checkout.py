"""``livecast bench checkout`` runs end to end and reports what the sale-path issue asks for.

These check outcomes (nothing oversold, one order per unit sold), never speed: the figures
are for the operator to read.
"""

from __future__ import annotations

import pytest

from tests.bench._run import run_bench


@pytest.mark.timeout(150)
@pytest.mark.parametrize("workers", [1, 2])
def test_checkout_bench_sells_every_unit_once_and_reports_its_figures(workers: int) -> None:
    report = run_bench(
        "checkout", "--buyers", "60", "--units", "20", "--inflight", "20", "--trivial", "200",
        "--workers", str(workers),
    )  # fmt: skip
    assert report["workers"] == workers
    for key in (
        "adds_per_core_s",
        "checkouts_per_core_s",
        "add_ms_p50",
        "add_ms_p99",
        "checkout_ms_p50",
        "checkout_ms_p99",
        "trivial_cpu_us",
        "add_cpu_ratio",
        "checkout_cpu_ratio",
    ):
        assert key in report, key
    assert report["adds_answered"] == {"201": 20, "409 sold_out": 40}
    assert report["checkouts_answered"] == {"201": 20}
    assert report["oversold"] == 0
    assert report["orders"] == report["units_sold"] == 20
    assert report["orders_match_units_sold"] is True
    assert (report["units_held"], report["units_left"], report["checkouts_left_open"]) == (0, 0, 0)
    assert report["server_errors"] == 0
