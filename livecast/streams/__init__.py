"""Streams: the ``scheduled -> live -> ended`` lifecycle, stored in Redis."""

from livecast.streams.registry import Stream, StreamRegistry, StreamState

__all__ = ["Stream", "StreamRegistry", "StreamState"]
