"""The typed app keys under which the app keeps this node's media sessions, their
records, pulls and recordings, and where the other nodes are."""

from __future__ import annotations

from aiohttp import web

from livecast.ingest.edge import EdgeRelay
from livecast.ingest.hub import MediaHub
from livecast.ingest.nodes import NodeDirectory
from livecast.ingest.recorder import Recorder
from livecast.ingest.sessions import SessionBook

__all__ = ["EDGE", "MEDIA", "NODES", "RECORDER", "SESSIONS"]

MEDIA = web.AppKey("media", MediaHub)
EDGE = web.AppKey("edge", EdgeRelay)
RECORDER = web.AppKey("recorder", Recorder)
SESSIONS = web.AppKey("sessions", SessionBook)
NODES = web.AppKey("nodes", NodeDirectory)
