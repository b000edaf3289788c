"""The stream checks every package's routes share (``livecast.streams.access``)."""

from __future__ import annotations

import pytest

from livecast.error_codes import ErrorCode
from livecast.errors import Conflict
from livecast.streams.access import require_live
from livecast.streams.registry import Stream, StreamState


def _stream(state: StreamState) -> Stream:
    return Stream(
        id="s1",
        title="Drop",
        description="",
        seller_id="seller-1",
        seller_name="Ana",
        state=state,
        public=True,
        featured_skus=[],
        scheduled_start=None,
        created_at="2026-12-06T10:00:00.000Z",
    )


def test_a_live_stream_passes() -> None:
    require_live(_stream(StreamState.LIVE), "a deal")


@pytest.mark.parametrize("state", [s for s in StreamState if s is not StreamState.LIVE])
def test_any_other_state_is_409_stream_not_live_naming_the_action(state: StreamState) -> None:
    with pytest.raises(Conflict) as refused:
        require_live(_stream(state), "an auction")
    assert refused.value.code is ErrorCode.STREAM_NOT_LIVE
    assert f"is {state.value}; an auction needs a live stream" in refused.value.message
