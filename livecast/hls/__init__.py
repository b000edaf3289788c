"""LL-HLS from the node that holds a stream's media: fMP4 parts, blocking playlists."""

from livecast.hls.packager import Packager, PackagerSettings
from livecast.hls.packaging import Packaging

__all__ = ["Packager", "PackagerSettings", "Packaging"]
