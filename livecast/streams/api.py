"""REST routes for streams: create, list, read, edit, go live, end."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.auth import Role
from livecast.display_text import check_line, check_multiline
from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest, Unprocessable
from livecast.http import identity, json_response, read_json
from livecast.ids import SKU_PATTERN
from livecast.openapi import Auth, Param, Reply, contract
from livecast.streams.registry import Stream, StreamState

__all__ = ["routes"]

routes = web.RouteTableDef()

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=140)]
Description = Annotated[str, msgspec.Meta(max_length=4000)]
Sku = Annotated[str, msgspec.Meta(pattern=SKU_PATTERN)]
FeaturedSkus = Annotated[list[Sku], msgspec.Meta(max_length=100)]


StartTime = Annotated[dt.datetime, msgspec.Meta(description="RFC 3339 with a time zone.")]
Limit = Annotated[int, msgspec.Meta(ge=1, le=200)]


class CreateStream(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    description: Description = ""
    scheduled_start: StartTime | None = None
    featured_skus: FeaturedSkus = []
    public: bool = True

    def __post_init__(self) -> None:
        check_line("title", self.title)
        check_multiline("description", self.description)


class PatchStream(msgspec.Struct, forbid_unknown_fields=True):
    title: Title | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    scheduled_start: StartTime | msgspec.UnsetType | None = msgspec.UNSET
    featured_skus: FeaturedSkus | msgspec.UnsetType = msgspec.UNSET
    public: bool | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if self.title is not msgspec.UNSET:
            check_line("title", self.title)
        if self.description is not msgspec.UNSET:
            check_multiline("description", self.description)


class StreamList(msgspec.Struct, frozen=True):
    streams: list[Stream]


_NOT_GRANTED = (
    "a featured SKU is another seller's product that has not been granted to the stream's "
    "seller (SKUs not in the catalog yet may be featured)"
)
_TEXT_FIELD = (
    "a field is missing, unknown, of the wrong type or out of range, including a title "
    "with control or bidi-format characters, or a description with them other than tab "
    "and line breaks"
)


def _epoch_ms(moment: dt.datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise Unprocessable(
            "scheduled_start needs a time zone, e.g. 2026-11-22T18:00:00Z",
            code=ErrorCode.INVALID_FIELD,
        )
    return int(moment.timestamp() * 1000)


def _title(value: str) -> str:
    if not value.strip():
        raise Unprocessable("title must not be blank", code=ErrorCode.INVALID_FIELD)
    return value.strip()


@routes.post("/api/streams")
@contract(
    summary="Create a scheduled stream (seller or admin)",
    body=CreateStream,
    responses={201: Reply(Stream, "created", headers={"Location": "the stream's URL"})},
    errors={
        ErrorCode.FORBIDDEN: "not a seller or admin",
        ErrorCode.PRODUCT_NOT_GRANTED: _NOT_GRANTED,
        ErrorCode.INVALID_FIELD: _TEXT_FIELD,
    },
    auth=Auth.REQUIRED,
)
async def create_stream(request: web.Request) -> web.Response:
    caller = identity(request)
    caller.require_role(Role.SELLER, Role.ADMIN)
    body = await read_json(request, CreateStream)
    stream = await request.app[STREAMS].create(
        title=_title(body.title),
        description=body.description,
        seller_id=caller.sub,
        seller_name=caller.name,
        scheduled_start_ms=_epoch_ms(body.scheduled_start),
        featured_skus=list(dict.fromkeys(body.featured_skus)),
        public=body.public,
    )
    return json_response(stream, status=201, headers={"Location": f"/api/streams/{stream.id}"})


@routes.get("/api/streams")
@contract(
    summary="List streams",
    description="Public streams, and the private ones the caller may manage.",
    params=[
        Param("state", type=StreamState),
        Param("limit", type=Limit, default=50),
    ],
    responses={200: Reply(StreamList, "streams, newest first")},
    errors=[ErrorCode.INVALID_QUERY],
    auth=Auth.OPTIONAL,
)
async def list_streams(request: web.Request) -> web.Response:
    raw_state = request.query.get("state")
    state = None
    if raw_state is not None:
        try:
            state = StreamState(raw_state)
        except ValueError:
            choices = ", ".join(s.value for s in StreamState)
            raise BadRequest(
                f"state must be one of {choices}", code=ErrorCode.INVALID_QUERY
            ) from None
    raw_limit = request.query.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
        raise BadRequest("limit must be an integer from 1 to 200", code=ErrorCode.INVALID_QUERY)
    streams = await request.app[STREAMS].list_streams(state, limit=int(raw_limit))
    caller = identity(request)
    visible = [s for s in streams if s.public or caller.can_manage(s.id, s.seller_id)]
    return json_response(StreamList(visible))


@routes.get("/api/streams/{stream_id}")
@contract(
    summary="One stream",
    responses={200: Stream},
    errors=[ErrorCode.STREAM_NOT_FOUND],
)
async def get_stream(request: web.Request) -> web.Response:
    return json_response(await request.app[STREAMS].get(request.match_info["stream_id"]))


@routes.patch("/api/streams/{stream_id}")
@contract(
    summary="Edit a stream that has not ended (its seller, a granted host, or admin)",
    body=PatchStream,
    responses={200: Stream},
    errors={
        ErrorCode.FORBIDDEN: "may not manage the stream",
        ErrorCode.PRODUCT_NOT_GRANTED: _NOT_GRANTED,
        ErrorCode.STREAM_NOT_FOUND: "",
        ErrorCode.ILLEGAL_STATE: "the stream has ended",
        ErrorCode.EMPTY_PATCH: "",
        ErrorCode.INVALID_FIELD: _TEXT_FIELD,
    },
    auth=Auth.REQUIRED,
)
async def patch_stream(request: web.Request) -> web.Response:
    registry = request.app[STREAMS]
    caller = identity(request)
    caller.require_identity()
    stream = await registry.get(request.match_info["stream_id"])
    caller.require_manage(stream.id, stream.seller_id)
    body = await read_json(request, PatchStream)
    changes: dict[str, Any] = {}
    if body.title is not msgspec.UNSET:
        changes["title"] = _title(body.title)
    if body.description is not msgspec.UNSET:
        changes["description"] = body.description
    if body.scheduled_start is not msgspec.UNSET:
        if body.scheduled_start is None:
            raise Unprocessable("scheduled_start cannot be cleared", code=ErrorCode.INVALID_FIELD)
        changes["scheduled_start_ms"] = _epoch_ms(body.scheduled_start)
    if body.featured_skus is not msgspec.UNSET:
        changes["featured_skus"] = list(dict.fromkeys(body.featured_skus))
    if body.public is not msgspec.UNSET:
        changes["public"] = body.public
    if not changes:
        raise Unprocessable("nothing to change", code=ErrorCode.EMPTY_PATCH)
    return json_response(await registry.update(stream.id, changes))


async def _move(request: web.Request, target: StreamState) -> web.Response:
    registry = request.app[STREAMS]
    caller = identity(request)
    caller.require_identity()
    stream = await registry.get(request.match_info["stream_id"])
    caller.require_manage(stream.id, stream.seller_id)
    return json_response(await registry.transition(stream.id, target))


_MOVE_ERRORS = [
    ErrorCode.FORBIDDEN,
    ErrorCode.STREAM_NOT_FOUND,
    ErrorCode.ILLEGAL_STATE,
]


@routes.post("/api/streams/{stream_id}/start")
@contract(
    summary="Go live (scheduled -> live); publishing over WHIP does this too",
    responses={200: Stream},
    errors=_MOVE_ERRORS,
    auth=Auth.REQUIRED,
)
async def start_stream(request: web.Request) -> web.Response:
    return await _move(request, StreamState.LIVE)


@routes.post("/api/streams/{stream_id}/end")
@contract(
    summary="End the stream (scheduled|live -> ended; final)",
    responses={200: Stream},
    errors=_MOVE_ERRORS,
    auth=Auth.REQUIRED,
)
async def end_stream(request: web.Request) -> web.Response:
    return await _move(request, StreamState.ENDED)
