"""Redis key names of one stream's live events, all under the ``{<stream id>}`` hash tag so
every script touches one Redis Cluster slot."""

from __future__ import annotations

from typing import Final

from livecast.redisdb import KeySpace

__all__ = ["VIEW_SOURCES", "LiveKeys"]

# where a stream is watched besides live: its replay, and its clips
VIEW_SOURCES: Final = ("replay", "clip")


class LiveKeys:
    """Keys of one stream::

    <prefix>live:{<id>}:state            hash slot -> msgpack document (EventPublisher)
    <prefix>live:{<id>}:chat             stream of chat entries (t=type, d=msgpack data)
    <prefix>live:{<id>}:chat-floor       newest entry id ever trimmed from the chat stream
    <prefix>live:{<id>}:dedupe:<u>:<c>   offset of user u's message with client id c (TTL)
    <prefix>live:{<id>}:rate:<u>         sorted set of user u's recent send times
    <prefix>live:{<id>}:slow:<u>         present while user u must wait (slow mode)
    <prefix>live:{<id>}:mod              hash: slow_mode_s
    <prefix>live:{<id>}:bans             hash user -> until (epoch ms; 0 = for good)
    <prefix>live:{<id>}:words            set of banned words of this stream
    <prefix>live:{<id>}:likes            like total
    <prefix>live:{<id>}:viewers          hash node -> "<count>:<expires epoch ms>"
    <prefix>live:{<id>}:viewers-last     last viewer total published
    <prefix>live:{<id>}:peak             peak concurrent viewers
    <prefix>live:{<id>}:uniques          HyperLogLog of viewer identities (live)
    <prefix>live:{<id>}:uniques:<source> HyperLogLog of viewer identities of the replay
                                         (``replay``) or of its clips (``clip``)
    <prefix>live:{<id>}:messages         chat messages ever posted (for stats)
    """

    __slots__ = ("base", "stream_id")

    def __init__(self, keys: KeySpace, stream_id: str) -> None:
        self.stream_id = stream_id
        self.base = keys.key("live", "{" + stream_id + "}")

    @property
    def state(self) -> str:
        return self.base + ":state"

    @property
    def chat(self) -> str:
        return self.base + ":chat"

    @property
    def chat_floor(self) -> str:
        return self.base + ":chat-floor"

    def dedupe(self, user: str, client_id: str) -> str:
        return f"{self.base}:dedupe:{user}:{client_id}"

    def rate(self, user: str) -> str:
        return f"{self.base}:rate:{user}"

    def slow(self, user: str) -> str:
        return f"{self.base}:slow:{user}"

    @property
    def mod(self) -> str:
        return self.base + ":mod"

    @property
    def bans(self) -> str:
        return self.base + ":bans"

    @property
    def words(self) -> str:
        return self.base + ":words"

    @property
    def likes(self) -> str:
        return self.base + ":likes"

    @property
    def viewers(self) -> str:
        return self.base + ":viewers"

    @property
    def viewers_last(self) -> str:
        return self.base + ":viewers-last"

    @property
    def peak(self) -> str:
        return self.base + ":peak"

    @property
    def uniques(self) -> str:
        return self.base + ":uniques"

    def uniques_from(self, source: str) -> str:
        """The viewer identities of ``source``: live, replay or clip."""
        return self.uniques if source == "live" else f"{self.uniques}:{source}"

    @property
    def messages(self) -> str:
        return self.base + ":messages"
