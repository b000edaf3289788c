"""Recorded streams, for replay: list a stream's files and download one.

``GET /api/streams/{stream_id}/recordings`` lists the files this node recorded of the
stream (``webrtc.record``; the origin node records), oldest first, each with its size,
duration (``null`` while it is still being written) and start time.
``GET /api/streams/{stream_id}/recordings/{name}`` serves one, with Range requests, so a
player can seek in it. Whoever may watch the stream may list and download its
recordings. A name that no recording could have is 400 ``invalid_recording_name``; a
recording that does not exist is 404 ``recording_not_found``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.error_codes import ErrorCode
from livecast.http import identity, json_response
from livecast.ingest.keys import RECORDER
from livecast.ingest.recorder import content_type
from livecast.ingest.whep import WATCH_ERRORS, require_watch
from livecast.openapi import Auth, Param, Reply, contract
from livecast.streams.registry import IsoTime

__all__ = ["routes"]

routes = web.RouteTableDef()


class Recording(msgspec.Struct, frozen=True, kw_only=True):
    name: Annotated[
        str,
        msgspec.Meta(
            description="the file name: its start time (UTC), and .webm (VP8) or .mkv (H.264)"
        ),
    ]
    bytes: int
    duration_s: Annotated[
        float | None, msgspec.Meta(description="null while the file is being written")
    ]
    started_at: IsoTime
    recording: Annotated[bool, msgspec.Meta(description="the file is still being written")]
    url: Annotated[str, msgspec.Meta(description="where to download it")]


class RecordingList(msgspec.Struct, frozen=True):
    recordings: list[Recording]


_NAME = Param(
    "name", "path", Annotated[str, msgspec.Meta(pattern=r"^\d{8}T\d{6}Z(-\d{1,4})?\.(mkv|webm)$")]
)


@routes.get("/api/streams/{stream_id}/recordings")
@contract(
    summary="Recorded files of a stream on this node (webrtc.record), oldest first; whoever "
    "may watch the stream may list them",
    responses={200: Reply(RecordingList, "the recordings")},
    errors=WATCH_ERRORS,
    auth=Auth.OPTIONAL,
)
async def list_recordings(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    require_watch(identity(request), stream)
    files = await request.app[RECORDER].files(stream.id)
    return json_response(
        RecordingList(
            [
                Recording(
                    name=f.name,
                    bytes=f.bytes,
                    duration_s=f.duration_s,
                    started_at=f.started_at,
                    recording=f.recording,
                    url=f"/api/streams/{stream.id}/recordings/{f.name}",
                )
                for f in files
            ]
        )
    )


@routes.get("/api/streams/{stream_id}/recordings/{name}")
@contract(
    summary="Download one recording (Range requests supported); whoever may watch the stream "
    "may download it",
    params=[_NAME],
    responses={
        200: Reply(None, "the file", ("video/webm", "video/x-matroska")),
        206: Reply(None, "the requested range of the file", ("video/webm", "video/x-matroska")),
        416: Reply(None, "the range is not satisfiable"),
    },
    errors={
        **WATCH_ERRORS,
        ErrorCode.INVALID_RECORDING_NAME: "not a name a recording has",
        ErrorCode.RECORDING_NOT_FOUND: "",
    },
    auth=Auth.OPTIONAL,
)
async def download_recording(request: web.Request) -> web.FileResponse:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    require_watch(identity(request), stream)
    name = request.match_info["name"]
    path = request.app[RECORDER].file(stream.id, name)
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type(name),
            "Content-Disposition": f'inline; filename="{name}"',
        },
    )
