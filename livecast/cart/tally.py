"""Add-to-cart counts, tallied per stream on each node and added to the stats in bulk.

A flash sale brings thousands of add-to-carts a second; one Redis command each just to
count them would cost more than the reservation. Like likes, each node counts locally and
adds its counts to the stream's stats every ``interval_s`` (one command per stream), and
before it reads them itself. A crash loses at most one interval's counts of that node;
orders, units and money are never counted this way.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from livecast.cart.stats import SalesStats

__all__ = ["AddToCartTally"]

log = logging.getLogger(__name__)


class AddToCartTally:
    def __init__(self, sales: SalesStats, *, interval_s: float = 0.25) -> None:
        self._sales = sales
        self._interval_s = interval_s
        self._counts: dict[str, int] = {}
        self._running = True

    def count(self, stream_id: str) -> None:
        self._counts[stream_id] = self._counts.get(stream_id, 0) + 1

    async def flush(self) -> None:
        """Add the counts so far to the stats; counts not added stay for the next flush."""
        counts, self._counts = self._counts, {}
        for index, (stream_id, count) in enumerate(counts.items()):
            try:
                await self._sales.add_to_cart(stream_id, count)
            except BaseException:
                for left_id, left in list(counts.items())[index:]:
                    self._counts[left_id] = self._counts.get(left_id, 0) + left
                raise

    def stop(self) -> None:
        """Make :meth:`run` return after its current flush (the owner also cancels it)."""
        self._running = False

    async def run(self) -> None:
        """Flush every interval until stopped (one per node, owned by the cart service)."""
        while self._running:
            await asyncio.sleep(self._interval_s)
            try:
                await self.flush()
            except (RedisError, OSError):
                log.warning("could not add add-to-cart counts to the stats; retrying")
