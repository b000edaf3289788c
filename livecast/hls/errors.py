"""Codes the LL-HLS endpoints answer with; every one is an instance of a foundation class.

::

    BadRequest 400          invalid_hls_request  _HLS_msn/_HLS_part not whole numbers,
                                                 _HLS_part without _HLS_msn, or a segment
                                                 more than two past the newest one
    Unauthorized 401        unauthorized         a private stream, and no token
    Forbidden 403           forbidden            the token may not watch this stream
                            playback_url_invalid  a signed playback URL this server did not
                                                 make for this stream (forged or altered)
                            playback_url_expired  a signed playback URL past its expiry
    NotFound 404            hls_not_found        the stream is not packaged on this node, or
                                                 the file is not (or no longer) there
    (503)                   hls_unavailable      no part yet, or a blocking request's part
                                                 did not come in time (``Retry-After``)
"""

from __future__ import annotations

__all__: list[str] = []
