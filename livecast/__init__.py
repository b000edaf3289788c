"""livecast: a self-hosted live-shopping streaming server."""

__all__ = ["__version__"]

__version__ = "0.1.0"
