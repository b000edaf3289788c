"""The viewer side of :class:`~livecast.ingest.hub.MediaHub`: :class:`ViewerSide`.

Accepting a WHEP viewer (or another node's pull) and choosing the video codec it gets.
"""

from __future__ import annotations

from aiortc import RTCPeerConnection, RTCSessionDescription

from livecast.errors import TooManyRequests, Unprocessable
from livecast.ingest import _aiortc
from livecast.ingest._hub import HubBase
from livecast.ingest.media import VIEWER, Session, StreamMedia
from livecast.ingest.relay import ViewerTrack
from livecast.ingest.sdp import AUDIO_CODEC, Offer, codec_preferences

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
        it serves that node's viewers, so ``max_viewers_per_stream`` neither refuses nor
        counts it.
        """
        for kind, direction in offer.directions.items():
            if direction not in ("recvonly", "sendrecv"):
                raise Unprocessable(
                    f"the {kind} section is {direction}; a viewer must receive",
                    code="wrong_direction",
                )
        media = self.stream_media(stream_id)
        watching = sum(not v.edge for v in media.viewers.values())
        if not edge and watching >= self._settings.max_viewers_per_stream:
            self.forget_if_idle(media)
            raise TooManyRequests(
                "this stream has as many viewers as it can take", code="stream_full"
            )
        video_codec = None
        try:
            if "video" in offer.codecs:
                video_codec = self._choose_viewer_codec(media, offer.codecs["video"])
            if "audio" in offer.codecs and AUDIO_CODEC not in offer.codecs["audio"]:
                raise Unprocessable("this stream's audio is Opus", code="codec_unsupported")
        except Exception:
            self.forget_if_idle(media)
            raise

        pc = RTCPeerConnection(self.configuration())
        session = self._new_session(VIEWER, stream_id, pc, "")
        session.video_codec = video_codec
        session.edge = edge
        media.viewers[session.id] = session
        if video_codec is not None and media.video_codec is None:
            media.video_codec = video_codec
        tracks: list[ViewerTrack] = []
        try:
            for kind in offer.kinds:
                family = video_codec if kind == "video" else AUDIO_CODEC
                assert family is not None
                track = ViewerTrack(media.sources[kind], join_burst=not fresh)
                tracks.append(track)
                transceiver = pc.addTransceiver(track, direction="sendonly")
                transceiver.setCodecPreferences(codec_preferences(kind, family))
                _aiortc.install_packer(transceiver.sender)
                _aiortc.forward_keyframe_requests(transceiver.sender, track.request_keyframe)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception:
            for track in tracks:
                track.stop()
            media.viewers.pop(session.id, None)
            self.sessions.pop(session.id, None)
            await pc.close()
            self.forget_if_idle(media)
            raise
        session.tracks = tuple(tracks)
        self._watch(session, media)
        return session, pc.localDescription.sdp

    def _choose_viewer_codec(self, media: StreamMedia, offered: tuple[str, ...]) -> str:
        if media.video_codec is not None:
            if media.video_codec in offered:
                return media.video_codec
            raise Unprocessable(
                f"this stream is {media.video_codec.upper()} and the offer cannot receive it",
                code="codec_unsupported",
                stream_codec=media.video_codec,
            )
        for codec in self._settings.video_codecs:
            if codec in offered:
                return codec
        raise Unprocessable(
            "the offer has no video codec this server relays", code="codec_unsupported"
        )
