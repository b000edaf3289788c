"""WHEP: watch a stream, with the same resource shape as WHIP.

``POST /whep/{stream_id}`` with an SDP offer (receive-only) answers 201 with the answer,
``Location``, ``ETag`` and ICE servers. Anyone may watch a public stream; a private one
needs a token granted that stream. A viewer may arrive before the host goes live: the
connection is made at once and frames flow the moment the publisher sends. The viewer's
codec is the stream's; an offer that cannot receive it gets 422 ``codec_unsupported``.
A viewer of a stream published through another node is served from this node's one
pull of the stream from that node (:mod:`livecast.ingest.edge`). ``?join=fresh`` starts
a viewer at a new keyframe instead of a recent one (an edge re-pulling uses it). A pull
(its token an edge token, :class:`~livecast.ingest.edge.EdgeTokens`) is never refused for
``max_viewers_per_stream``, nor counted in it: it serves a whole node's viewers.

``PATCH`` and ``DELETE`` on a session URL opened with a token (a pull's edge token too)
need that token's subject or a manager of the stream; a session opened without one is a
capability URL (:func:`~livecast.ingest._signaling.authorize_session`).

``GET /api/streams/{stream_id}/media`` reports the media state and viewer count.
"""

from __future__ import annotations

from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.auth import Identity
from livecast.error_codes import ErrorCode
from livecast.errors import Conflict, Forbidden
from livecast.http import identity, json_response
from livecast.ingest._signaling import (
    answer_response,
    delete_session,
    endpoint_options,
    patch_session,
    read_sdp,
    session_options,
)
from livecast.ingest.keys import EDGE, MEDIA, SESSIONS
from livecast.ingest.media import VIEWER, MediaState
from livecast.ingest.sdp import parse_offer
from livecast.ingest.sessions import SessionKind
from livecast.streams.registry import Stream, StreamState

__all__ = ["require_watch", "routes"]

routes = web.RouteTableDef()


def require_watch(who: Identity, stream: Stream) -> None:
    """Whoever passes may watch ``stream``: play it, see its media state and recordings."""
    if stream.public or who.has_stream_grant(stream.id):
        return
    if who.can_manage(stream.id, stream.seller_id):
        return
    who.require_identity()
    raise Forbidden("this stream is private", code=ErrorCode.FORBIDDEN)


@routes.post("/whep/{stream_id}")
async def play(request: web.Request) -> web.Response:
    edge = request.app[EDGE]
    puller = edge.tokens.verify(request.headers.get("Authorization"))
    who = puller if puller is not None else identity(request)
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    require_watch(who, stream)
    if stream.state is StreamState.ENDED:
        raise Conflict("this stream has ended", code=ErrorCode.STREAM_ENDED)
    offer = parse_offer(await read_sdp(request))
    await edge.prepare(stream.id)
    fresh = request.query.get("join") == "fresh"
    is_edge = puller is not None and puller.has_stream_grant(stream.id)
    session, answer = await request.app[MEDIA].play(stream.id, offer, fresh=fresh, edge=is_edge)
    kind = SessionKind.EDGE if is_edge else SessionKind.WHEP
    request.app[SESSIONS].opened(session, kind, who.sub, request.remote or "")
    return answer_response(request, session, answer)


@routes.route("OPTIONS", "/whep/{stream_id}")
async def options(request: web.Request) -> web.Response:
    return endpoint_options(request)


@routes.patch("/whep/{stream_id}/{session_id}")
async def patch(request: web.Request) -> web.Response:
    return await patch_session(request, VIEWER)


@routes.delete("/whep/{stream_id}/{session_id}")
async def delete(request: web.Request) -> web.Response:
    return await delete_session(request, VIEWER)


@routes.route("OPTIONS", "/whep/{stream_id}/{session_id}")
async def session_options_route(request: web.Request) -> web.Response:
    return session_options(request)


@routes.get("/api/streams/{stream_id}/media")
async def media_status(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    require_watch(identity(request), stream)
    hub = request.app[MEDIA]
    media = hub.media(stream.id)
    origin = await hub.origins.lookup(stream.id)
    if media is None:
        state = MediaState.ENDED if stream.state is StreamState.ENDED else MediaState.IDLE
        body: dict[str, object] = {
            "state": state,
            "publishing": False,
            "edge": False,
            "viewers": 0,
            "video_codec": None,
            "audio": False,
            "video_frames_in": 0,
            "keyframe_requests": 0,
            "viewers_waiting_keyframe": 0,
        }
    else:
        body = media.snapshot()
    body["origin_url"] = None if origin is None else origin.url
    return json_response(body)
