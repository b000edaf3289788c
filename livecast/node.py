"""This process as the rest of the deployment sees it: one node.

A node has a random id, new at each start, and the URL other nodes reach it at
(``server.node_url``; a worker of ``livecast serve --workers N``: its private port). Its
WHIP/WHEP session ids end with its id, which is how any node finds the one holding a
session (:mod:`livecast.ingest.nodes`). ``worker`` is its index among the workers of its
``livecast serve`` (1..N), None for a single process; ``GET /healthz`` names both.
"""

from __future__ import annotations

from dataclasses import dataclass

from livecast.ids import new_id

__all__ = ["Node"]


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    url: str
    worker: int | None = None

    @classmethod
    def new(cls, url: str, worker: int | None = None) -> Node:
        return cls(id=new_id(9), url=url, worker=worker)
