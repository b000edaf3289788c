"""Selling formats end with their stream.

When a stream ends, the node that ends it runs its state listeners
(:meth:`livecast.streams.registry.StreamRegistry.on_state_change`): each format's
service ends that stream's running one there and then (an auction is won at the price
reached, a poll closes, a giveaway is drawn, a group buy closes and settles, a
knock-down ends). Each end is a transition script that moves its format once, so only
one call announces it, whatever node it runs on.

A node may stop between ending the stream and running its listeners. So every node's
sweep also asks the registry for the streams that ended since its last look and a
moment ago (:class:`EndedStreams`, through
:meth:`~livecast.streams.registry.StreamRegistry.ended_between`), and ends their formats
the same way: a no-op for those already ended. A node that starts looks back
``lookback_ms``.
"""

from __future__ import annotations

from typing import Final

import redis.asyncio as aioredis

from livecast.inventory._private import server_now_ms
from livecast.streams.registry import StreamRegistry

__all__ = ["EndedStreams"]

_LOOKBACK_MS: Final = 600_000
# the ending node's own listeners get this long before the sweep steps in
_SETTLE_MS: Final = 1_000


class EndedStreams:
    """The streams that ended since the last call, for one node's sweep."""

    def __init__(
        self,
        redis: aioredis.Redis,
        streams: StreamRegistry,
        *,
        lookback_ms: int = _LOOKBACK_MS,
        settle_ms: int = _SETTLE_MS,
    ) -> None:
        self._redis = redis
        self._streams = streams
        self._lookback_ms = lookback_ms
        self._settle_ms = settle_ms
        self._cursor: int | None = None

    async def since_last(self) -> list[str]:
        """Ids of the streams that ended after the last call's horizon and at least
        ``settle_ms`` ago (on the first call: up to ``lookback_ms`` ago)."""
        now = await server_now_ms(self._redis)
        if self._cursor is None:
            self._cursor = now - self._lookback_ms
        upto = now - self._settle_ms
        if upto <= self._cursor:
            return []
        found = await self._streams.ended_between(self._cursor, upto)
        self._cursor = upto
        return found
