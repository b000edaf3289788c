"""The load-generating processes of a benchmark (publisher, viewers, players): how the
load is split between them, the reports they put on the results queue, and stopping them.

Each process puts ``(kind, payload)`` tuples on the queue; ``("error", message)`` is a
process that failed.
"""

from __future__ import annotations

import queue
from collections.abc import Iterable
from typing import Any


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` as evenly as it goes, the larger shares first."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def collect(results: Any, kind: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The next ``count`` payloads of ``kind`` from the queue, each awaited up to
    ``timeout`` seconds (RuntimeError when one is not); other kinds are skipped, and an
    ``error`` raises it."""
    payloads: list[dict[str, Any]] = []
    while len(payloads) < count:
        try:
            got, payload = results.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"no {kind} within {timeout} s") from None
        if got == kind:
            payloads.append(payload)
        elif got == "error":
            raise RuntimeError(payload)
    return payloads


def join_all(processes: Iterable[Any]) -> None:
    """Wait up to 15 s for each process to end (``None`` for one never started), then
    terminate it."""
    for process in processes:
        if process is not None:
            process.join(timeout=15)
            if process.is_alive():
                process.terminate()
