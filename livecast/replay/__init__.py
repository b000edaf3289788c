"""Shoppable replays: every LL-HLS stream's segments kept on disk, played back as VOD once
the stream ends, with the products on its timeline; retention and deletion."""

from livecast.replay.manifest import SegmentEntry, render_vod
from livecast.replay.store import ReplayRecord, Replays
from livecast.replay.writer import ReplayWriter

__all__ = ["ReplayRecord", "ReplayWriter", "Replays", "SegmentEntry", "render_vod"]
