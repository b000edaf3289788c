"""The typed app keys of LL-HLS: this node's packaging, the forwarding of requests for
streams packaged on other nodes, and the playback URL signer."""

from __future__ import annotations

from aiohttp import web

from livecast.hls.forward import Forwarder
from livecast.hls.packaging import Packaging
from livecast.hls.signing import PlaybackSigner

__all__ = ["FORWARDER", "PACKAGING", "PLAYBACK"]

FORWARDER = web.AppKey("hls_forwarder", Forwarder)
PACKAGING = web.AppKey("hls_packaging", Packaging)
PLAYBACK = web.AppKey("hls_playback", PlaybackSigner)
