"""How ``livecast serve`` logs: one format, and a Redis outage said once, not every second.

While Redis is unreachable, every background loop of a node (the inventory sweep, the
stock notifier, each selling format's sweep, checkout recovery, the node and origin
records) fails at each of its intervals and logs the failure with its traceback: about
1.5 KB a line, dozens a second with a few workers, which buries what else happened and,
on a stderr nobody drains, fills the pipe and blocks the process. :class:`OutageFilter`
keeps the first failure of each loop (by logger and message) as one line, the exception
named, without the traceback; drops the same failure for ``quiet_s`` after it; then lets
one through again, saying how many it dropped. Every other record passes unchanged.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["OutageFilter", "configure"]

# What an unreachable Redis raises through redis-py (refused, reset, timed out), and the
# same failures of other connections a loop keeps retrying.
_OUTAGE: Final = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)


class OutageFilter(logging.Filter):
    def __init__(self, quiet_s: float = 60.0) -> None:
        super().__init__()
        self.quiet_s = quiet_s
        # (logger, message template) -> (when its last line went out, dropped since)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, _OUTAGE):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last, dropped = self._seen.get(key, (-self.quiet_s, 0))
        if now - last < self.quiet_s:
            self._seen[key] = (last, dropped + 1)
            return False
        self._seen[key] = (now, 0)
        line = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
        if dropped:
            line += f"; {dropped} more like it in the last {now - last:.0f} s"
        record.msg, record.args = line, ()
        record.exc_info, record.exc_text = None, None
        return True


def configure(role: str) -> None:
    """Log INFO and up to stderr, each line tagged with ``role`` (e.g. "[worker 1] "),
    Redis outages said once per loop and minute."""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s {role}%(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(OutageFilter())
