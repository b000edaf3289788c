"""Commerce on the video timeline: each commerce event's media time, and each stream's
stored timeline of them (see :mod:`livecast.timeline.store`)."""

from livecast.timeline.service import TIMELINE, timeline_ctx
from livecast.timeline.store import (
    MediaTimeMs,
    Moment,
    MomentKind,
    ShownPrice,
    Timeline,
    TimelineEntry,
)

__all__ = [
    "TIMELINE",
    "MediaTimeMs",
    "Moment",
    "MomentKind",
    "ShownPrice",
    "Timeline",
    "TimelineEntry",
    "timeline_ctx",
]
