"""The typed app keys of LL-HLS: this node's packaging, and the playback URL signer."""

from __future__ import annotations

from aiohttp import web

from livecast.hls.packaging import Packaging
from livecast.hls.signing import PlaybackSigner

__all__ = ["PACKAGING", "PLAYBACK"]

PACKAGING = web.AppKey("hls_packaging", Packaging)
PLAYBACK = web.AppKey("hls_playback", PlaybackSigner)
