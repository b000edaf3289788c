"""The viewer side of :class:`~livecast.ingest.hub.MediaHub`: :class:`ViewerSide`.

Accepting a WHEP viewer (or another node's pull) and choosing the video codecs it gets.

A viewer negotiates every video codec this server relays that its offer can receive,
the stream's current one first (so a viewer who arrives before the publisher, or stays
through a publisher who comes back with another codec, needs no new offer): its sender
sends the stream's codec and switches at the first keyframe of another one
(:class:`~livecast.ingest._aiortc.RelaySender`). With ``webrtc.fast_relay`` (the
default), a viewer connected over a plain UDP pair gets its packets from the source's
fan-out (:mod:`livecast.ingest.fanout`); otherwise aiortc's sender sends them.

Another node's pull negotiates the stream's codec only: its frame tap knows one codec
per connection, so a codec change drops the pull and the edge pulls again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from aiortc import RTCSessionDescription

from livecast.error_codes import ErrorCode
from livecast.errors import TooManyRequests, Unprocessable
from livecast.ingest import _aiortc
from livecast.ingest._hub import HubBase
from livecast.ingest.fanout import write_directly
from livecast.ingest.media import VIEWER, Session, StreamMedia
from livecast.ingest.relay import ViewerTrack
from livecast.ingest.sdp import AUDIO_CODEC, Offer, codec_preferences, mime_of

__all__ = ["ViewerSide"]


class ViewerSide(HubBase):
    """Playing: :meth:`play`."""

    # -- playing ------------------------------------------------------------------------

    async def play(
        self, stream_id: str, offer: Offer, *, fresh: bool = False, edge: bool = False
    ) -> tuple[Session, str]:
        """Accept a viewer's offer; returns the session and the SDP answer.

        ``fresh``: the viewer starts at a new keyframe, never with a catch-up burst from
        a recent one (an edge re-pulling must not get frames it relayed already).
        ``edge``: the viewer is another node's pull (its token verified as an edge's);
        it serves that node's viewers, so neither ``max_viewers_per_stream`` nor
        ``max_viewers`` (the node's WHEP sessions over all its streams) refuses or counts it.
        """
        for kind, direction in offer.directions.items():
            if direction not in ("recvonly", "sendrecv"):
                raise Unprocessable(
                    f"the {kind} section is {direction}; a viewer must receive",
                    code=ErrorCode.WRONG_DIRECTION,
                )
        media = self.stream_media(stream_id)
        watching = sum(not v.edge for v in media.viewers.values())
        if not edge and (
            watching >= self._settings.max_viewers_per_stream
            or self.node_viewers() >= self._settings.max_viewers
        ):
            self.forget_if_idle(media)
            raise TooManyRequests(
                "this stream has as many viewers as it can take", code=ErrorCode.STREAM_FULL
            )
        video_codecs: tuple[str, ...] = ()
        try:
            if "video" in offer.codecs:
                video_codecs = self._choose_viewer_codecs(media, offer.codecs["video"], edge)
            if "audio" in offer.codecs and AUDIO_CODEC not in offer.codecs["audio"]:
                raise Unprocessable("this stream's audio is Opus", code=ErrorCode.CODEC_UNSUPPORTED)
        except Exception:
            self.forget_if_idle(media)
            raise

        pc = _aiortc.peer_connection(self.configuration())
        session = self._new_session(VIEWER, stream_id, pc, "")
        session.video_codecs = video_codecs
        session.edge = edge
        media.viewers[session.id] = session
        if edge and media.video_codec is None:
            media.video_codec = video_codecs[0] if video_codecs else None
        tracks: list[ViewerTrack] = []
        try:
            for kind in offer.kinds:
                families = video_codecs if kind == "video" else (AUDIO_CODEC,)
                transceiver = _aiortc.send_only_transceiver(pc, kind)
                sender = _aiortc.RelaySender(transceiver.sender)
                track = ViewerTrack(
                    media.sources[kind],
                    join_burst=not fresh,
                    codec=families[0],
                    switch_codec=_switcher(sender) if kind == "video" else None,
                )
                tracks.append(track)
                transceiver.sender.replaceTrack(track)
                transceiver.setCodecPreferences(codec_preferences(kind, *families))
                _aiortc.forward_keyframe_requests(transceiver.sender, track.request_keyframe)
                if self._settings.fast_relay:
                    sender.on_start = functools.partial(write_directly, track)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception:
            for track in tracks:
                track.stop()
            media.viewers.pop(session.id, None)
            self.sessions.pop(session.id, None)
            await _aiortc.close_peer(pc)
            self.forget_if_idle(media)
            raise
        session.tracks = tuple(tracks)
        self._watch(session, media)
        return session, pc.localDescription.sdp

    def _choose_viewer_codecs(
        self, media: StreamMedia, offered: tuple[str, ...], edge: bool
    ) -> tuple[str, ...]:
        """The video codecs to negotiate, the one to send first first: the stream's, if
        it has one yet, then every other one this server relays that the offer has."""
        relayed = tuple(c for c in self._settings.video_codecs if c in offered)
        current = media.video_codec
        if current is not None:
            if current not in offered:
                raise Unprocessable(
                    f"this stream is {current.upper()} and the offer cannot receive it",
                    code=ErrorCode.CODEC_UNSUPPORTED,
                    stream_codec=current,
                )
            if edge:
                return (current,)
            return (current, *(c for c in relayed if c != current))
        if not relayed:
            raise Unprocessable(
                "the offer has no video codec this server relays", code=ErrorCode.CODEC_UNSUPPORTED
            )
        return relayed[:1] if edge else relayed


def _switcher(sender: _aiortc.RelaySender) -> Callable[[str], bool]:
    """``switch(codec family)``: make ``sender`` send that negotiated codec from now on."""
    return lambda family: sender.use(mime_of(family))
