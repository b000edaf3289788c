"""``livecast bench hls`` runs end to end: a server, a publisher and LL-HLS players,
directly and through nginx."""

from __future__ import annotations

import pytest

from tests.bench._run import run_bench


@pytest.mark.timeout(150)
@pytest.mark.parametrize("cdn", [False, True])
def test_hls_bench_players_get_parts_and_it_reports_its_figures(cdn: bool) -> None:
    report = run_bench("hls", "--players", "4", "--seconds", "2", *(["--cdn"] if cdn else []))
    for key in (
        "requests_per_s",
        "bytes_per_s",
        "origin_cores",
        "origin_cpu_per_player",
        "player_cores",
        "requests_per_s_per_origin_core",
        "origin_requests_per_object",
        "part_age_ms_p50",
        "part_age_ms_p95",
    ):
        assert key in report, key
    assert report["players"] == 4
    assert report["cdn"] is cdn
    assert report["parts_received"] > 0
    # the players follow the multivariant playlist to both renditions
    assert 0 < report["audio_requests"] < report["requests"]
    assert report["errors"] == 0
    if cdn:
        assert report["origin_requests"] < report["requests"]
    else:
        assert report["origin_requests"] == report["requests"]
