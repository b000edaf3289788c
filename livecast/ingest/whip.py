"""WHIP (RFC 9725): publish a stream's camera and microphone.

``POST /whip/{stream_id}`` with an SDP offer and ``Authorization: Bearer <token>`` of
someone who manages the stream (its seller, a host or seller granted it, an admin)
answers 201 with the SDP answer (all candidates gathered), the session URL in
``Location``, an ``ETag`` and the ICE servers as ``Link: rel="ice-server"``. Publishing a
scheduled stream makes it live. ``DELETE`` on the session URL stops publishing (viewers
stay connected and wait for the publisher to return); ``PATCH`` trickles ICE candidates.
Both need the same rights as publishing (:func:`~livecast.ingest._signaling.authorize_session`).

A POST to a node that is not the stream's origin answers ``307 Temporary Redirect`` with
``Location`` the origin node's WHIP endpoint (RFC 9725 4.5), so a publisher that comes
back through another node during the reconnect grace finds its stream; the body is the
409 ``publisher_active`` error, naming ``origin_url``, for clients that do not follow.
A worker of ``livecast serve --workers N`` whose sibling worker is the origin forwards
the POST to it instead (their private node URLs are no address for a publisher), and
answers with the sibling's answer (:mod:`livecast.ingest.nodes`).
"""

from __future__ import annotations

from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.error_codes import ErrorCode
from livecast.errors import Conflict, Error
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
from livecast.ingest.errors import PublishedElsewhere
from livecast.ingest.keys import MEDIA, NODES, SESSIONS
from livecast.ingest.media import PUBLISHER
from livecast.ingest.sdp import parse_offer
from livecast.ingest.sessions import EndReason, SessionKind
from livecast.openapi import Auth, Reply, contract
from livecast.streams.registry import StreamState

__all__ = ["routes"]

routes = web.RouteTableDef()

_PUBLISHER = {
    ErrorCode.FORBIDDEN: "the token may not publish this stream",
    ErrorCode.STREAM_NOT_FOUND: "",
}


@routes.post("/whip/{stream_id}")
@contract(
    summary="Publish (WHIP, RFC 9725): SDP offer in, answer out; needs a token that manages "
    "the stream",
    body=SDP_OFFER,
    responses={
        201: ANSWER,
        307: Reply(
            Error,
            "another node is the stream's origin (RFC 9725 4.5): POST the same offer, with the "
            "token, to Location; the body is the publisher_active error naming origin_url, "
            "for clients that do not follow",
            headers={"Location": "the origin node's WHIP endpoint of the stream"},
        ),
    },
    errors={
        **dict.fromkeys(OFFER_ERRORS, ""),
        **_PUBLISHER,
        ErrorCode.PUBLISHER_ACTIVE: "the stream already has a publisher on this node",
        ErrorCode.SESSION_NODE_UNREACHABLE: "a publisher coming back through another worker "
        "of the box is forwarded to the stream's origin worker, which does not answer",
    },
    auth=Auth.REQUIRED,
)
async def publish(request: web.Request) -> web.Response:
    who = identity(request)
    who.require_identity()
    registry = request.app[STREAMS]
    stream = await registry.get(request.match_info["stream_id"])
    who.require_manage(stream.id, stream.seller_id)
    if stream.state is StreamState.ENDED:
        raise Conflict("this stream has ended", code=ErrorCode.STREAM_ENDED)
    offer = parse_offer(await read_sdp(request))
    hub = request.app[MEDIA]
    try:
        session, answer = await hub.publish(stream.id, offer, who.sub)
    except PublishedElsewhere as exc:
        if request.app[NODES].is_sibling(exc.origin_url, request):
            return await request.app[NODES].forward_to(request, exc.origin_url)
        location = exc.whip_url(stream.id)
        return json_response(exc.to_json(), status=307, headers={"Location": location})
    request.app[SESSIONS].opened(session, SessionKind.WHIP, who.sub, request.remote or "")
    if stream.state is StreamState.SCHEDULED:
        try:
            await registry.transition(stream.id, StreamState.LIVE)
        except Conflict:
            current = await registry.get(stream.id)
            if current.state is not StreamState.LIVE:
                request.app[SESSIONS].mark(session, EndReason.STREAM_ENDED)
                await hub.end(session)
                raise Conflict("this stream has ended", code=ErrorCode.STREAM_ENDED) from None
    return answer_response(request, session, answer)


@routes.route("OPTIONS", "/whip/{stream_id}")
@contract(summary="Accept-Post: application/sdp", responses={204: ENDPOINT_OPTIONS}, redis=False)
async def options(request: web.Request) -> web.Response:
    return endpoint_options(request)


@routes.patch("/whip/{stream_id}/{session_id}")
@contract(
    summary="Trickle ICE candidates into the publishing session (ICE restart: 422); needs "
    "the rights publishing needs",
    body=TRICKLE_FRAGMENT,
    responses={204: Reply(None, "candidates added", headers={"ETag": "the session's state"})},
    errors={**dict.fromkeys(TRICKLE_ERRORS, ""), **_PUBLISHER},
    auth=Auth.REQUIRED,
)
async def patch(request: web.Request) -> web.Response:
    return await patch_session(request, PUBLISHER)


@routes.delete("/whip/{stream_id}/{session_id}")
@contract(
    summary="End the publishing session; needs the rights publishing needs",
    responses={200: Reply(None, "ended")},
    errors={
        **_PUBLISHER,
        ErrorCode.SESSION_NOT_FOUND: "",
        ErrorCode.SESSION_NODE_UNREACHABLE: "",
    },
    auth=Auth.REQUIRED,
)
async def delete(request: web.Request) -> web.Response:
    return await delete_session(request, PUBLISHER)


@routes.route("OPTIONS", "/whip/{stream_id}/{session_id}")
@contract(summary="Allowed methods", responses={204: SESSION_OPTIONS}, redis=False)
async def session_options_route(request: web.Request) -> web.Response:
    return session_options(request)
