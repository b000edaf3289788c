"""Run a ``livecast bench`` command the way a user does and read its one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


class Bench:
    """A ``livecast bench`` command started in the background: benchmarks spend most of
    their time waiting (a baseline, a settling pause, the measured window), so a test
    module may start several at once and read each report when it needs it."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "livecast", "bench", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def report(self, timeout_s: float = 120) -> dict[str, Any]:
        """Wait for the command to end; its report, after checking that it succeeded."""
        stdout, stderr = self.process.communicate(timeout=timeout_s)
        # a failed run prints its error and the server's log tail as its JSON line
        assert self.process.returncode == 0, (stdout[-3000:], stderr[-2000:])
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        assert len(lines) == 1, stdout
        report: dict[str, Any] = json.loads(lines[0])
        return report

    def stop(self) -> None:
        """Kill the command if it still runs (a test that failed before reading it)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def run_bench(*args: str, timeout_s: float = 120) -> dict[str, Any]:
    bench = Bench(*args)
    try:
        return bench.report(timeout_s)
    finally:
        bench.stop()
