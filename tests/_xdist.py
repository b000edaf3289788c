"""The suite's pytest-xdist scheduling: the media tests in one unit of work, every other
test a unit of its own (see ``pytest_xdist_make_scheduler`` in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from xdist.scheduler import LoadScopeScheduling

MEDIA_UNIT = "media"


class MediaApartScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """xdist's ``loadscope`` scheduling with one scope for every test under
    ``tests/<package>/`` for a package in ``media``, and one scope per test otherwise."""

    def __init__(self, config: Any, log: Any, *, media: Set[str]) -> None:
        super().__init__(config, log)
        self._media = media

    def _split_scope(self, nodeid: str) -> str:
        parts = nodeid.split("::", 1)[0].split("/")
        if len(parts) > 2 and parts[0] == "tests" and parts[1] in self._media:
            return MEDIA_UNIT
        return nodeid
