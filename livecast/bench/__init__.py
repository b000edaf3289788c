"""Benchmarks: ``livecast bench NAME [options]``, each printing one JSON line.

They run real parts on loopback (a server process, real peers and sockets, real Redis),
bounded in count and time, and stop by themselves. Each module here has
``main(argv) -> int``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

__all__ = ["BENCHMARKS", "run_benchmark"]

BENCHMARKS = {
    "relay": "livecast.bench.relay",
    "fanout": "livecast.bench.fanout",
    "reserve": "livecast.bench.reserve",
    "webhooks": "livecast.bench.webhooks",
    "checkout": "livecast.bench.checkout",
    "hls": "livecast.bench.hls",
    "glass": "livecast.bench.glass",
    "soak": "livecast.bench.soak",
    "auction": "livecast.bench.auction",
    "timeline": "livecast.bench.timeline",
}


def run_benchmark(name: str, argv: Sequence[str]) -> int:
    module = importlib.import_module(BENCHMARKS[name])
    code: int = module.main(list(argv))
    return code
