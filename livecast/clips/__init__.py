"""Product clips: each pinned span of an ended stream, a shoppable slice of its replay
(see :mod:`livecast.clips.store`)."""

from livecast.clips.store import CLIPS, Clip, Clips, ClipState

__all__ = ["CLIPS", "Clip", "ClipState", "Clips"]
