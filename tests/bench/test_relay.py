"""``livecast bench relay`` runs end to end: a server, a publisher and viewer processes.

The runs start in two waves (module fixture): the three codec runs together, then the
two-worker and the storm runs when a test first asks for one of them. Each run spends
most of its time in the benchmark's own pauses, so a wave costs little more than one
run; five at once (five servers, publishers and their viewers beside the other tests)
crowded the 2 cores. These tests read the reports, not their figures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bench._run import Bench

Case = tuple[str, tuple[str, ...]]
CASES: list[Case] = [("h264", ()), ("vp8", ()), ("h264", ("--ignore-keyframe-requests",))]
WORKERS: Case = ("h264", ("--workers", "2"))
STORM: Case = ("h264", ("--storm", "0.5", "--watching", "2"))


class Benches:
    """The module's runs: the first wave starts at once, the second on first use."""

    def __init__(self) -> None:
        self.started = {
            (codec, extra): Bench(
                "relay", "--viewers", "2", "--seconds", "2", "--codec", codec, *extra
            )
            for codec, extra in CASES
        }

    def __getitem__(self, case: Case) -> Bench:
        if case not in self.started:
            self.started[WORKERS] = Bench(
                "relay", "--viewers", "4", "--seconds", "2", "--workers", "2"
            )
            self.started[STORM] = Bench("relay", "--viewers", "4", "--seconds", "2", *STORM[1])
        return self.started[case]


@pytest.fixture(scope="module")
def benches() -> Iterator[Benches]:
    started = Benches()
    yield started
    for bench in started.started.values():
        bench.stop()


@pytest.mark.timeout(150)
@pytest.mark.parametrize(("codec", "extra"), CASES)
def test_relay_bench_viewers_get_frames_and_it_reports_its_figures(
    benches: Benches, codec: str, extra: tuple[str, ...]
) -> None:
    report = benches[codec, extra].report()
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
    # the bench's own peers' CPU, beside the server's: they share the machine
    assert report["viewer_processes_cores"] > 0
    assert report["publisher_cores"] >= 0
    assert report["machine_busy_cores"] > 0
    assert report["machine_cores"] >= 1


@pytest.mark.timeout(150)
def test_relay_bench_measures_the_box_with_workers(
    benches: Benches,
) -> None:
    report = benches[WORKERS].report()
    assert report["workers"] == 2
    assert len(report["worker_cores"]) == 2
    assert report["fps_per_viewer_min"] > 0
    assert report["viewers_waiting_keyframe"] == 0
    assert report["source_fps"] > 0  # read at the stream's origin worker


@pytest.mark.timeout(150)
def test_relay_bench_storm_joins_while_others_watch(
    benches: Benches,
) -> None:
    report = benches[STORM].report()
    storm = report["storm"]
    assert (storm["joiners"], storm["watching"]) == (4, 2)
    assert report["joins_failed"] == 0
    assert report["first_frame_ms_p95"] > 0  # a complete keyframe reached every joiner
    assert storm["watchers_fps_min"] > 0  # the watchers' frames were counted meanwhile
    for key in ("server_cpu_ms_per_join", "client_cpu_ms_per_join", "watchers_gap_ms_max"):
        assert key in storm, key
    assert report["fps_per_viewer_min"] > 0  # joiners and watchers alike, after the storm
