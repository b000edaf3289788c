"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import asyncio

from aiohttp import web
from redis.exceptions import RedisError

from livecast.appkeys import NODE, REDIS
from livecast.error_codes import ErrorCode
from livecast.http import error_response, json_response

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving HTTP; ``node`` and ``worker`` say which one answered
    (``worker``: its index under ``livecast serve --workers N``, null for one process)."""
    node = request.app[NODE]
    return json_response({"status": "ok", "node": node.id, "worker": node.worker})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Redis answers; without it nothing but video can work."""
    try:
        async with asyncio.timeout(2):
            await request.app[REDIS].ping()
    except (RedisError, OSError, TimeoutError) as exc:
        return error_response(ErrorCode.REDIS_UNAVAILABLE, f"Redis does not answer: {exc}")
    return json_response({"status": "ready"})
