"""The typed app key under which the app keeps this node's LL-HLS packaging."""

from __future__ import annotations

from aiohttp import web

from livecast.hls.packaging import Packaging

__all__ = ["PACKAGING"]

PACKAGING = web.AppKey("hls_packaging", Packaging)
