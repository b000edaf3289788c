"""Prometheus metrics at ``/metrics``, one registry per app.

Packages add their own metrics to ``app[METRICS].registry`` (or use the shared ones
below); gauges whose value lives elsewhere (sockets, peer connections) are read at
scrape time through callbacks, so nothing on a hot path updates them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from livecast.openapi import Reply, contract

__all__ = ["METRICS", "Metrics", "metrics_middleware", "metrics_route"]

_MAX_CHILDREN_KEPT = 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "livecast_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "livecast_http_request_seconds",
            "HTTP request handling time",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        # their children by (method, route, status): looked up once, not per request
        self._http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.orders = Counter(
            "livecast_orders", "Orders paid", ["currency"], registry=self.registry
        )
        self.order_value = Counter(
            "livecast_order_value_minor",
            "Value of paid orders in minor units",
            ["currency"],
            registry=self.registry,
        )
        self.checkouts_refused = Counter(
            "livecast_checkouts_refused",
            "Checkouts refused, by error code",
            ["code"],
            registry=self.registry,
        )
        self.add_to_carts = Counter(
            "livecast_add_to_carts", "Items added to carts", registry=self.registry
        )
        self.source_views = Counter(
            "livecast_source_views",
            "Viewers' live-event sockets opened live, on a replay or on a clip, by source",
            ["source"],
            registry=self.registry,
        )
        self.source_add_to_carts = Counter(
            "livecast_source_add_to_carts",
            "Items added to carts, by where the buyer was (live, replay, clip)",
            ["source"],
            registry=self.registry,
        )
        self.source_orders = Counter(
            "livecast_source_orders",
            "Paid orders with lines bought live, from a replay or a clip, by source",
            ["source", "currency"],
            registry=self.registry,
        )
        self.source_order_value = Counter(
            "livecast_source_order_value_minor",
            "Value of paid order lines in minor units, by where the buyer was",
            ["source", "currency"],
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "livecast_webhook_deliveries",
            "Webhook delivery attempts by outcome",
            ["outcome"],
            registry=self.registry,
        )

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its handling time."""
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_seconds.labels(method, route),
            )
            if len(self._http_children) < _MAX_CHILDREN_KEPT:  # methods come from clients
                self._http_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_order_sources(self, lines: Sequence[Any]) -> None:
        """Count a paid order's lines by source (``line.source``, ``line.line_total``)."""
        values: dict[tuple[str, str], int] = {}
        for line in lines:
            key = (line.source, line.line_total.currency)
            values[key] = values.get(key, 0) + line.line_total.amount_minor
        for (source, currency), value in values.items():
            self.source_orders.labels(source, currency).inc()
            self.source_order_value.labels(source, currency).inc(value)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read from ``read()`` at scrape time."""
        Gauge(name, documentation, registry=self.registry).set_function(read)


METRICS = web.AppKey("metrics", Metrics)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        seconds = time.perf_counter() - started
        request.app[METRICS].http_request(request.method, route, status, seconds)


def metrics_route() -> web.RouteDef:
    @contract(
        summary="Prometheus metrics",
        responses={200: Reply(None, "text exposition format", media_type="text/plain")},
        redis=False,
    )
    async def serve_metrics(request: web.Request) -> web.Response:
        body = generate_latest(request.app[METRICS].registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return web.get("/metrics", serve_metrics)
