"""Polls over any sequence of operations: a Hypothesis state machine on real Redis (every
Redis of the run), through the service the app uses.

Steps: start a poll (retried with the same key, or refused while one runs), vote (three
voters, any option, out of range, again for the same option), close, cancel, close
again.

After every step: each option's count is the number of ballots for it, voters is the
number of people with a ballot, votes counts every accepted change, only the running poll
takes votes, a poll moves only along the transition table, and at most one poll runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    invariant,
    precondition,
    rule,
)

from livecast.errors import ApiError
from livecast.events import EventPublisher
from livecast.selling.poll_types import PollState
from livecast.selling.polls import Polls
from livecast.timeline import Timeline
from tests.redis_machine import RedisMachine, run_machine

T = TypeVar("T")

STREAM = "st-1"
VOTERS = ("ann", "bob", "cy")


@dataclass
class PollModel:
    id: str
    options: int
    state: PollState = PollState.RUNNING
    ballots: dict[str, int] = field(default_factory=dict)
    votes: int = 0


class PollsMachine(RedisMachine):
    def __init__(self) -> None:
        super().__init__()
        self.polls: list[PollModel] = []
        self.started: dict[str, str] = {}  # idempotency key -> the poll it started
        self.run(self._build())

    async def _build(self) -> None:
        keys = self.keys
        self.service = Polls(
            self.redis,
            keys,
            EventPublisher(self.redis, keys),
            timeline=Timeline(self.redis, keys, max_entries=100, retention_s=0),
        )

    @property
    def running(self) -> PollModel | None:
        return next((p for p in self.polls if p.state is PollState.RUNNING), None)

    @rule(options=st.integers(2, 6), key=st.sampled_from(["k1", "k2", "k3", "k4"]))
    def start(self, options: int, key: str) -> None:
        result = self.attempt(
            self.service.start(
                stream_id=STREAM,
                question="Which?",
                options=[f"option {i}" for i in range(options)],
                duration_s=0,
                key=key,
            )
        )
        if key in self.started:
            # A retry answers with the poll that key started, whatever runs now.
            assert not isinstance(result, ApiError)
            assert result.id == self.started[key]
        elif self.running is not None:
            assert isinstance(result, ApiError)
            assert result.code == "poll_running"
        else:
            assert not isinstance(result, ApiError)
            assert result.state is PollState.RUNNING
            self.started[key] = result.id
            self.polls.append(PollModel(id=result.id, options=options))

    @precondition(lambda self: bool(self.polls))
    @rule(data=st.data(), voter=st.sampled_from(VOTERS), option=st.integers(-1, 6))
    def vote(self, data: st.DataObject, voter: str, option: int) -> None:
        model = data.draw(st.sampled_from(self.polls))
        result = self.attempt(self.service.vote(model.id, user=voter, option=option))
        if model.state is not PollState.RUNNING:
            assert isinstance(result, ApiError)
            assert result.code == "poll_closed"
        elif not 0 <= option < model.options:
            assert isinstance(result, ApiError)
            assert result.code == "invalid_option"
        else:
            assert not isinstance(result, ApiError)
            changed = model.ballots.get(voter) != option
            assert result.changed is changed
            if changed:
                model.ballots[voter] = option
                model.votes += 1

    @precondition(lambda self: bool(self.polls))
    @rule(data=st.data(), cancel=st.booleans())
    def end(self, data: st.DataObject, cancel: bool) -> None:
        model = data.draw(st.sampled_from(self.polls))
        result = self.attempt(self.service.close(model.id, cancel=cancel))
        if model.state is not PollState.RUNNING:
            assert isinstance(result, ApiError)
            assert result.code == "poll_closed"
            return
        assert not isinstance(result, ApiError)
        target = PollState.CANCELLED if cancel else PollState.CLOSED
        assert model.state.can_become(target)
        assert result.state is target
        model.state = target

    @invariant()
    def tallies_are_the_ballots(self) -> None:
        for model in self.polls:
            poll = self.run(self.service.get(model.id))
            assert poll.state is model.state
            expected = [0] * model.options
            for option in model.ballots.values():
                expected[option] += 1
            assert poll.counts == expected
            assert poll.voters == len(model.ballots) == sum(poll.counts)
            assert poll.votes == model.votes
        current = self.run(self.service.current(STREAM))
        if self.polls:
            assert current is not None
            assert current.id == self.polls[-1].id
        assert sum(p.state is PollState.RUNNING for p in self.polls) <= 1


def test_polls_over_any_sequence(any_redis_url: str) -> None:
    run_machine(PollsMachine, any_redis_url, examples=20, steps=25)
