"""Stopping background tasks for sure.

On Python 3.11, ``asyncio.wait_for`` returns the inner result instead of raising when a
cancellation arrives just as the inner future finishes (CPython gh-86296, fixed in 3.12).
redis-py sends every command through ``wait_for`` when a socket timeout is set, so a
``cancel()`` that lands while a task sends a Redis command is usually lost: the command
returns normally, a loop around it runs on, and a shutdown awaiting that loop waits
forever. :func:`cancel_and_wait` cancels again until the tasks have ended.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["cancel_and_wait"]

log = logging.getLogger(__name__)

# How long cancelled tasks get to finish (their own clean-up included) before they are
# cancelled again, and how often they are cancelled again after that.
GRACE_S = 0.5
RECANCEL_S = 0.05


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` (``None`` entries are skipped) and wait until every one has ended,
    cancelling again, every :data:`RECANCEL_S` after a first :data:`GRACE_S`, any that is
    still running. Results are dropped; errors other than the cancellation are logged."""
    futures = [t for t in tasks if t is not None]
    pending = {f for f in futures if not f.done()}
    wait_s = GRACE_S
    while pending:
        for future in pending:
            future.cancel()
        _, pending = await asyncio.wait(pending, timeout=wait_s)
        wait_s = RECANCEL_S
    for future in futures:
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.warning("background task %r ended with %r", future, exc)
