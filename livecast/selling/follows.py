"""Followers: a signed-in viewer follows a seller, so that giveaways for followers let
them enter. The smallest follow there can be: a set of follower ids per seller, which
the viewer adds themselves to or leaves from the watch page (``PUT``/``DELETE
/api/sellers/{seller_id}/follow``).

Keys::

    <prefix>seller:<id>:followers    set of follower ids
"""

from __future__ import annotations

import redis.asyncio as aioredis

from livecast.redisdb import KeySpace

__all__ = ["Follows"]


class Follows:
    def __init__(self, redis: aioredis.Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys

    def _key(self, seller_id: str) -> str:
        return self._keys.key("seller", seller_id, "followers")

    async def follow(self, user: str, seller_id: str) -> int:
        """``user`` follows ``seller_id`` (again: nothing changes); the follower count."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.sadd(self._key(seller_id), user)
            pipe.scard(self._key(seller_id))
            _, count = await pipe.execute()
        return int(count)

    async def unfollow(self, user: str, seller_id: str) -> int:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.srem(self._key(seller_id), user)
            pipe.scard(self._key(seller_id))
            _, count = await pipe.execute()
        return int(count)

    async def follows(self, user: str, seller_id: str) -> bool:
        return bool(await self._redis.sismember(self._key(seller_id), user))

    async def followers(self, seller_id: str) -> int:
        return int(await self._redis.scard(self._key(seller_id)))
