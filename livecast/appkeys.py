"""Typed keys under which the app factory stores the services handlers use."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web

from livecast.auth import TokenIssuer
from livecast.config import Settings
from livecast.events import EventPublisher
from livecast.node import Node
from livecast.redisdb import KeySpace
from livecast.streams.registry import StreamRegistry

__all__ = ["EVENTS", "KEYS", "NODE", "REDIS", "SETTINGS", "STREAMS", "TOKENS"]

SETTINGS = web.AppKey("settings", Settings)
NODE = web.AppKey("node", Node)
REDIS = web.AppKey("redis", aioredis.Redis)
KEYS = web.AppKey("keys", KeySpace)
TOKENS = web.AppKey("tokens", TokenIssuer)
EVENTS = web.AppKey("events", EventPublisher)
STREAMS = web.AppKey("streams", StreamRegistry)
