"""``GET /api/streams/{id}/timeline``: a stream's commerce timeline, for whoever may watch
it (anyone, for a public stream: the same events reach every viewer live)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest
from livecast.http import identity, json_response
from livecast.ingest.whep import require_watch
from livecast.openapi import Auth, Param, Reply, contract
from livecast.timeline.service import TIMELINE
from livecast.timeline.store import TimelineEntry, is_entry_id

__all__ = ["StreamTimeline", "routes"]

routes = web.RouteTableDef()

_MAX_LIMIT = 1000


class StreamTimeline(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    entries: list[TimelineEntry]
    next: Annotated[
        str | None,
        msgspec.Meta(description="the last entry's id: ask again with ?since= it for more"),
    ]


@routes.get("/api/streams/{stream_id}/timeline")
@contract(
    summary="The stream's commerce timeline: pins, deals, stock and auctions at their media time",
    description="Oldest first. Each entry's media_time_ms is the program date time (Unix "
    "ms) of the video that was live when it happened (null: the stream had no media), "
    "the clock of the LL-HLS playlist's EXT-X-PROGRAM-DATE-TIME. Kept after the stream "
    "ends, up to timeline.max_entries per stream.",
    params=[
        Param(
            "since",
            type=Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,15}(-[0-9]{1,15})?$")],
            description="an entry id: the entries after it; or a time in Unix ms: those "
            "recorded then or later",
        ),
        Param(
            "limit",
            type=Annotated[int, msgspec.Meta(ge=1, le=_MAX_LIMIT)],
            default=_MAX_LIMIT,
        ),
    ],
    responses={200: Reply(StreamTimeline, "the entries")},
    errors={
        ErrorCode.INVALID_QUERY: "since is not an entry id or time, or limit not 1-1000",
        ErrorCode.UNAUTHORIZED: "a private stream and no token",
        ErrorCode.FORBIDDEN: "the token may not watch this private stream",
        ErrorCode.STREAM_NOT_FOUND: "",
    },
    auth=Auth.OPTIONAL,
)
async def stream_timeline(request: web.Request) -> web.Response:
    since = request.query.get("since")
    if since is not None and not is_entry_id(since):
        raise BadRequest(
            "since must be an entry id (<ms>-<seq>) or a time in ms", code=ErrorCode.INVALID_QUERY
        )
    raw_limit = request.query.get("limit", str(_MAX_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= _MAX_LIMIT:
        raise BadRequest(
            f"limit must be an integer from 1 to {_MAX_LIMIT}", code=ErrorCode.INVALID_QUERY
        )
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    require_watch(identity(request), stream)
    entries = await request.app[TIMELINE].entries(stream.id, since=since, limit=int(raw_limit))
    last = entries[-1].id if entries else since
    return json_response(StreamTimeline(stream_id=stream.id, entries=entries, next=last))
