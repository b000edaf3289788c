"""Errors of the live-events package: none of its own.

Its codes (chat refusals, bad frames) are in :mod:`livecast.error_codes` with every other
code, and it raises the shared classes of :mod:`livecast.errors`. On a socket an error
becomes an ``error`` event with the same code; how a socket closes is
:class:`livecast.error_codes.CloseCode`.
"""

from __future__ import annotations

__all__: list[str] = []
