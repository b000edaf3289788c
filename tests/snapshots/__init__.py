"""Generated documents kept as snapshots, and how tests compare against them.

:func:`assert_matches` fails with a unified diff when a document differs from its
snapshot; with ``LIVECAST_UPDATE_SNAPSHOT=1`` it writes the snapshot first (after a
deliberate change; commit the diff).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

__all__ = ["assert_matches", "refs"]

HERE = Path(__file__).parent
UPDATE_ENV = "LIVECAST_UPDATE_SNAPSHOT"


def assert_matches(name: str, text: str, *, served_as: str, refresh: str) -> None:
    """``text`` is the snapshot ``name`` (in this folder); ``refresh`` is the pytest
    command that rewrites it, shown with the diff."""
    snapshot = HERE / name
    if os.environ.get(UPDATE_ENV) == "1":
        snapshot.write_text(text, encoding="utf-8")
    saved = snapshot.read_text(encoding="utf-8") if snapshot.exists() else ""
    if text == saved:
        return
    diff = difflib.unified_diff(
        saved.splitlines(keepends=True),
        text.splitlines(keepends=True),
        f"tests/snapshots/{name}",
        served_as,
        n=2,
    )
    raise AssertionError(
        f"{served_as} changed; if on purpose, refresh the snapshot with\n"
        f"  {UPDATE_ENV}=1 {refresh}\n" + "".join(list(diff)[:300])
    )


def refs(node: Any) -> list[str]:
    """Every ``$ref`` in a JSON document."""
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []
