"""The typed app keys of replays: the service and the signer of private replays' URLs."""

from __future__ import annotations

from aiohttp import web

from livecast.hls.signing import PlaybackSigner
from livecast.replay.store import Replays

__all__ = ["REPLAYS", "REPLAY_PLAYBACK"]

REPLAYS = web.AppKey("replays", Replays)
REPLAY_PLAYBACK = web.AppKey("replay_playback", PlaybackSigner)
