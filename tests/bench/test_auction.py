"""``livecast bench auction`` runs end to end and reports what the auctions issue asks for.

It checks outcomes (bids rise, the clock extends exactly, the highest maximum wins and
holds the unit), never speed: the figures are for the operator to read.
"""

from __future__ import annotations

import pytest

from tests.bench._run import run_bench


@pytest.mark.timeout(150)
def test_auction_bench_orders_bids_extends_exactly_and_the_best_bid_wins() -> None:
    report = run_bench(
        "auction", "--bidders", "50", "--viewers", "5", "--seconds", "5",
        "--soft-close", "2", "--bids-per-second", "20",
    )  # fmt: skip
    assert report["bids_increasing"] is True
    assert report["extensions_exact"] is True
    assert report["winner_is_highest"] is True
    assert report["state"] == "sold"
    assert report["extensions"] >= 1
    assert report["updates_missed"] == 0
    for key in ("update_ms_p50", "update_ms_p99", "bid_ms_p99", "server_cpu_s", "loadavg_1m"):
        assert key in report, key
    assert report["server_errors"] == 0
