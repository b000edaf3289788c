"""The live-events package's services and lifecycle (wired by :mod:`livecast.app`).

:func:`chat_ctx` is a cleanup context that builds the hub, history and moderation
services from ``app[SETTINGS]``, ``app[REDIS]`` and ``app[KEYS]`` (after the Redis
context) and registers a stream-state listener that publishes ``stream.state``;
:func:`close_sockets`, an ``on_shutdown`` hook, closes the sockets with 1001.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from livecast.appkeys import EVENTS, KEYS, REDIS, SETTINGS, STREAMS
from livecast.chat.events import StreamStateChanged, StreamStateData
from livecast.chat.history import ChatHistory
from livecast.chat.hub import Hub
from livecast.chat.moderation import Moderation
from livecast.config import ChatSettings
from livecast.ids import new_id
from livecast.streams.registry import Stream, StreamState

__all__ = ["CHAT", "ChatService", "chat_ctx", "close_sockets"]


@dataclass(frozen=True, slots=True)
class ChatService:
    settings: ChatSettings
    hub: Hub
    history: ChatHistory
    moderation: Moderation
    # Sockets doing Redis work (a connect's snapshot, a chat message, a moderation
    # frame) at once; the rest wait their turn, so a reconnect storm or a burst of
    # messages queues instead of exhausting the Redis connection pool, which raises
    # rather than waits when it is empty.
    admission: asyncio.Semaphore


CHAT = web.AppKey("chat", ChatService)


async def chat_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS].chat
    redis, keys, events = app[REDIS], app[KEYS], app[EVENTS]
    hub = Hub(redis, keys, events, settings, node_id=new_id(9))
    service = ChatService(
        settings=settings,
        hub=hub,
        history=ChatHistory(redis, keys, events, settings),
        moderation=Moderation(redis, keys, events),
        admission=asyncio.Semaphore(max(1, app[SETTINGS].redis.max_connections // 2)),
    )
    app[CHAT] = service

    async def publish_state(stream: Stream, previous: StreamState) -> None:
        data = StreamStateData(
            state=stream.state,
            previous=previous,
            started_at=stream.started_at,
            ended_at=stream.ended_at,
        )
        await events.publish(StreamStateChanged(stream=stream.id, data=data))

    app[STREAMS].on_state_change(publish_state)
    await hub.start()
    try:
        yield
    finally:
        await hub.stop()


async def close_sockets(app: web.Application) -> None:
    service = app.get(CHAT)
    if service is not None:
        await service.hub.close_sockets(message=b"server shutting down")
