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

from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.http import identity, json_response
from livecast.ingest.keys import RECORDER
from livecast.ingest.recorder import content_type
from livecast.ingest.whep import require_watch

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/api/streams/{stream_id}/recordings")
async def list_recordings(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    require_watch(identity(request), stream)
    files = await request.app[RECORDER].files(stream.id)
    return json_response(
        {
            "recordings": [
                {
                    "name": f.name,
                    "bytes": f.bytes,
                    "duration_s": f.duration_s,
                    "started_at": f.started_at,
                    "recording": f.recording,
                    "url": f"/api/streams/{stream.id}/recordings/{f.name}",
                }
                for f in files
            ]
        }
    )


@routes.get("/api/streams/{stream_id}/recordings/{name}")
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
