"""Live events: chat, likes, pinned cards, deals, presence and moderation over WebSockets,
fanned out across nodes through Redis pub/sub."""

from livecast.chat.history import ChatHistory
from livecast.chat.hub import Hub, Viewer
from livecast.chat.moderation import Moderation
from livecast.chat.service import CHAT, ChatService

__all__ = ["CHAT", "ChatHistory", "ChatService", "Hub", "Moderation", "Viewer"]
