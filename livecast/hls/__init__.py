"""LL-HLS from the node that holds a stream's media: a multivariant playlist naming CMAF
video and audio renditions (fMP4 parts, blocking media playlists)."""

from livecast.hls.packager import Packager, PackagerSettings
from livecast.hls.packaging import Packaging

__all__ = ["Packager", "PackagerSettings", "Packaging"]
