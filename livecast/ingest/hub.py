"""Peer connections of publishers and viewers, per stream, owned by one :class:`MediaHub`.

This module holds the hub's overview; its parts live next to it:
:mod:`livecast.ingest.media` (the per-stream :class:`~livecast.ingest.media.StreamMedia`
and :class:`~livecast.ingest.media.Session` types), :mod:`livecast.ingest._hub` (the
registry, session lifecycle, state events, origin claim and shutdown both sides share),
:mod:`livecast.ingest.publisher` (publishing, recording, the watchdog) and
:mod:`livecast.ingest.viewer` (playing).

The video codec of a stream is chosen by its publisher: the first of
``webrtc.video_codecs`` it offers, preferring the stream's current one, then one every
viewer negotiated. Viewers negotiate every relayed codec they can receive (the stream's
first), so a viewer who arrives before the publisher gets its video whatever codec it
picks: the viewer's sender switches at the publisher's first keyframe. A publisher that
cannot send a codec some viewer negotiated is still accepted (the host comes first);
those viewers are disconnected, and reconnect on the new codec.

Media state events (``media.state`` with ``state`` live / reconnecting / ended) are
published through the app's EventPublisher whenever the publisher comes, goes quiet,
leaves or the stream ends; ``idle`` when this node lost the stream's origin claim to
another node. An edge announces ``reconnecting`` too when its pull stops bringing media
or the origin's record is gone (a dead origin tells nobody), and runs the reconnect
grace like the origin does (:meth:`~livecast.ingest.publisher.PublisherSide.watchdog`);
a stream whose origin died with no edge to notice is ended by any node's watchdog once
its record has been gone past the grace.

Several nodes: the node that accepts a publisher claims the stream's origin record
(:mod:`livecast.ingest.origin`) before anything else, and keeps it while it is the
origin: while a publisher is connected and, after it left, through the reconnect grace
(``reconnecting``). A publisher arriving at another node meanwhile is sent to the origin
(WHIP answers 307, :class:`~livecast.ingest.errors.PublishedElsewhere`). A node that is
not the origin serves its viewers from an :class:`~livecast.ingest.edge.EdgePull`
(``StreamMedia.upstream``), which feeds the same sources a publisher would.
"""

from __future__ import annotations

from livecast.ingest.publisher import PublisherSide
from livecast.ingest.viewer import ViewerSide

__all__ = ["MediaHub"]


class MediaHub(PublisherSide, ViewerSide):
    """Every WHIP/WHEP session of this node; closed with the app."""
