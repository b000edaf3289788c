"""REST routes for polls.

Starting, closing and cancelling are for whoever may manage the stream; voting is for
any signed-in viewer (anonymous viewers may not vote, as they may not chat). Reads are
public; the stats are for the stream's hosts.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.display_text import check_line
from livecast.error_codes import ErrorCode
from livecast.http import identity, json_response, read_json
from livecast.openapi import Auth, Reply, contract
from livecast.selling.poll_types import Poll, PollStats, VoteResult
from livecast.selling.service import SELLING
from livecast.streams.access import managed_stream, require_live

__all__ = ["routes"]

routes = web.RouteTableDef()

_KEY = msgspec.Meta(
    pattern=r"^[A-Za-z0-9_-]{1,64}$",
    description="a new key per action; the same key again (a retry) is answered as the first time",
)


class StartPoll(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    question: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    options: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=80)]],
        msgspec.Meta(min_length=2, max_length=6, description="2-6 different answers"),
    ]
    key: Annotated[str, _KEY]
    duration_s: Annotated[
        int,
        msgspec.Meta(
            ge=0, le=3600, description="it closes by itself after this long; 0: the host closes it"
        ),
    ] = 0

    def __post_init__(self) -> None:
        check_line("question", self.question)
        if not self.question.strip():
            raise ValueError("question is blank")
        seen: set[str] = set()
        for option in self.options:
            check_line("options", option)
            folded = " ".join(option.split()).casefold()
            if not folded:
                raise ValueError("an option is blank")
            if folded in seen:
                raise ValueError(f"option {option!r} is listed twice")
            seen.add(folded)


class CastVote(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    option: Annotated[int, msgspec.Meta(ge=0, le=5, description="the option's index (0-based)")]


class CurrentPoll(msgspec.Struct, frozen=True):
    poll: Annotated[
        Poll | None,
        msgspec.Meta(description="the stream's latest poll, running or not; null: none"),
    ]


class MyVote(msgspec.Struct, frozen=True):
    option: Annotated[int | None, msgspec.Meta(description="your option (0-based); null: none")]


_MANAGER = {ErrorCode.FORBIDDEN: "may not manage the stream", ErrorCode.STREAM_NOT_FOUND: ""}


@routes.post("/api/streams/{stream_id}/polls")
@contract(
    summary="Ask the audience a question with 2-6 options (who may manage the stream)",
    description="One poll runs at a time per stream. The same key again answers with the "
    "poll it started.",
    body=StartPoll,
    responses={201: Reply(Poll, "started", headers={"Location": "the poll's URL"})},
    errors={**_MANAGER, ErrorCode.STREAM_NOT_LIVE: "", ErrorCode.POLL_RUNNING: ""},
    auth=Auth.REQUIRED,
)
async def start_poll(request: web.Request) -> web.Response:
    stream = await managed_stream(request, request.match_info["stream_id"])
    body = await read_json(request, StartPoll)
    require_live(stream, "a poll")
    poll = await request.app[SELLING].polls.start(
        stream_id=stream.id,
        question=body.question.strip(),
        options=[" ".join(o.split()) for o in body.options],
        duration_s=body.duration_s,
        key=body.key,
    )
    return json_response(poll, status=201, headers={"Location": f"/api/polls/{poll.id}"})


@routes.get("/api/streams/{stream_id}/poll")
@contract(
    summary="The stream's latest poll",
    responses={200: Reply(CurrentPoll, "the poll or null")},
    errors=[ErrorCode.STREAM_NOT_FOUND],
)
async def current_poll(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    return json_response(CurrentPoll(await request.app[SELLING].polls.current(stream.id)))


@routes.get("/api/streams/{stream_id}/poll-stats")
@contract(
    summary="The stream's polls in numbers, for its hosts: how many ran and how they "
    "ended, votes cast and distinct voters",
    responses={200: Reply(PollStats, "the numbers")},
    errors=_MANAGER,
    auth=Auth.REQUIRED,
)
async def poll_stats(request: web.Request) -> web.Response:
    stream = await managed_stream(request, request.match_info["stream_id"])
    return json_response(await request.app[SELLING].polls.stats(stream.id))


@routes.get("/api/polls/{poll_id}")
@contract(
    summary="One poll with its totals (server_ms: the server's clock, for the countdown)",
    responses={200: Reply(Poll, "the poll")},
    errors=[ErrorCode.UNKNOWN_POLL],
)
async def get_poll(request: web.Request) -> web.Response:
    return json_response(await request.app[SELLING].polls.get(request.match_info["poll_id"]))


@routes.get("/api/polls/{poll_id}/vote")
@contract(
    summary="Your vote in a poll",
    responses={200: Reply(MyVote, "your option or null")},
    errors=[ErrorCode.UNKNOWN_POLL],
    auth=Auth.REQUIRED,
)
async def my_vote(request: web.Request) -> web.Response:
    caller = identity(request)
    caller.require_identity()
    polls = request.app[SELLING].polls
    return json_response(MyVote(await polls.my_vote(request.match_info["poll_id"], caller.sub)))


@routes.put("/api/polls/{poll_id}/vote")
@contract(
    summary="Vote (any signed-in viewer): one vote each, changeable until the poll closes",
    body=CastVote,
    responses={200: Reply(VoteResult, "your vote and the totals now")},
    errors={
        ErrorCode.UNKNOWN_POLL: "",
        ErrorCode.POLL_CLOSED: "",
        ErrorCode.INVALID_OPTION: "the poll has fewer options",
    },
    auth=Auth.REQUIRED,
)
async def vote(request: web.Request) -> web.Response:
    caller = identity(request)
    caller.require_identity()
    body = await read_json(request, CastVote)
    polls = request.app[SELLING].polls
    result = await polls.vote(request.match_info["poll_id"], user=caller.sub, option=body.option)
    return json_response(result)


async def _managed_poll(request: web.Request) -> str:
    polls = request.app[SELLING].polls
    poll_id = request.match_info["poll_id"]
    await managed_stream(request, await polls.stream_of(poll_id))
    return poll_id


@routes.post("/api/polls/{poll_id}/close")
@contract(
    summary="Close the poll now (who may manage its stream): the final tally goes to "
    "every viewer in poll.closed",
    responses={200: Reply(Poll, "the closed poll")},
    errors={**_MANAGER, ErrorCode.UNKNOWN_POLL: "", ErrorCode.POLL_CLOSED: ""},
    auth=Auth.REQUIRED,
)
async def close_poll(request: web.Request) -> web.Response:
    poll_id = await _managed_poll(request)
    return json_response(await request.app[SELLING].polls.close(poll_id))


@routes.post("/api/polls/{poll_id}/cancel")
@contract(
    summary="Cancel the poll (who may manage its stream): no result is announced",
    responses={200: Reply(Poll, "the cancelled poll")},
    errors={**_MANAGER, ErrorCode.UNKNOWN_POLL: "", ErrorCode.POLL_CLOSED: ""},
    auth=Auth.REQUIRED,
)
async def cancel_poll(request: web.Request) -> web.Response:
    poll_id = await _managed_poll(request)
    return json_response(await request.app[SELLING].polls.close(poll_id, cancel=True))
