"""Per-stream state on this node: :class:`StreamMedia`, :class:`Session`, :class:`MediaState`.

A stream's media here is a :class:`StreamMedia`: a :class:`~livecast.ingest.relay.MediaSource`
per kind, at most one publisher session and any number of viewer sessions. It exists
while anyone is connected (or the stream waits for its publisher to come back), so a
viewer who arrives before the host, or stays through a reconnect, keeps its peer
connection and its outgoing tracks; frames simply start (again) when a publisher sends.
:class:`~livecast.ingest.hub.MediaHub` makes, keeps and closes them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, cast

import msgspec
from aiortc import RTCPeerConnection

from livecast.events import Event
from livecast.ingest.relay import MediaSource, RelayTuning, ViewerTrack

if TYPE_CHECKING:
    from livecast.ingest.edge import EdgePull

__all__ = [
    "PUBLISHER",
    "VIEWER",
    "MediaState",
    "MediaStateChanged",
    "MediaStateData",
    "MediaStatus",
    "Session",
    "StreamMedia",
]

PUBLISHER = "publisher"
VIEWER = "viewer"


class MediaState:
    IDLE = "idle"  # nobody has published yet
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ENDED = "ended"


MediaStateName = Literal["idle", "live", "reconnecting", "ended"]


class MediaStateData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``video_codec``: the publisher's (``h264``, ``vp8``; null before one is known)."""

    state: MediaStateName
    video_codec: str | None


class MediaStateChanged(Event, tag="media.state", frozen=True, kw_only=True):
    """The stream's video went live, is reconnecting (the publisher dropped or its origin
    may be gone), or ended."""

    data: MediaStateData


@dataclass(slots=True)
class Session:
    """One WHIP or WHEP resource: a peer connection and its unguessable id."""

    id: str
    role: str  # PUBLISHER or VIEWER
    stream_id: str
    pc: RTCPeerConnection
    etag: str
    subject: str = ""
    created_at: float = 0.0
    connected: bool = False
    connected_at: float = 0.0  # monotonic time it connected
    closed: bool = False
    tracks: tuple[ViewerTrack, ...] = ()
    drains: tuple[asyncio.Task[None], ...] = ()
    # publisher: its codec; viewer: the codecs its sender negotiated, the first sent first
    video_codecs: tuple[str, ...] = ()
    edge: bool = False  # a viewer that is another node's pull

    @property
    def video_codec(self) -> str | None:
        """The video codec this session sends or is sent first (None: no video)."""
        return self.video_codecs[0] if self.video_codecs else None


class StreamMedia:
    """The media of one stream on this node."""

    def __init__(self, stream_id: str, tuning: RelayTuning) -> None:
        self.stream_id = stream_id
        self.sources = {
            "video": MediaSource("video", tuning),
            "audio": MediaSource("audio", tuning),
        }
        self.publisher: Session | None = None
        self.upstream: EdgePull | None = None  # on an edge: the pull from the origin
        self.viewers: dict[str, Session] = {}
        self.video_codec: str | None = None
        self.state = MediaState.IDLE
        self.state_since = time.monotonic()

    @property
    def last_media_at(self) -> float:
        return max(s.last_frame_at for s in self.sources.values())

    def snapshot(self, origin_url: str | None) -> MediaStatus:
        return MediaStatus(
            state=cast(MediaStateName, self.state),
            publishing=self.publisher is not None,
            edge=self.upstream is not None,
            viewers=len(self.viewers),
            video_codec=self.video_codec,
            audio=self.sources["audio"].codec is not None,
            video_frames_in=self.sources["video"].frames_in,
            keyframe_requests=self.sources["video"].keyframe_requests_sent,
            viewers_waiting_keyframe=sum(
                1 for v in self.viewers.values() for t in v.tracks if t.waiting_keyframe
            ),
            origin_url=origin_url,
        )


def _said(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class MediaStatus(msgspec.Struct, frozen=True, kw_only=True):
    """The media of a stream on this node (``GET /api/streams/{id}/media``)."""

    state: Annotated[
        MediaStateName,
        _said(
            "on an edge, the origin's media state as its pull sees it: live while media "
            "arrives, reconnecting once none has for webrtc.publisher_stale_s or the origin "
            "is gone"
        ),
    ]
    publishing: bool
    edge: Annotated[
        bool,
        _said("this node is an edge of the stream: it pulls the media from the stream's origin"),
    ]
    viewers: Annotated[int, _said("WHEP sessions on this node")]
    video_codec: Annotated[str | None, _said("h264 or vp8; null before video arrives")]
    audio: bool
    video_frames_in: Annotated[
        int,
        _said("video frames received from publishers since the stream's media started here"),
    ]
    keyframe_requests: Annotated[int, _said("keyframe requests sent to publishers (merged)")]
    viewers_waiting_keyframe: Annotated[
        int, _said("viewers connected but still waiting for their first keyframe")
    ]
    origin_url: Annotated[
        str | None,
        _said(
            "the node that holds the stream's broadcast (where its publisher connects: WHIP "
            "elsewhere answers 307 there), or null when no node does"
        ),
    ]
