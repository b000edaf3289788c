"""Media: WHIP publishing, WHEP playing, and the passthrough relay between them."""

from livecast.ingest.hub import MediaHub
from livecast.ingest.keys import MEDIA

__all__ = ["MEDIA", "MediaHub"]
