"""What WHIP and WHEP share over HTTP: SDP bodies, session resources and who may act on
them, CORS, ICE servers."""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from livecast.appkeys import SETTINGS, STREAMS
from livecast.config import WebRtcSettings
from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest, Forbidden, Unauthorized, UnsupportedMediaType
from livecast.http import identity, read_body
from livecast.ingest.keys import EDGE, MEDIA, NODES, SESSIONS
from livecast.ingest.media import PUBLISHER, Session
from livecast.ingest.sdp import parse_trickle
from livecast.ingest.sessions import EndReason, SessionKind
from livecast.openapi import Body, Reply

__all__ = [
    "ANSWER",
    "ENDPOINT_OPTIONS",
    "OFFER_ERRORS",
    "SDP",
    "SDP_OFFER",
    "SESSION_OPTIONS",
    "TRICKLE",
    "TRICKLE_ERRORS",
    "TRICKLE_FRAGMENT",
    "answer_response",
    "authorize_session",
    "cors_headers",
    "delete_session",
    "endpoint_options",
    "ice_server_links",
    "patch_session",
    "read_sdp",
    "session_options",
]

SDP = "application/sdp"
TRICKLE = "application/trickle-ice-sdpfrag"
_PREFIXES = ("/whip/", "/whep/")

# What the WHIP and WHEP routes' contracts share (livecast.openapi).
SDP_OFFER = Body(str, SDP, "the SDP offer")
TRICKLE_FRAGMENT = Body(str, TRICKLE, "ICE candidates (RFC 8840)")
ANSWER = Reply(
    str,
    "session created; the body is the SDP answer",
    SDP,
    headers={
        "Location": "the session's URL",
        "ETag": "the session's state, for If-Match",
        "Link": 'ICE servers, rel="ice-server" (one header each)',
        "Accept-Patch": TRICKLE,
    },
)
ENDPOINT_OPTIONS = Reply(
    None, "allowed methods", headers={"Allow": "OPTIONS, POST", "Accept-Post": SDP}
)
SESSION_OPTIONS = Reply(
    None,
    "allowed methods",
    headers={"Allow": "OPTIONS, PATCH, DELETE", "Accept-Patch": TRICKLE},
)
OFFER_ERRORS = [
    ErrorCode.STREAM_NOT_FOUND,
    ErrorCode.STREAM_ENDED,
    ErrorCode.MALFORMED_SDP,
    ErrorCode.NO_MEDIA,
    ErrorCode.DUPLICATE_MEDIA,
    ErrorCode.CODEC_UNSUPPORTED,
    ErrorCode.WRONG_DIRECTION,
]
TRICKLE_ERRORS = [
    ErrorCode.SESSION_NOT_FOUND,
    ErrorCode.SESSION_NODE_UNREACHABLE,
    ErrorCode.MALFORMED_SDP,
    ErrorCode.ETAG_MISMATCH,
    ErrorCode.ICE_RESTART_UNSUPPORTED,
]
_EXPOSED = "Location, ETag, Link, Accept-Post, Accept-Patch"


async def read_sdp(request: web.Request, content_type: str = SDP) -> str:
    """The body as SDP text: 415 unless it is ``content_type``, 400 unless it is text."""
    if request.content_type != content_type:
        raise UnsupportedMediaType(
            f"send the body as {content_type}, not {request.content_type or 'nothing'}"
        )
    body = await read_body(request)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("SDP must be UTF-8 text", code=ErrorCode.MALFORMED_SDP) from None


def ice_server_links(settings: WebRtcSettings) -> list[str]:
    """``Link: <url>; rel="ice-server"`` values (RFC 9725 4.6)."""
    links = []
    for url in settings.ice_servers:
        link = f'<{url}>; rel="ice-server"'
        if url.startswith("turn") and settings.ice_username:
            link += (
                f'; username="{settings.ice_username}"; credential="{settings.ice_credential}"'
                '; credential-type="password"'
            )
        links.append(link)
    return links


def answer_response(request: web.Request, session: Session, answer: str) -> web.Response:
    """201 Created with the answer, the session URL, its ETag and the ICE servers."""
    location = f"{request.path.rstrip('/')}/{session.id}"
    headers: CIMultiDict[str] = CIMultiDict()
    headers["Location"] = location
    headers["ETag"] = session.etag
    headers["Accept-Patch"] = TRICKLE
    for link in ice_server_links(request.app[SETTINGS].webrtc):
        headers.add("Link", link)
    return web.Response(status=201, text=answer, content_type=SDP, headers=headers)


