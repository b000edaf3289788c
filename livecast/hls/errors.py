"""Errors of the LL-HLS package: none of its own.

Its codes (``invalid_hls_request``, ``hls_not_found``, ``hls_unavailable``) are in
:mod:`livecast.error_codes` with every other code, each with its status and meaning; the
endpoints raise the shared classes of :mod:`livecast.errors` with them.
"""

from __future__ import annotations

__all__: list[str] = []
