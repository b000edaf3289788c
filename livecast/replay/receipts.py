"""Video receipts: each order links to the moment it was bought, a slice of the stream's
replay (:mod:`livecast.replay.slices`) from ``BEFORE_S`` before the add-to-cart to
``AFTER_S`` after it, playable once the stream's replay exists.

An add-to-cart records its moment under its hold id (the order line keeps the hold id)::

    <prefix>{receipts}:moment:<hold id>   "pdt:<unix ms>"   live: the stream's media time
                                          "pos:<seconds>"   replay or clip: where the buyer
                                                            was on the replay

An order's ``receipt_url`` is ``/receipt/{order id}/index.m3u8``: the moment of its first
line that has one, as a multivariant playlist of ``video.m3u8`` and (when the replay has
audio) ``audio.m3u8`` beside it, both cut at the same segments. Order ids are
unguessable, so the URL is the buyer's to share, like a signed URL: it plays without a
token; a private stream's receipt has the replay's signed segment paths. 404
``receipt_not_found`` until the replay exists (and after it is gone).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final, cast

from aiohttp import web

from livecast.appkeys import KEYS, REDIS, STREAMS
from livecast.cart.service import CART
from livecast.error_codes import ErrorCode
from livecast.errors import NotFound
from livecast.hls.routes import PLAYLIST_TYPE
from livecast.inventory.batch import ScriptBatcher
from livecast.openapi import Auth, Reply, contract
from livecast.redisdb import KeySpace
from livecast.replay.keys import REPLAY_PLAYBACK, REPLAYS
from livecast.replay.slices import slice_set
from livecast.replay.variants import AUDIO_PLAYLIST, MULTIVARIANT, VIDEO_PLAYLIST

__all__ = ["AFTER_S", "BEFORE_S", "moment_key", "receipt_url", "record_moment", "routes"]

BEFORE_S: Final = 10.0
AFTER_S: Final = 5.0
_KEPT_S: Final = 400 * 86_400  # past any order's life worth a receipt

routes = web.RouteTableDef()
log = logging.getLogger(__name__)


def moment_key(keys: KeySpace, hold_id: str) -> str:
    return keys.key("{receipts}", "moment", hold_id)


def receipt_url(order_id: str) -> str:
    return f"/receipt/{order_id}/index.m3u8"


def record_moment(
    batcher: ScriptBatcher, keys: KeySpace, hold_id: str, position_s: float | None, live: bool
) -> None:
    """Queue the write of an add-to-cart's moment with the next pipeline the batcher
    sends (the add does not wait for it: a lost write only costs the order its receipt,
    and is logged): live, now (the media clock; nodes keep their clocks synchronised); on
    a replay or clip, where the buyer was (None: not said, no receipt)."""
    if live:
        value = f"pdt:{int(time.time() * 1000)}"
    elif position_s is not None:
        value = f"pos:{position_s:.3f}"
    else:
        return
    written = batcher.command("SET", moment_key(keys, hold_id), value, "EX", _KEPT_S)
    written.add_done_callback(_logged)


def _logged(written: asyncio.Future[Any]) -> None:
    if not written.cancelled() and (exc := written.exception()) is not None:
        log.warning("an add-to-cart's moment was not recorded: %r", exc)


@routes.get(f"/receipt/{{order_id}}/{MULTIVARIANT}")
@routes.get(f"/receipt/{{order_id}}/{VIDEO_PLAYLIST}")
@routes.get(f"/receipt/{{order_id}}/{AUDIO_PLAYLIST}")
@contract(
    summary="An order's video receipt: the stream around the moment it was bought",
    description=f"A VOD slice of the stream's replay from {BEFORE_S:g} s before the "
    f"add-to-cart to {AFTER_S:g} s after it (whole segments): index.m3u8 is the "
    "multivariant playlist of video.m3u8 and, when the replay has audio, audio.m3u8. The "
    "order id is the key: no token; a private stream's segment URIs are the replay's "
    "signed paths.",
    responses={
        200: Reply(None, "the playlist (EXT-X-ENDLIST)", media_type=PLAYLIST_TYPE),
    },
    errors={
        ErrorCode.RECEIPT_NOT_FOUND: "no such order, no moment recorded for it, or its "
        "stream's replay does not exist (yet, or any more); audio.m3u8 of a video-only "
        "replay",
    },
    auth=Auth.NONE,
)
async def receipt_playlist(request: web.Request) -> web.StreamResponse:
    gone = NotFound("no video receipt for this order", code=ErrorCode.RECEIPT_NOT_FOUND)
    order = await request.app[CART].orders.find(request.match_info["order_id"])
    if order is None:
        raise gone
    keys = request.app[KEYS]
    raw = cast(
        list[bytes | None],
        await request.app[REDIS].mget([moment_key(keys, line.hold_id) for line in order.lines]),
    )
    found = [(line, value.decode()) for line, value in zip(order.lines, raw, strict=True) if value]
    if not found:
        raise gone
    line, moment = found[0]
    replays = request.app[REPLAYS]
    record = await replays.get(line.stream_id)
    stream = await request.app[STREAMS].find(line.stream_id)
    if record is None or not record.ended or not record.segments or stream is None:
        raise gone
    kind, _, value = moment.partition(":")
    at_s = record.position(int(value) / 1000) if kind == "pdt" else float(value)
    if not replays.has_files(stream.id):
        forwarded = await replays.forward(request, record)
        if forwarded is not None:
            return forwarded
    recording = await replays.recording(stream.id)
    if recording is None:
        raise gone
    prefix = f"/replay/{stream.id}/"
    if not stream.public:
        path, _ = request.app[REPLAY_PLAYBACK].sign(stream.id)
        prefix = "/replay/" + path.removeprefix("/hls/").removesuffix("index.m3u8")
    playlists = slice_set(recording, max(0.0, at_s - BEFORE_S), at_s + AFTER_S, prefix)
    playlist = playlists.get(request.path.rsplit("/", 1)[-1])
    if playlist is None:
        raise gone
    cache = "public, max-age=3600" if stream.public else "private, max-age=60"
    return web.Response(
        body=playlist.body,
        content_type=PLAYLIST_TYPE,
        headers={"ETag": playlist.etag, "Cache-Control": cache},
    )