async def authorize_session(request: web.Request, role: str) -> Session:
    """The session a PATCH or DELETE names, once the caller may act on it.

    A publisher's (WHIP) session: whoever may publish the stream (its seller, a host or
    seller granted it, an admin). A viewer's (WHEP) session opened with a token: that
    token's subject, or whoever manages the stream; another node's pull: an edge token of
    that node (:class:`~livecast.ingest.edge.EdgeTokens`), or whoever manages the stream.
    A viewer's session opened without a token is a capability URL: its 192-bit random id
    is the credential, and whoever holds the URL may end it.

    401 (``WWW-Authenticate: Bearer``) without a token where one is needed, or with a
    bad one; 403 for the wrong identity; 404 for an unknown session only after that.
    """
    stream_id = request.match_info["stream_id"]
    session_id = request.match_info["session_id"]
    hub = request.app[MEDIA]
    if role == PUBLISHER:
        who = identity(request)
        who.require_identity()
        stream = await request.app[STREAMS].get(stream_id)
        who.require_manage(stream.id, stream.seller_id)
        return hub.session(session_id, role, stream_id)
    puller = request.app[EDGE].tokens.verify(request.headers.get("Authorization"))
    who = puller if puller is not None else identity(request)
    session = hub.session(session_id, role, stream_id)
    record = request.app[SESSIONS].get(session.id)
    if record is not None and not record.subject:
        return session
    if who.is_anonymous:
        raise Unauthorized(
            "this session was opened with a token: send it as 'Authorization: Bearer <token>'"
        )
    # a pull's session is only for the node that pulls (a viewer's token may say any sub)
    pulled = record is not None and record.kind is SessionKind.EDGE
    if record is not None and who.sub == record.subject and pulled == (puller is not None):
        return session
    stream = await request.app[STREAMS].get(stream_id)
    if who.can_manage(stream.id, stream.seller_id):
        return session
    raise Forbidden("this session was opened by someone else", code=ErrorCode.FORBIDDEN)


async def patch_session(request: web.Request, role: str) -> web.Response:
    """Trickle ICE candidates into a session; 422 for an ICE restart (RFC 9725 4.3.1).
    A session of another node is that node's to answer (:mod:`livecast.ingest.nodes`)."""
    owner = await request.app[NODES].owner_url(request)
    if owner is not None:
        return await request.app[NODES].forward_to(request, owner)
    session = await authorize_session(request, role)
    fragment = parse_trickle(await read_sdp(request, TRICKLE))
    await request.app[MEDIA].patch(session, fragment, request.headers.get("If-Match"))
    return web.Response(status=204, headers={"ETag": session.etag})


async def delete_session(request: web.Request, role: str) -> web.Response:
    """End a session; one of another node is forwarded there, as for PATCH."""
    owner = await request.app[NODES].owner_url(request)
    if owner is not None:
        return await request.app[NODES].forward_to(request, owner)
    session = await authorize_session(request, role)
    request.app[SESSIONS].mark(session, EndReason.CLIENT_LEFT, "DELETE")
    await request.app[MEDIA].end(session)
    return web.Response(status=200)


def endpoint_options(request: web.Request) -> web.Response:
    headers = {
        "Allow": "OPTIONS, POST",
        "Accept-Post": SDP,
        "Access-Control-Allow-Methods": "OPTIONS, POST",
    }
    return web.Response(status=204, headers=headers)


def session_options(request: web.Request) -> web.Response:
    headers = {
        "Allow": "OPTIONS, PATCH, DELETE",
        "Accept-Patch": TRICKLE,
        "Access-Control-Allow-Methods": "OPTIONS, PATCH, DELETE",
    }
    return web.Response(status=204, headers=headers)


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Let browser pages on other origins publish and play (tokens travel as headers,
    never cookies, so any origin may call)."""
    if not request.path.startswith(_PREFIXES):
        return
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Expose-Headers"] = _EXPOSED
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, If-Match"
        response.headers["Access-Control-Max-Age"] = "86400"
