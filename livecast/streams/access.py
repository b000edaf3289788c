"""Who may act on a stream, and in which state: the checks every package's routes share."""

from __future__ import annotations

from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.error_codes import ErrorCode
from livecast.errors import Conflict
from livecast.http import identity
from livecast.streams.registry import Stream

__all__ = ["managed_stream", "require_live"]


async def managed_stream(request: web.Request, stream_id: str | None = None) -> Stream:
    """The stream (``stream_id``, or the route's ``{stream_id}``), once the caller is
    signed in (401) and may manage it (403: its seller, a host it granted, an admin)."""
    caller = identity(request)
    caller.require_identity()
    stream = await request.app[STREAMS].get(stream_id or request.match_info["stream_id"])
    caller.require_manage(stream.id, stream.seller_id)
    return stream


def require_live(stream: Stream, action: str) -> None:
    """409 ``stream_not_live`` unless ``stream`` is live; ``action`` ("a deal") names what
    needed it."""
    if not stream.is_live:
        raise Conflict(
            f"stream {stream.id!r} is {stream.state.value}; {action} needs a live stream",
            code=ErrorCode.STREAM_NOT_LIVE,
        )
