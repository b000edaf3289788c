"""The code stays formatted, lint-free and type-checked (strict) as part of the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_format() -> None:
    result = _run("ruff", "format", "--check", "livecast", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint() -> None:
    result = _run("ruff", "check", "livecast", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(400)
def test_mypy_strict() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
