"""The product clip endpoints: the "moments" shelf, a product's clips, a stream's clips
for its seller, the seller's trim/publish/hide, and a clip's playlist.

``/clip/{clip id}/index.m3u8`` is a slice of the replay (:mod:`livecast.replay.slices`):
a multivariant playlist of ``video.m3u8`` and (when the replay has audio) ``audio.m3u8``
beside it, both cut at the same segments, whose segment URIs are the replay's own files:
under ``/replay/{stream id}/`` for a public stream, or its signed path for a private one
(the same rules as the replay: the clip of a private stream plays with a token that may
watch it). The same cache headers as the replay's playlist, with an ETag.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.auth import Role
from livecast.clips.store import CLIPS, Clip, ClipState
from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest, Forbidden, NotFound, Unprocessable
from livecast.hls.routes import PLAYLIST_TYPE
from livecast.http import identity, json_response, read_json
from livecast.ids import is_sku
from livecast.ingest.whep import require_watch
from livecast.inventory.money import Money
from livecast.inventory.service import INVENTORY
from livecast.openapi import Auth, Param, Reply, contract
from livecast.replay.keys import REPLAY_PLAYBACK, REPLAYS
from livecast.replay.slices import slice_set
from livecast.replay.variants import AUDIO_PLAYLIST, MULTIVARIANT, VIDEO_PLAYLIST
from livecast.streams.registry import Stream

__all__ = ["ClipInfo", "ClipList", "ClipPatch", "routes"]

routes = web.RouteTableDef()

# A private stream's clip, the signed way in (the replay's signature over the stream).
_SIGNED = "/clip/{clip_id}/signed/{expires}/{signature}"
Limit = Annotated[int, msgspec.Meta(ge=1, le=100)]


class ClipInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    stream_id: str
    stream_title: str
    seller_name: str
    sku: str
    title: str
    image_url: str | None
    price: Annotated[Money, msgspec.Meta(description="The product's price now.")]
    start_s: Annotated[float, msgspec.Meta(description="Where it starts on the replay.")]
    end_s: float
    span_start_s: Annotated[
        float, msgspec.Meta(description="The pinned span as recorded: trims stay within it.")
    ]
    span_end_s: float
    state: Annotated[
        ClipState, msgspec.Meta(description="published when made; draft or hidden by its seller")
    ]
    playlist_url: str
    watch_url: str


class ClipList(msgspec.Struct, frozen=True):
    clips: list[ClipInfo]


class ClipPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    start_s: float | None = None
    end_s: float | None = None
    state: ClipState | None = None


async def _infos(request: web.Request, clips: list[Clip], *, public_only: bool) -> list[ClipInfo]:
    streams = await asyncio.gather(*(request.app[STREAMS].find(c.stream_id) for c in clips))
    products = await request.app[INVENTORY].catalog.find_many([c.sku for c in clips])
    found = []
    for clip, stream in zip(clips, streams, strict=True):
        product = products.get(clip.sku)
        if stream is None or product is None or (public_only and not stream.public):
            continue
        found.append(
            ClipInfo(
                id=clip.id,
                stream_id=clip.stream_id,
                stream_title=stream.title,
                seller_name=stream.seller_name,
                sku=clip.sku,
                title=product.title,
                image_url=product.image_url,
                price=product.price,
                start_s=clip.start_s,
                end_s=clip.end_s,
                span_start_s=clip.span_start_s,
                span_end_s=clip.span_end_s,
                state=clip.state,
                playlist_url=_playlist_url(request, clip, stream),
                watch_url=f"/watch/{clip.stream_id}?clip={clip.id}",
            )
        )
    return found


def _playlist_url(request: web.Request, clip: Clip, stream: Stream) -> str:
    """Where a clip plays: a plain path for a public stream's clip; for a private one a
    signed, expiring path (the replay's signature, over the stream), so that a player,
    which sends no token, can load it and its playlists (relative to it)."""
    if stream.public:
        return f"/clip/{clip.id}/{MULTIVARIANT}"
    path, _ = request.app[REPLAY_PLAYBACK].sign(stream.id)
    signed = path.removeprefix(f"/hls/{stream.id}/").removesuffix(f"/{MULTIVARIANT}")
    return f"/clip/{clip.id}/{signed}/{MULTIVARIANT}"


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "24")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise BadRequest("limit must be an integer from 1 to 100", code=ErrorCode.INVALID_QUERY)
    return int(raw)


@routes.get("/api/clips")
@contract(
    summary="Published product clips of public streams, newest first (the moments shelf)",
    params=[Param("limit", type=Limit, default=24)],
    responses={200: ClipList},
    errors=[ErrorCode.INVALID_QUERY],
    auth=Auth.OPTIONAL,
)
async def list_clips(request: web.Request) -> web.Response:
    clips = await request.app[CLIPS].published(_limit(request))
    return json_response(ClipList(await _infos(request, clips, public_only=True)))


@routes.get("/api/products/{sku}/clips")
@contract(
    summary="A product's published clips of public streams, newest first",
    params=[Param("limit", type=Limit, default=24)],
    responses={200: ClipList},
    errors={ErrorCode.INVALID_QUERY: "a bad limit", ErrorCode.UNKNOWN_SKU: "not a SKU"},
    auth=Auth.OPTIONAL,
)
async def product_clips(request: web.Request) -> web.Response:
    sku = request.match_info["sku"]
    limit = _limit(request)
    if not is_sku(sku):
        raise NotFound(f"no product {sku!r}", code=ErrorCode.UNKNOWN_SKU)
    clips = await request.app[CLIPS].published(limit, sku=sku)
    return json_response(ClipList(await _infos(request, clips, public_only=True)))


def _require_seller(request: web.Request, stream: Stream) -> None:
    caller = identity(request)
    caller.require_identity()
    if not (
        caller.role is Role.ADMIN or (caller.role is Role.SELLER and caller.sub == stream.seller_id)
    ):
        raise Forbidden("only the stream's seller or an admin may manage its clips")


@routes.get("/api/streams/{stream_id}/clips")
@contract(
    summary="Every clip of a stream, whatever its state (its seller, or an admin)",
    responses={200: ClipList},
    errors={
        ErrorCode.FORBIDDEN: "neither the stream's seller nor an admin",
        ErrorCode.STREAM_NOT_FOUND: "no such stream",
    },
    auth=Auth.REQUIRED,
)
async def stream_clips(request: web.Request) -> web.Response:
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    _require_seller(request, stream)
    clips = await request.app[CLIPS].of_stream(stream.id)
    return json_response(ClipList(await _infos(request, clips, public_only=False)))


async def _clip(request: web.Request) -> tuple[Clip, Stream]:
    clip = await request.app[CLIPS].get(request.match_info["clip_id"])
    stream = await request.app[STREAMS].find(clip.stream_id) if clip is not None else None
    if clip is None or stream is None:
        raise NotFound("no such clip", code=ErrorCode.CLIP_NOT_FOUND)
    return clip, stream


@routes.get("/api/clips/{clip_id}")
@contract(
    summary="One clip: for whoever may watch its stream if published; else its seller or an admin",
    responses={200: ClipInfo},
    errors={
        ErrorCode.UNAUTHORIZED: "a private stream's clip and no token",
        ErrorCode.FORBIDDEN: "the token may not watch this private stream",
        ErrorCode.CLIP_NOT_FOUND: "no such clip (or not published, and not the caller's)",
    },
    auth=Auth.OPTIONAL,
)
async def get_clip(request: web.Request) -> web.Response:
    clip, stream = await _clip(request)
    caller = identity(request)
    if clip.state is not ClipState.PUBLISHED and not caller.can_manage(stream.id, stream.seller_id):
        raise NotFound("no such clip", code=ErrorCode.CLIP_NOT_FOUND)
    if not stream.public:
        require_watch(caller, stream)
    [info] = await _infos(request, [clip], public_only=False)
    return json_response(info)


@routes.patch("/api/clips/{clip_id}")
@contract(
    summary="Trim, publish, hide a clip (the stream's seller, or an admin)",
    description="start_s and end_s stay within the pinned span it was cut from "
    "(span_start_s..span_end_s), at least half a second apart; state is draft, published "
    "or hidden (only published clips are listed).",
    body=ClipPatch,
    responses={200: ClipInfo},
    errors={
        ErrorCode.MALFORMED_JSON: "not JSON",
        ErrorCode.INVALID_FIELD: "not a clip patch (start_s, end_s, state)",
        ErrorCode.FORBIDDEN: "neither the stream's seller nor an admin",
        ErrorCode.CLIP_NOT_FOUND: "no such clip",
        ErrorCode.INVALID_TRIM: "start/end outside the recorded span, or under 0.5 s apart",
    },
    auth=Auth.REQUIRED,
)
async def patch_clip(request: web.Request) -> web.Response:
    clip, stream = await _clip(request)
    _require_seller(request, stream)
    patch = await read_json(request, ClipPatch)
    start = clip.start_s if patch.start_s is None else round(patch.start_s, 3)
    end = clip.end_s if patch.end_s is None else round(patch.end_s, 3)
    if not clip.span_start_s <= start < end <= clip.span_end_s or end - start < 0.5:
        raise Unprocessable(
            f"a clip runs within {clip.span_start_s}..{clip.span_end_s} s, at least 0.5 s",
            code=ErrorCode.INVALID_TRIM,
        )
    state = patch.state if patch.state is not None else clip.state
    changed = msgspec.structs.replace(clip, start_s=start, end_s=end, state=state)
    await request.app[CLIPS].update(changed)
    [info] = await _infos(request, [changed], public_only=False)
    return json_response(info)


@routes.get(f"/clip/{{clip_id}}/{MULTIVARIANT}")
@routes.get(f"/clip/{{clip_id}}/{VIDEO_PLAYLIST}")
@routes.get(f"/clip/{{clip_id}}/{AUDIO_PLAYLIST}")
@routes.get(f"{_SIGNED}/{MULTIVARIANT}")
@routes.get(f"{_SIGNED}/{VIDEO_PLAYLIST}")
@routes.get(f"{_SIGNED}/{AUDIO_PLAYLIST}")
@contract(
    summary="A clip's VOD playlists: a slice of its replay's segments (EXT-X-ENDLIST)",
    description="index.m3u8 is the multivariant playlist of video.m3u8 and, when the "
    "replay has audio, audio.m3u8 (the same segments of both tracks). The same access "
    "rules as the replay: a private stream's clip needs a token that may watch it, or "
    "comes through the signed, expiring path its playlist_url gives (signed/{expires}/"
    "{signature}/, which a player can load without a token); its segment URIs are then "
    "the replay's signed paths.",
    responses={
        200: Reply(
            None,
            "the playlist; cached an hour, with an ETag",
            media_type=PLAYLIST_TYPE,
            headers={"ETag": "the same for the same bytes", "Cache-Control": "public, ..."},
        ),
        304: Reply(None, "If-None-Match names the playlist's ETag"),
    },
    errors={
        ErrorCode.UNAUTHORIZED: "a private stream's clip and no token",
        ErrorCode.FORBIDDEN: "the token may not watch this private stream",
        ErrorCode.PLAYBACK_URL_INVALID: "the expiry or signature is not one this server made "
        "for this clip's stream (the signed way in)",
        ErrorCode.PLAYBACK_URL_EXPIRED: "ask GET /api/clips/{clip_id} for a new playlist_url",
        ErrorCode.CLIP_NOT_FOUND: "no such clip, or its replay's files are gone; "
        "audio.m3u8 of a video-only replay",
    },
    auth=Auth.OPTIONAL,
)
async def clip_playlist(request: web.Request) -> web.StreamResponse:
    clip, stream = await _clip(request)
    prefix = f"/replay/{stream.id}/"
    signature = request.match_info.get("signature")
    if signature is not None:
        request.app[REPLAY_PLAYBACK].check(stream.id, request.match_info["expires"], signature)
    if not stream.public:
        if signature is None:
            require_watch(identity(request), stream)
        path, _ = request.app[REPLAY_PLAYBACK].sign(stream.id)
        prefix = "/replay/" + path.removeprefix("/hls/").removesuffix("index.m3u8")
    replays = request.app[REPLAYS]
    record = await replays.get(stream.id)
    if record is None or not record.ended:
        raise NotFound("this clip's replay is gone", code=ErrorCode.CLIP_NOT_FOUND)
    if not replays.has_files(stream.id):
        forwarded = await replays.forward(request, record)
        if forwarded is not None:
            return forwarded
    recording = await replays.recording(stream.id)
    if recording is None:
        raise NotFound("this clip's replay files are not here", code=ErrorCode.CLIP_NOT_FOUND)
    playlist = slice_set(recording, clip.start_s, clip.end_s, prefix).get(
        request.path.rsplit("/", 1)[-1]
    )
    if playlist is None:
        raise NotFound("this clip has no audio", code=ErrorCode.CLIP_NOT_FOUND)
    headers = {"ETag": playlist.etag, "Cache-Control": "public, max-age=3600"}
    if not stream.public or signature is not None:
        headers["Cache-Control"] = "private, max-age=60"
    if request.headers.get("If-None-Match") == playlist.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=playlist.body, content_type=PLAYLIST_TYPE, headers=headers)
