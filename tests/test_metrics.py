"""What ``/metrics`` counts of the HTTP requests a node answers."""

from __future__ import annotations

from tests.conftest import Client


async def test_requests_are_counted_by_route_and_status(client: Client) -> None:
    for _ in range(3):
        assert (await client.get("/healthz")).status == 200
    assert (await client.get("/api/streams/nosuchstream")).status == 404
    text = await (await client.get("/metrics")).text()
    lines = text.splitlines()
    assert 'livecast_http_requests_total{method="GET",route="/healthz",status="200"} 3.0' in lines
    route = "/api/streams/{stream_id}"
    assert f'livecast_http_requests_total{{method="GET",route="{route}",status="404"}} 1.0' in lines
    assert 'livecast_http_request_seconds_count{method="GET",route="/healthz"} 3.0' in lines
