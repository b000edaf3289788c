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

from typing import Literal

from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.auth import Identity
from livecast.error_codes import ErrorCode
from livecast.errors import Conflict, Forbidden
from livecast.http import identity, json_response
from livecast.ingest._signaling import (
    ANSWER,
    ENDPOINT_OPTIONS,
    OFFER_ERRORS,
    SDP_OFFER,
    SESSION_OPTIONS,
    TRICKLE_ERRORS,
    TRICKLE_FRAGMENT,
    answer_response,
    delete_session,
    endpoint_options,
    patch_session,
    read_sdp,
    session_options,
)
from livecast.ingest.keys import EDGE, MEDIA, SESSIONS
from livecast.ingest.media import VIEWER, MediaStatus
from livecast.ingest.sdp import parse_offer
from livecast.ingest.sessions import SessionKind
from livecast.openapi import Auth, Param, Reply, contract
from livecast.streams.registry import Stream, StreamState

__all__ = ["WATCH_ERRORS", "require_watch", "routes"]

routes = web.RouteTableDef()

# Who may watch (require_watch): a private stream needs a token that may.
WATCH_ERRORS = {
    ErrorCode.UNAUTHORIZED: "a private stream, and no token",
    ErrorCode.FORBIDDEN: "a private stream the token may not watch",
    ErrorCode.STREAM_NOT_FOUND: "",
}
_SESSION_HOLDER = {
    ErrorCode.UNAUTHORIZED: "the session was opened with a token and none was sent",
    ErrorCode.FORBIDDEN: "neither the token's subject that opened the session nor a manager "
    "of the stream",
    ErrorCode.STREAM_NOT_FOUND: "",
    ErrorCode.SESSION_NOT_FOUND: "",
    ErrorCode.SESSION_NODE_UNREACHABLE: "",
}


def require_watch(who: Identity, stream: Stream) -> None:
    """Whoever passes may watch ``stream``: play it, see its media state and recordings."""
    if stream.public or who.has_stream_grant(stream.id):
        return
    if who.can_manage(stream.id, stream.seller_id):
        return
    who.require_identity()
    raise Forbidden("this stream is private", code=ErrorCode.FORBIDDEN)


@routes.post("/whep/{stream_id}")
@contract(
    summary="Play (WHEP): receive-only SDP offer in, answer out; anonymous on public streams",
    params=[
        Param(
            "join",
            type=Literal["fresh"],
            description="fresh: start at a new keyframe, never from the GOP cache of frames "
            "already sent (an edge node re-pulling a stream uses it, so no frame reaches it "
            "twice)",
        )
    ],
    body=SDP_OFFER,
    responses={201: ANSWER},
    errors={**dict.fromkeys(OFFER_ERRORS, ""), **WATCH_ERRORS, ErrorCode.STREAM_FULL: ""},
    auth=Auth.OPTIONAL,
)
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
@contract(summary="Accept-Post: application/sdp", responses={204: ENDPOINT_OPTIONS}, redis=False)
async def options(request: web.Request) -> web.Response:
    return endpoint_options(request)


@routes.patch("/whep/{stream_id}/{session_id}")
@contract(
    summary="Trickle ICE candidates into the playing session (ICE restart: 422); same rights "
    "as DELETE",
    body=TRICKLE_FRAGMENT,
    responses={204: Reply(None, "candidates added", headers={"ETag": "the session's state"})},
    errors={**dict.fromkeys(TRICKLE_ERRORS, ""), **_SESSION_HOLDER},
    auth=Auth.OPTIONAL,
)
async def patch(request: web.Request) -> web.Response:
    return await patch_session(request, VIEWER)


@routes.delete("/whep/{stream_id}/{session_id}")
@contract(
    summary="End the playing session; a session opened with a token needs that token's "
    "subject or a stream manager, one opened without is a capability URL",
    responses={200: Reply(None, "ended")},
    errors=_SESSION_HOLDER,
    auth=Auth.OPTIONAL,
)
async def delete(request: web.Request) -> web.Response:
    return await delete_session(request, VIEWER)


@routes.route("OPTIONS", "/whep/{stream_id}/{session_id}")
@contract(summary="Allowed methods", responses={204: SESSION_OPTIONS}, redis=False)
async def session_options_route(request: web.Request) -> web.Response:
    return session_options(request)


@routes.get("/api/streams/{stream_id}/media")
@contract(
    summary="Media state of a stream on this node",
    responses={200: Reply(MediaStatus, "state")},
    errors=WATCH_ERRORS,
    auth=Auth.OPTIONAL,
)
async def media_status(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    require_watch(identity(request), stream)
    hub = request.app[MEDIA]
    media = hub.media(stream.id)
    origin = await hub.origins.lookup(stream.id)
    origin_url = None if origin is None else origin.url
    if media is not None:
        return json_response(media.snapshot(origin_url))
    return json_response(
        MediaStatus(
            state="ended" if stream.state is StreamState.ENDED else "idle",
            publishing=False,
            edge=False,
            viewers=0,
            video_codec=None,
            audio=False,
            video_frames_in=0,
            keyframe_requests=0,
            viewers_waiting_keyframe=0,
            origin_url=origin_url,
        )
    )
