"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from livecast.appkeys import NODE, REDIS
from livecast.error_codes import ErrorCode
from livecast.http import error_response, json_response
from livecast.openapi import Reply, contract

__all__ = ["Live", "Ready", "routes"]

routes = web.RouteTableDef()


class Live(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok"] = "ok"
    node: Annotated[
        str,
        msgspec.Meta(description="the id of the node (process) that answered, new at each start"),
    ]
    worker: Annotated[
        int | None,
        msgspec.Meta(
            description="its index among the workers of livecast serve --workers N; "
            "null for a single process"
        ),
    ]


class Ready(msgspec.Struct, frozen=True):
    status: Literal["ready"] = "ready"


@routes.get("/healthz")
@contract(summary="The process is up", responses={200: Reply(Live, "up")}, redis=False)
async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving HTTP; ``node`` and ``worker`` say which one answered."""
    node = request.app[NODE]
    return json_response(Live(node=node.id, worker=node.worker))


@routes.get("/readyz")
@contract(
    summary="Redis answers",
    responses={200: Reply(Ready, "ready")},
    errors={ErrorCode.REDIS_UNAVAILABLE: "Redis does not answer"},
    redis=False,
)
async def readyz(request: web.Request) -> web.Response:
    """Redis answers; without it nothing but video can work."""
    try:
        async with asyncio.timeout(2):
            await request.app[REDIS].ping()
    except (RedisError, OSError, TimeoutError) as exc:
        return error_response(ErrorCode.REDIS_UNAVAILABLE, f"Redis does not answer: {exc}")
    return json_response(Ready())
