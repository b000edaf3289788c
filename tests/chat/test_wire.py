"""The wire format: client frame validation and server frame encoding."""

from __future__ import annotations

import msgspec
import pytest

from livecast.chat.wire import ChatSend, Like, decode_client_frame, ws_frame
from livecast.errors import ApiError


def test_frames_decode_from_both_encodings() -> None:
    frame = {"type": "chat.send", "text": "hi", "client_id": "c1"}
    assert decode_client_frame(msgspec.json.encode(frame), binary=False) == ChatSend("hi", "c1")
    assert decode_client_frame(msgspec.msgpack.encode(frame), binary=True) == ChatSend("hi", "c1")
    assert decode_client_frame('{"type": "like"}', binary=False) == Like(1)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", "malformed_json"),
        (b"null", "malformed_json"),
        (b'{"type": ["like"]}', "malformed_json"),
        (b"[" * 3000, "malformed_json"),
        (b'{"type": "LIKE"}', "unknown_type"),
        (b'{"type": "like", "count": 1.5}', "invalid_field"),
        (b'{"type": "like", "count": true}', "invalid_field"),
        (b'{"type": "mod.ban", "user": "x", "seconds": 0}', "invalid_field"),
        (b'{"type": "chat.delete", "offset": "12"}', "invalid_field"),
    ],
)
def test_bad_frames_name_their_problem(payload: bytes, code: str) -> None:
    with pytest.raises(ApiError) as error:
        decode_client_frame(payload, binary=False)
    assert error.value.code == code


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_server_frames_carry_their_length(size: int) -> None:
    payload = b"x" * size
    frame = ws_frame(payload, binary=True)
    assert frame[0] == 0x82
    assert frame.endswith(payload)
    header = len(frame) - size
    assert header == (2 if size < 126 else 4 if size < 65536 else 10)
    length = frame[1] if header == 2 else int.from_bytes(frame[2:header], "big")
    assert length == size
    assert ws_frame(b"{}", binary=False)[:2] == b"\x81\x02"
