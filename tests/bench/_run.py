"""Run a ``livecast bench`` command the way a user does and read its one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_bench(*args: str, timeout_s: float = 120) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "livecast", "bench", *args],
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, result.stdout
    report: dict[str, Any] = json.loads(lines[0])
    return report
