"""A session URL that reaches another node of the deployment (behind a load balancer)
is answered by the node holding the session; real nodes on one Redis, real peers."""

from __future__ import annotations

from livecast.aio import cancel_and_wait
from livecast.appkeys import KEYS, NODE, REDIS
from livecast.auth import Role
from livecast.ingest.keys import MEDIA, NODES
from livecast.ingest.nodes import owner_of
from tests.conftest import Client, MakeToken, bearer, free_port
from tests.ingest.conftest import MakeNode, SellerStream, eventually
from tests.ingest.peers import publish, view
from tests.ingest.test_sessions import FRAGMENT, TRICKLE, _refused


def _sessions(node: Client) -> int:
    return len(node.app[MEDIA].sessions)


async def test_session_requests_are_answered_by_the_node_holding_the_session(
    make_node: MakeNode, stream: SellerStream, make_token: MakeToken
) -> None:
    client, node_b = await make_node(), await make_node()
    publisher = await publish(client, stream.id, stream.seller_token)
    buyer = make_token(Role.VIEWER, sub="buyer-1")
    viewer = await view(node_b, stream.id, headers=bearer(buyer))
    try:
        await viewer.frames(3)
        assert owner_of(viewer.location.rsplit("/", 1)[1]) == node_b.app[NODE].id
        assert owner_of(publisher.location.rsplit("/", 1)[1]) == client.app[NODE].id

        # the owner checks the caller, wherever the request came in
        await _refused(await client.delete(viewer.location), 401, "unauthorized")
        other = make_token(Role.VIEWER, sub="buyer-2")
        await _refused(await client.delete(viewer.location, headers=bearer(other)), 403)
        resp = await client.patch(
            viewer.location, data=FRAGMENT, headers={**TRICKLE, **bearer(buyer)}
        )
        assert resp.status == 204, await resp.text()
        assert resp.headers["ETag"]
        assert (await node_b.get("/healthz")).status == 200
        sessions_b = _sessions(node_b)
        resp = await client.delete(viewer.location, headers=bearer(buyer))
        assert resp.status == 200, await resp.text()
        await eventually(lambda: _sessions(node_b) == sessions_b - 1)
        await _refused(
            await node_b.delete(viewer.location, headers=bearer(buyer)), 404, "session_not_found"
        )

        # a publisher's session too, from the other side
        resp = await node_b.patch(
            publisher.location, data=FRAGMENT, headers={**TRICKLE, **bearer(stream.seller_token)}
        )
        assert resp.status == 204, await resp.text()

        # a session of a node that is gone: unknown here, refused as any unknown one
        gone = publisher.location.rsplit(".", 1)[0] + ".nosuchnode00"
        await _refused(await node_b.delete(gone), 401, "unauthorized")
        other_seller = make_token(Role.SELLER, sub="seller-2")
        await _refused(await node_b.delete(gone, headers=bearer(other_seller)), 403)
        unknown = await node_b.delete(gone, headers=bearer(stream.seller_token))
        await _refused(unknown, 404, "session_not_found")
    finally:
        await viewer.close()
        await publisher.close()


async def test_a_session_of_a_node_that_does_not_answer_is_503_to_retry(
    make_node: MakeNode, stream: SellerStream
) -> None:
    client, node_b = await make_node(), await make_node()
    publisher = await publish(client, stream.id, stream.seller_token)
    viewer = await view(node_b, stream.id)
    try:
        await viewer.frames(3)
        # node B's record names an address where nobody answers (as when its HTTP side
        # hangs or its network is cut): the request may be sent again
        nodes = node_b.app[NODES]
        await cancel_and_wait(nodes._heartbeat)
        key = node_b.app[KEYS].key("media", "node", node_b.app[NODE].id)
        await node_b.app[REDIS].set(key, f"http://127.0.0.1:{free_port()}", px=60_000)
        resp = await client.delete(viewer.location)
        await _refused(resp, 503, "session_node_unreachable")
    finally:
        await viewer.close()
        await publisher.close()
