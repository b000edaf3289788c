"""Polls: the host asks a question with 2-6 options; every signed-in viewer has one
vote, which they may change until the poll closes; everyone sees the totals live.

A poll moves ``running -> closed | cancelled`` (:class:`PollState`), one Lua script per
transition, on the keys of the stream's polls (one hash slot, ``{poll:<stream>}``):

* ``poll_start.lua``: opens the poll unless one is running on the stream (the stream's
  ``current`` pointer is read and written in the same step, so two hosts starting at
  once cannot both succeed). Idempotent by the host's key;
* ``poll_vote.lua``: records the voter's option (one ballot per person: a change moves
  the vote from the old option to the new one in one step; the same option again
  changes nothing);
* ``poll_close.lua``: closes the poll (the host, or any node's sweep once its optional
  end time has passed) or cancels it (the host), exactly once: only the call that moves
  it announces it.

Anonymous viewers may not vote, as they may not chat: a vote needs an identity, so that
"one vote per person" means something (the page asks them to sign in).

Live totals are coalesced like likes (:mod:`livecast.chat.hub`): a vote is counted in
Redis at once, and each node marks the poll as changed; a few times a second
(``chat.like_flush_interval_s``) the node reads the totals of the polls it saw votes
for and publishes one ``poll.totals`` event each, however many votes came in. Totals
carry ``votes`` (votes cast, which only grows), so a page keeps the newest totals
whichever node's event arrives first. The ``poll`` state slot holds the poll as it
started (the hello names the running poll; the page reads its totals with ``GET
/api/polls/{id}``), so a flush racing a close can never put a closed poll back.

Keys::

    <prefix>{poll:<stream>}:current            string: the running poll's id
    <prefix>{poll:<stream>}:list               sorted set: the stream's poll ids by start
    <prefix>{poll:<stream>}:starts             hash: the host's start key -> poll id
    <prefix>{poll:<stream>}:poll:<id>          hash: state, question, options, counts
                                               (c1..c6), votes, voters, clock
    <prefix>{poll:<stream>}:poll:<id>:ballots  hash: voter -> option (1-based)
    <prefix>polls:stream                       hash: poll id -> stream id
    <prefix>polls:due                          sorted set: running polls by end time

The two indexes outside the slot are written before the start script runs, so a crash
between them leaves at most an index entry for a poll that never started, which the
sweep drops.

Events on the stream's channel: :class:`PollStarted`, :class:`PollTotals`,
:class:`PollClosed` (the final tally), :class:`PollCancelled`. The running poll is the
stream's ``poll`` state slot (the hello's ``state.poll``).

A poll's start, close and cancel carry ``media_time_ms`` and go on the stream's
timeline (:mod:`livecast.timeline`); totals are live counters. Ending the stream closes
its running poll (:mod:`livecast.selling.stream_end`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec
import redis.asyncio as aioredis

from livecast.error_codes import ErrorCode
from livecast.errors import ApiError, Conflict, NotFound
from livecast.events import EventPublisher
from livecast.ids import new_id
from livecast.inventory._private import due_ids, read_row, server_now_ms, text
from livecast.redisdb import KeySpace, load_lua
from livecast.selling.poll_types import (
    Poll,
    PollCancelled,
    PollClosed,
    PollStarted,
    PollState,
    PollStats,
    PollTotals,
    PollTotalsData,
    VoteResult,
)
from livecast.timeline import Moment, MomentKind, Timeline

__all__ = ["PollCounters", "Polls"]

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent
_ID_MAX = 64
_FIELDS = ["state", "stream", "question", "options", "n", "starts", "ends", "closed"]
# What a read takes: the fields, the totals and the counts of up to six options.
_READ = [*_FIELDS, "votes", "voters", "c1", "c2", "c3", "c4", "c5", "c6"]


class PollCounters(Protocol):
    """What a node counts for Prometheus (:mod:`livecast.selling.service` makes them)."""

    def started(self) -> None: ...

    def vote(self, outcome: str) -> None: ...

    def ended(self, poll: Poll) -> None: ...


class Polls:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: KeySpace,
        events: EventPublisher,
        counters: PollCounters | None = None,
        *,
        timeline: Timeline,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._events = events
        self._timeline = timeline
        self._counters = counters
        self._start = load_lua(redis, _HERE / "poll_start.lua")
        self._vote = load_lua(redis, _HERE / "poll_vote.lua")
        self._close = load_lua(redis, _HERE / "poll_close.lua")
        self.stream_index = keys.key("polls", "stream")
        self.due_key = keys.key("polls", "due")
        # Per node: the polls this node counted votes for since its last flush.
        self._changed: set[str] = set()
        # Per node: a poll's stream never changes.
        self._streams: dict[str, str] = {}

    def base(self, stream_id: str) -> str:
        return self._keys.key("{poll:" + stream_id + "}")

    def _key(self, stream_id: str, poll_id: str) -> str:
        return self.base(stream_id) + ":poll:" + poll_id

    async def start(
        self, *, stream_id: str, question: str, options: list[str], duration_s: int, key: str
    ) -> Poll:
        """Open a poll (the caller checked the stream is live and may be managed, and the
        question and options). One running poll per stream: 409 ``poll_running``. The
        same ``key`` again answers with the poll it opened."""
        poll_id = new_id()
        guess = await server_now_ms(self._redis) + duration_s * 1000
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.stream_index, poll_id, stream_id)
            if duration_s:
                pipe.zadd(self.due_key, {poll_id: guess})
            await pipe.execute()
        reply = await self._start(
            keys=[self.base(stream_id)],
            args=[
                poll_id,
                key,
                stream_id,
                question,
                json.dumps(options),
                duration_s * 1000,
            ],
        )
        status = text(reply[0])
        if status != "ok":
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hdel(self.stream_index, poll_id)
                pipe.zrem(self.due_key, poll_id)
                await pipe.execute()
            if status == "replayed":
                return await self.get(text(reply[1]))
            running = text(reply[1])
            raise Conflict(
                f"poll {running} is running on this stream",
                code=ErrorCode.POLL_RUNNING,
                poll_id=running,
            )
        if duration_s:
            await self._redis.zadd(self.due_key, {poll_id: int(reply[3])})
        poll = await self.get(poll_id)
        media = await self._timeline.media_now(stream_id)
        await self._events.set_state(
            "poll",
            poll,
            PollStarted(stream=stream_id, data=poll, media_time_ms=media),
            also=self._on_timeline(MomentKind.POLL_STARTED, poll, media),
        )
        if self._counters is not None:
            self._counters.started()
        return poll

    async def vote(self, poll_id: str, *, user: str, option: int) -> VoteResult:
        """Vote for ``option`` (0-based) as ``user``. 404 ``unknown_poll``; 409
        ``poll_closed``; 422 ``invalid_option``."""
        stream_id = await self.stream_of(poll_id)
        reply = await self._vote(keys=[self.base(stream_id)], args=[poll_id, user, option + 1])
        status = text(reply[0])
        if status not in ("voted", "changed", "unchanged"):
            raise ApiError.of(
                ErrorCode.of(status), f"{poll_id}: {ErrorCode.of(status).meaning}", poll_id=poll_id
            )
        if status != "unchanged":
            self._changed.add(poll_id)
        if self._counters is not None:
            self._counters.vote(status)
        return VoteResult(
            poll_id=poll_id,
            option=int(reply[1]) - 1,
            changed=status != "unchanged",
            votes=int(reply[2]),
            voters=int(reply[3]),
            counts=[int(c) for c in reply[4:]],
        )

    async def flush_totals(self) -> int:
        """Publish the totals of every poll this node counted votes for since the last
        flush (one event each); how many were published."""
        changed, self._changed = self._changed, set()
        published = 0
        for poll_id in changed:
            poll = await self.find(poll_id)
            if poll is None or poll.state is not PollState.RUNNING:
                continue
            totals = PollTotalsData(
                id=poll.id, counts=poll.counts, voters=poll.voters, votes=poll.votes
            )
            # Only the event: the state slot keeps the poll as it started (a flush racing
            # a close could otherwise put a closed poll back), and a joiner's page reads
            # the totals once the hello names the poll.
            await self._events.publish(PollTotals(stream=poll.stream_id, data=totals))
            published += 1
        return published

    async def close(self, poll_id: str, *, cancel: bool = False) -> Poll:
        """Close the poll now (its tally stands) or cancel it; 409 ``poll_closed``."""
        stream_id = await self.stream_of(poll_id)
        target = PollState.CANCELLED if cancel else PollState.CLOSED
        moved = await self._move(stream_id, poll_id, target, due=False)
        if moved is None:
            meaning = ErrorCode.POLL_CLOSED.meaning
            raise Conflict(f"{poll_id}: {meaning}", code=ErrorCode.POLL_CLOSED)
        return moved

    async def close_due(self, poll_id: str) -> Poll | None:
        """Close the poll if its time is up, as the sweep does; the closed poll if this
        call closed it (exactly one call does), else None."""
        stream = await self._redis.hget(self.stream_index, poll_id)
        if stream is None:
            await self._redis.zrem(self.due_key, poll_id)
            return None
        return await self._move(text(stream), poll_id, PollState.CLOSED, due=True)

    async def close_for_stream(self, stream_id: str) -> Poll | None:
        """Close the stream's running poll now (its stream ended; the tally stands); the
        closed poll if this call closed it (exactly one call does), else None."""
        found = await self._redis.get(self.base(stream_id) + ":current")
        if found is None:
            return None
        return await self._move(stream_id, text(found), PollState.CLOSED, due=False)

    async def _move(
        self, stream_id: str, poll_id: str, target: PollState, *, due: bool
    ) -> Poll | None:
        reply = await self._close(
            keys=[self.base(stream_id)], args=[poll_id, target.value, int(due)]
        )
        status = text(reply[0])
        if status == "not_due":
            return None
        if status == "unknown_poll" and not due:
            raise NotFound(f"no poll {poll_id!r}", code=ErrorCode.UNKNOWN_POLL)
        await self._redis.zrem(self.due_key, poll_id)
        if status != target.value:
            return None
        if not PollState.RUNNING.can_become(target):
            raise RuntimeError(f"a poll script moved running to {target}")
        poll = await self.get(poll_id)
        # at its end time (the sweep comes a moment later), or when the host closed it
        media = await self._timeline.media_now(stream_id, at_ms=poll.closed_at_ms)
        event: PollClosed | PollCancelled
        if target is PollState.CLOSED:
            event = PollClosed(stream=stream_id, data=poll, media_time_ms=media)
            kind = MomentKind.POLL_CLOSED
        else:
            event = PollCancelled(stream=stream_id, data=poll, media_time_ms=media)
            kind = MomentKind.POLL_CANCELLED
        await self._events.clear_state("poll", event, also=self._on_timeline(kind, poll, media))
        if self._counters is not None:
            self._counters.ended(poll)
        return poll

    def _on_timeline(
        self, kind: MomentKind, poll: Poll, media_time_ms: int | None
    ) -> Callable[[Any], object]:
        """The poll's entry on its stream's timeline, for the event's MULTI."""
        moment = Moment(
            kind=kind,
            media_time_ms=media_time_ms,
            poll_id=poll.id,
            title=poll.question,
            state=None if poll.state is PollState.RUNNING else poll.state.value,
        )
        return self._timeline.appending(poll.stream_id, moment)

    async def due(self, now_ms: int, *, limit: int = 100) -> list[str]:
        return await due_ids(self._redis, self.due_key, now_ms, limit=limit)

    async def stream_of(self, poll_id: str) -> str:
        stream_id = self._streams.get(poll_id)
        if stream_id is None:
            found = (
                None
                if len(poll_id) > _ID_MAX
                else await self._redis.hget(self.stream_index, poll_id)
            )
            if found is None:
                raise NotFound(f"no poll {poll_id!r}", code=ErrorCode.UNKNOWN_POLL)
            if len(self._streams) > 10_000:
                self._streams.clear()
            stream_id = self._streams[poll_id] = text(found)
        return stream_id

    async def current(self, stream_id: str) -> Poll | None:
        """The stream's latest poll (running or not), or None."""
        found: list[Any] = await self._redis.zrange(self.base(stream_id) + ":list", -1, -1)
        return await self.find(text(found[0])) if found else None

    async def get(self, poll_id: str) -> Poll:
        poll = await self.find(poll_id)
        if poll is None:
            raise NotFound(f"no poll {poll_id!r}", code=ErrorCode.UNKNOWN_POLL)
        return poll

    async def find(self, poll_id: str) -> Poll | None:
        try:
            stream_id = await self.stream_of(poll_id)
        except NotFound:
            return None
        found = await read_row(self._redis, self._key(stream_id, poll_id), _READ)
        if found is None:
            return None
        row, server_ms = found
        n = int(row["n"] or 0)
        ends = int(row["ends"] or 0)
        return Poll(
            id=poll_id,
            stream_id=row["stream"] or stream_id,
            question=row["question"] or "",
            options=msgspec.json.decode(row["options"] or "[]", type=list[str]),
            state=PollState(row["state"] or "running"),
            counts=[int(row[f"c{i}"] or 0) for i in range(1, n + 1)],
            votes=int(row["votes"] or 0),
            voters=int(row["voters"] or 0),
            starts_at_ms=int(row["starts"] or 0),
            ends_at_ms=ends or None,
            closed_at_ms=int(row["closed"]) if row["closed"] else None,
            server_ms=server_ms,
        )

    async def my_vote(self, poll_id: str, user: str) -> int | None:
        """The option ``user`` voted for (0-based), or None."""
        stream_id = await self.stream_of(poll_id)
        found = await self._redis.hget(self._key(stream_id, poll_id) + ":ballots", user)
        return None if found is None else int(found) - 1

    async def stats(self, stream_id: str) -> PollStats:
        """The stream's polls in numbers (read from each: a stream runs a few dozen)."""
        found: list[Any] = await self._redis.zrange(self.base(stream_id) + ":list", 0, -1)
        polls = [p for p in [await self.find(text(i)) for i in found] if p is not None]
        states = [p.state for p in polls]
        voters: set[bytes | str] = set()
        for poll in polls:
            voters.update(await self._redis.hkeys(self._key(stream_id, poll.id) + ":ballots"))
        return PollStats(
            stream_id=stream_id,
            polls=len(polls),
            running=states.count(PollState.RUNNING),
            closed=states.count(PollState.CLOSED),
            cancelled=states.count(PollState.CANCELLED),
            votes=sum(p.votes for p in polls),
            voters=len(voters),
        )
