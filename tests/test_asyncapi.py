"""The served AsyncAPI document: well-formed AsyncAPI 3.0, complete, and unchanged unless
on purpose. (That every event the suite receives fits it is checked for every test, by
``live_events_are_described`` in ``tests/conftest.py``.)"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

import livecast.app  # noqa: F401  (imports every package, so every Event subclass)
from livecast.asyncapi import CLIENT_FRAME_TYPES, SERVER_EVENT_TYPES
from livecast.error_codes import CloseCode, ErrorCode
from livecast.events import Event
from tests.conftest import Client, undescribed_event
from tests.snapshots import assert_matches, refs

_KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")


async def _served(client: Client) -> dict[str, Any]:
    resp = await client.get("/api/asyncapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    document: dict[str, Any] = await resp.json()
    return document


async def test_document_matches_the_snapshot(client: Client) -> None:
    """The served document is ``tests/snapshots/asyncapi.json`` (the version aside).

    After a deliberate change to an event, refresh the snapshot and commit it:
    ``LIVECAST_UPDATE_SNAPSHOT=1 python -m pytest tests/test_asyncapi.py -k snapshot``
    """
    document = await _served(client)
    document["info"]["version"] = "(version)"
    assert_matches(
        "asyncapi.json",
        json.dumps(document, indent=1, ensure_ascii=False) + "\n",
        served_as="GET /api/asyncapi.json",
        refresh="python -m pytest tests/test_asyncapi.py -k snapshot",
    )


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} is not a local reference"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref} does not resolve"
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


async def test_document_is_asyncapi_3(client: Client) -> None:
    doc = await _served(client)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"]
    assert doc["info"]["version"]
    assert doc["defaultContentType"] == "application/json"
    for server in doc["servers"].values():
        assert server["host"]
        assert server["protocol"] in ("ws", "wss")
    for ref in refs(doc):
        _resolve(doc, ref)
    for section in ("schemas", "messages", "securitySchemes"):
        for key in doc["components"][section]:
            assert _KEY.match(key), f"components.{section} key {key!r}"
    for name, channel in doc["channels"].items():
        assert _KEY.match(name)
        assert channel["address"].startswith("/ws/")
        for parameter in re.findall(r"{(\w+)}", channel["address"]):
            assert parameter in channel["parameters"], parameter
    for name, operation in doc["operations"].items():
        assert _KEY.match(name), name
        assert operation["action"] in ("send", "receive"), name
        channel_ref = operation["channel"]["$ref"]
        # An operation's messages are its channel's (AsyncAPI 3.0, Operation Object).
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), (name, message)
        reply = operation.get("reply")
        if reply is not None:
            for message in reply["messages"]:
                assert message["$ref"].startswith(reply["channel"]["$ref"] + "/messages/")
    for name, message in doc["components"]["messages"].items():
        assert message["name"] == name
        payload = _resolve(doc, message["payload"]["$ref"])
        assert payload["properties"]["type"] == {"enum": [name]}, name
        assert "type" in payload["required"]


async def test_every_event_and_frame_is_described_once(client: Client) -> None:
    doc = await _served(client)
    messages = doc["components"]["messages"]
    server_tags = [kind.__struct_config__.tag for kind in SERVER_EVENT_TYPES]
    client_tags = [kind.__struct_config__.tag for kind in CLIENT_FRAME_TYPES]
    assert len(set(server_tags + client_tags)) == len(server_tags + client_tags)
    assert set(messages) == set(server_tags) | set(client_tags)
    sent = {m["$ref"].rsplit("/", 1)[1] for m in doc["operations"]["sendEvents"]["messages"]}
    assert sent == set(server_tags)
    received = {
        m["$ref"].rsplit("/", 1)[1]
        for op in doc["operations"].values()
        if op["action"] == "receive"
        for m in op["messages"]
    }
    assert received == set(client_tags)

    def declared(cls: type[Event]) -> set[type[Event]]:
        found = set(cls.__subclasses__())
        for sub in cls.__subclasses__():
            found |= declared(sub)
        return found

    missing = declared(Event) - set(SERVER_EVENT_TYPES)
    assert not missing, f"events not in livecast.asyncapi.ServerEvent: {missing}"


async def test_close_and_error_codes_are_described(client: Client) -> None:
    doc = await _served(client)
    closes = doc["channels"]["liveEvents"]["x-close-codes"]
    assert [(c["code"], c["reconnect"]) for c in closes] == [
        (code.value, code.reconnect) for code in CloseCode
    ]
    codes = doc["components"]["schemas"]["ErrorCode"]
    assert set(codes["enum"]) == {code.value for code in ErrorCode}
    assert set(codes["x-codes"]) == set(codes["enum"])


def test_validation_refuses_what_the_types_do_not_describe() -> None:
    ok = {"type": "likes", "stream": "s1", "data": {"total": 3}}
    assert undescribed_event(msgspec.json.encode(ok), binary=False) is None
    assert undescribed_event(msgspec.msgpack.encode(ok), binary=True) is None
    wrong = [
        {"type": "likes.total", "stream": "s1", "data": {"total": 3}},  # unknown type
        {"type": "likes", "stream": "s1", "data": {"total": 3, "delta": 1}},  # unknown field
        {"type": "likes", "stream": "s1", "data": {"total": "3"}},  # wrong type
        {"type": "likes", "stream": "s1", "data": {}},  # missing field
        {"type": "likes", "data": {"total": 3}},  # no stream
        {"type": "chat.message", "stream": "s1", "data": {"id": "1-0"}},
    ]
    for event in wrong:
        assert undescribed_event(msgspec.json.encode(event), binary=False), event
        assert undescribed_event(msgspec.msgpack.encode(event), binary=True), event
