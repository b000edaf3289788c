"""Codes the ingest endpoints answer with; every one is an instance of a foundation class.

::

    Temporary Redirect 307  publisher_active     WHIP on a node that is not the stream's
                                                 origin: ``Location`` is the origin's WHIP
                                                 endpoint (RFC 9725 4.5), ``origin_url`` too

    BadRequest 400          malformed_sdp        body is not an SDP offer / fragment
                            invalid_recording_name  no recording could have this name
    Unauthorized 401        unauthorized         publishing, or a session URL opened with a
                                                 token, needs a token
                            token_invalid, token_expired  a bad token (never taken for none)
    Forbidden 403           forbidden            token may not publish / watch this stream,
                                                 or act on this session URL
    NotFound 404            session_not_found    no such WHIP/WHEP session (once the caller
                                                 passed the checks above)
                            recording_not_found  no such recording of the stream (on this node)
    Conflict 409            publisher_active     the stream already has a live publisher, here
                                                 or on another node (``origin_url`` names it)
                            stream_ended         the stream has ended
    UnsupportedMediaType    unsupported_media_type  not application/sdp (or trickle fragment)
    Unprocessable 422       no_media             the offer has no audio or video
                            duplicate_media      two sections of one kind
                            codec_unsupported    no codec in common with the relay / stream
                            wrong_direction      the offer cannot send (WHIP) / receive (WHEP)
                            ice_restart_unsupported  PATCH asks for an ICE restart
    PreconditionFailed 412  etag_mismatch        PATCH If-Match names an old session state
    TooManyRequests 429     stream_full          max_viewers_per_stream or max_viewers reached
"""

from __future__ import annotations

from livecast.errors import ApiError, Conflict

__all__ = ["PreconditionFailed", "PublishedElsewhere"]


class PreconditionFailed(ApiError):
    """RFC 9725 4.3.1: a PATCH whose If-Match does not name the session's ETag."""

    status = 412
    default_code = "etag_mismatch"


class PublishedElsewhere(Conflict):
    """Another node is the stream's origin: a publisher belongs there.

    WHIP answers it as ``307 Temporary Redirect`` to :attr:`whip_url` (RFC 9725 4.5),
    with the body of a 409 ``publisher_active`` for clients that do not follow.
    """

    def __init__(self, origin_url: str) -> None:
        super().__init__(
            "this stream is published through another node",
            code="publisher_active",
            origin_url=origin_url,
        )
        self.origin_url = origin_url

    def whip_url(self, stream_id: str) -> str:
        return f"{self.origin_url}/whip/{stream_id}"
