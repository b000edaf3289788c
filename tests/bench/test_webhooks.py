"""``livecast bench webhooks`` runs end to end: the prompt endpoint gets every event."""

from __future__ import annotations

import pytest

from tests.bench._run import run_bench


@pytest.mark.timeout(150)
def test_webhooks_bench_delivers_everything_and_reports_its_figures() -> None:
    report = run_bench(
        "webhooks", "--events", "8", "--interval-ms", "20", "--slow-answer-s", "1"
    )  # fmt: skip
    for key in ("prompt_late_ms_p50", "prompt_late_ms_p99", "prompt_late_ms_max"):
        assert isinstance(report[key], float), key
    assert report["prompt_received"] == 8
    assert 0 <= report["slow_answered"] <= 8
