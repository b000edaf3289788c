"""The replay endpoints: the VOD playlist and its files, the replay's info and the list
of recent replays, and a replay's deletion.

* ``/replay/{stream id}/index.m3u8``: the multivariant playlist of the replay's video
  (``video.m3u8``) and, where it has it, audio (``audio.m3u8``), both VOD media
  playlists (``EXT-X-PLAYLIST-TYPE:VOD``, ``EXT-X-ENDLIST``; see
  :mod:`livecast.replay.variants`); ``init-*.mp4``, ``seg-*.m4s``, ``audio-init-*.mp4``,
  ``audio-seg-*.m4s`` and ``poster.jpg`` beside them. The media files and the poster are
  immutable (cached a year); the playlists are cached an hour once every run recording
  the stream has finished, a few seconds before. Every answer has an ETag and
  ``Access-Control-Allow-Origin: *``.
* The same rules as live HLS: a public stream's replay plays anonymously; a private
  one's needs a token that may watch the stream, or a signed, expiring URL
  (``/replay/{id}/signed/{expires}/{signature}/...``, from ``GET /api/streams/{id}/replay``).
* Any node answers: from the files if it has them (its own, or a shared directory),
  else by forwarding the request to the node that wrote them.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.auth import Role
from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest, Conflict, Forbidden, NotFound
from livecast.hls.routes import PLAYLIST_TYPE
from livecast.http import identity, json_response
from livecast.ingest.whep import require_watch
from livecast.inventory.money import Money
from livecast.inventory.service import INVENTORY
from livecast.openapi import Auth, Param, Reply, contract
from livecast.replay.keys import REPLAY_PLAYBACK, REPLAYS
from livecast.replay.moments import DealStart, deal_starts, pinned_spans
from livecast.replay.poster import POSTER
from livecast.replay.store import ReplayRecord
from livecast.replay.variants import AUDIO_DIR, AUDIO_PLAYLIST, MULTIVARIANT, VIDEO_PLAYLIST
from livecast.streams.registry import IsoTime, Stream, StreamState, iso_time
from livecast.timeline.service import TIMELINE

__all__ = ["Replay", "ReplayList", "ReplayMoment", "cors_headers", "routes"]

routes = web.RouteTableDef()

_IMMUTABLE: Final = 31_536_000
_FILE = re.compile(
    r"(?:audio-)?(?:init-[0-9a-f]{8}-\d{1,6}\.mp4|seg-[0-9a-f]{8}-\d{1,12}\.m4s)|poster\.jpg"
)
_SIGNED = "/replay/{stream_id}/signed/{expires}/{signature}"
Limit = Annotated[int, msgspec.Meta(ge=1, le=100)]


class ReplayMoment(msgspec.Struct, frozen=True, kw_only=True):
    """A product on the replay's timeline: where the host featured it or ran a deal on it."""

    kind: Annotated[
        Literal["featured", "pinned", "deal"],
        msgspec.Meta(
            description="featured: one of the stream's products (at 0); pinned: the host "
            "pinned it (until_s: to the next pin or unpin); deal: a deal on it started."
        ),
    ]
    sku: str
    title: str
    image_url: str | None
    price: Annotated[Money, msgspec.Meta(description="The product's price now (deals are over).")]
    at_s: Annotated[float, msgspec.Meta(description="Its position on the replay, in seconds.")]
    deal_id: str | None = None
    until_s: Annotated[
        float | None, msgspec.Meta(description="Where a pinned span ends, in seconds.")
    ] = None


class Replay(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    title: str
    seller_name: str
    public: bool
    playlist_url: Annotated[
        str, msgspec.Meta(description="The VOD playlist (signed for a private stream).")
    ]
    poster_url: str | None
    watch_url: str
    duration_s: float
    started_at: IsoTime | None
    ended_at: IsoTime
    moments: Annotated[
        list[ReplayMoment],
        msgspec.Meta(description="Products on its timeline, in order (one replay's info only)."),
    ] = []


class ReplayList(msgspec.Struct, frozen=True):
    replays: list[Replay]


def _urls(request: web.Request, stream: Stream, record: ReplayRecord) -> tuple[str, str | None]:
    prefix = f"/replay/{stream.id}"
    if not stream.public:
        path, _ = request.app[REPLAY_PLAYBACK].sign(stream.id)
        prefix = "/replay/" + path.removeprefix("/hls/").removesuffix("/index.m3u8")
    return f"{prefix}/index.m3u8", f"{prefix}/{POSTER}" if record.poster else None


def _replay(
    request: web.Request,
    stream: Stream,
    record: ReplayRecord,
    moments: list[ReplayMoment] | None = None,
) -> Replay:
    playlist, poster = _urls(request, stream, record)
    return Replay(
        stream_id=stream.id,
        title=stream.title,
        seller_name=stream.seller_name,
        public=stream.public,
        playlist_url=playlist,
        poster_url=poster,
        watch_url=f"/watch/{stream.id}",
        duration_s=record.duration_s,
        started_at=iso_time(record.started_ms),
        ended_at=iso_time(record.ended_ms) or "",
        moments=moments or [],
    )


async def _moments(
    request: web.Request, stream: Stream, record: ReplayRecord
) -> list[ReplayMoment]:
    """The products on the replay's timeline, with each product's price now: the
    stream's featured products at its start, then, from the stream's stored timeline,
    each pin at its media time (to the next pin or unpin) and each deal at its start.
    A stream whose timeline is empty (recorded before timelines were kept, or past
    ``timeline.retention_s``) has its deals placed from the deals themselves."""
    timeline = request.app[TIMELINE]
    entries = await timeline.entries(stream.id, limit=timeline.max_entries)
    spans = pinned_spans(entries, record)
    if entries:
        deals = deal_starts(entries, record)
    else:
        deals = [
            DealStart(d.sku, d.id, record.position(d.starts_at_ms / 1000))
            for d in await request.app[INVENTORY].deals.for_stream(stream.id)
            if record.started_ms is not None
            and record.ended_ms is not None
            and d.starts_at_ms <= record.ended_ms
        ]
    skus = [*stream.featured_skus, *(s.sku for s in spans), *(d.sku for d in deals)]
    products = await request.app[INVENTORY].catalog.find_many(skus)
    found: list[ReplayMoment] = []

    def add(
        kind: Literal["featured", "pinned", "deal"], sku: str, at_s: float, **more: Any
    ) -> None:
        product = products.get(sku)
        if product is not None:
            found.append(
                ReplayMoment(
                    kind=kind,
                    sku=sku,
                    title=product.title,
                    image_url=product.image_url,
                    price=product.price,
                    at_s=at_s,
                    **more,
                )
            )

    for sku in stream.featured_skus:
        add("featured", sku, 0.0)
    for span in spans:
        add("pinned", span.sku, span.start_s, until_s=span.end_s)
    for deal in deals:
        add("deal", deal.sku, deal.at_s, deal_id=deal.deal_id)
    found.sort(key=lambda m: m.at_s)
    return found


async def _ended_replay(request: web.Request, stream_id: str) -> tuple[Stream, ReplayRecord]:
    stream = await request.app[STREAMS].get(stream_id)
    record = await request.app[REPLAYS].get(stream.id)
    if record is None or not record.ended or not record.segments:
        raise NotFound(f"stream {stream_id!r} has no replay", code=ErrorCode.REPLAY_NOT_FOUND)
    return stream, record


@routes.get("/api/replays")
@contract(
    summary="Recent replays, the most recently ended first",
    description="Public streams' replays, and the private ones the caller may manage.",
    params=[Param("limit", type=Limit, default=24)],
    responses={200: ReplayList},
    errors=[ErrorCode.INVALID_QUERY],
    auth=Auth.OPTIONAL,
)
async def list_replays(request: web.Request) -> web.Response:
    raw = request.query.get("limit", "24")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise BadRequest("limit must be an integer from 1 to 100", code=ErrorCode.INVALID_QUERY)
    caller = identity(request)
    records = [r for r in await request.app[REPLAYS].recent(int(raw)) if r.segments]
    streams = await asyncio.gather(*(request.app[STREAMS].find(r.stream_id) for r in records))
    replays = [
        _replay(request, stream, record)
        for stream, record in zip(streams, records, strict=True)
        if stream is not None and (stream.public or caller.can_manage(stream.id, stream.seller_id))
    ]
    return json_response(ReplayList(replays))


@routes.get("/api/streams/{stream_id}/replay")
@contract(
    summary="A stream's replay: where it plays, its poster, length and product timeline",
    description="For whoever may watch the stream. A private stream's playlist_url and "
    "poster_url are signed, expiring paths (hls.playback_url_ttl_s).",
    responses={200: Replay},
    errors={
        ErrorCode.UNAUTHORIZED: "a private stream and no token",
        ErrorCode.FORBIDDEN: "the token may not watch this private stream",
        ErrorCode.STREAM_NOT_FOUND: "no such stream",
        ErrorCode.REPLAY_NOT_FOUND: "the stream has not ended, was not recorded, or its "
        "replay was deleted or expired",
    },
    auth=Auth.OPTIONAL,
)
async def get_replay(request: web.Request) -> web.Response:
    stream, record = await _ended_replay(request, request.match_info["stream_id"])
    require_watch(identity(request), stream)
    return json_response(_replay(request, stream, record, await _moments(request, stream, record)))


@routes.delete("/api/streams/{stream_id}/replay")
@contract(
    summary="Delete a stream's replay (its seller, or an admin)",
    description="The replay is gone for every node at once; its files are removed now on "
    "this node (or the shared directory) and at the next sweep on the others.",
    responses={204: Reply(None, "deleted")},
    errors={
        ErrorCode.FORBIDDEN: "neither the stream's seller nor an admin",
        ErrorCode.STREAM_NOT_FOUND: "no such stream",
        ErrorCode.REPLAY_NOT_FOUND: "the stream has no replay (or it was deleted)",
        ErrorCode.ILLEGAL_STATE: "the stream has not ended: it is still being recorded",
    },
    auth=Auth.REQUIRED,
)
async def delete_replay(request: web.Request) -> web.Response:
    caller = identity(request)
    caller.require_identity()
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    if not (
        caller.role is Role.ADMIN or (caller.role is Role.SELLER and caller.sub == stream.seller_id)
    ):
        raise Forbidden("only the stream's seller or an admin may delete its replay")
    if stream.state is not StreamState.ENDED:
        raise Conflict(
            "the stream has not ended; its replay is still being recorded",
            code=ErrorCode.ILLEGAL_STATE,
        )
    if not await request.app[REPLAYS].delete(stream.id):
        raise NotFound(f"stream {stream.id!r} has no replay", code=ErrorCode.REPLAY_NOT_FOUND)
    return web.Response(status=204)


# -- the playlist and its files ---------------------------------------------------------------

_ACCESS_ERRORS = {
    ErrorCode.UNAUTHORIZED: "a private stream and no token (the token way in)",
    ErrorCode.FORBIDDEN: "the token may not watch this private stream",
    ErrorCode.PLAYBACK_URL_INVALID: "the expiry or signature is not one this server made "
    "for this stream's replay (the signed way in)",
    ErrorCode.PLAYBACK_URL_EXPIRED: "ask GET /api/streams/{stream_id}/replay for a new one",
}
_ETAG = {"ETag": "the same for the same bytes, whichever node answers"}


async def _access(request: web.Request) -> ReplayRecord:
    """The replay's record, once the caller may watch it (by its token, or the signed
    path it came through); 404 if there is no replay to play."""
    stream_id = request.match_info["stream_id"]
    signature = request.match_info.get("signature")
    if signature is not None:
        request.app[REPLAY_PLAYBACK].check(stream_id, request.match_info["expires"], signature)
    record = await request.app[REPLAYS].get(stream_id)
    if record is None or not record.ended:
        raise NotFound(f"stream {stream_id!r} has no replay", code=ErrorCode.REPLAY_NOT_FOUND)
    if signature is None:
        stream = await request.app[STREAMS].find(stream_id)
        if stream is None:
            raise NotFound(f"stream {stream_id!r} has no replay", code=ErrorCode.REPLAY_NOT_FOUND)
        if not stream.public:
            require_watch(identity(request), stream)
    return record


def _max_age(request: web.Request, seconds: int) -> int:
    """``seconds``, but never past a signed URL's expiry."""
    expires = request.match_info.get("expires")
    if expires is None:
        return seconds
    return max(0, min(seconds, int(expires) - int(time.time())))


def _answer(
    request: web.Request, body: bytes, content_type: str, etag: str, max_age: int, immutable: bool
) -> web.Response:
    cache = f"public, max-age={_max_age(request, max_age)}" + (", immutable" if immutable else "")
    headers = {"ETag": etag, "Cache-Control": cache}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type=content_type, headers=headers)


@routes.get(f"{_SIGNED}/{MULTIVARIANT}")
@routes.get(f"/replay/{{stream_id}}/{MULTIVARIANT}")
@routes.get(f"{_SIGNED}/{VIDEO_PLAYLIST}")
@routes.get(f"/replay/{{stream_id}}/{VIDEO_PLAYLIST}")
@routes.get(f"{_SIGNED}/{AUDIO_PLAYLIST}")
@routes.get(f"/replay/{{stream_id}}/{AUDIO_PLAYLIST}")
@contract(
    summary="A replay's VOD playlists: index.m3u8 (multivariant), video.m3u8, audio.m3u8",
    description="index.m3u8 is the multivariant playlist: EXT-X-STREAM-INF (CODECS, "
    "RESOLUTION, BANDWIDTH) of video.m3u8 and, when the replay has audio matching its "
    "video segment for segment, EXT-X-MEDIA:TYPE=AUDIO of audio.m3u8. Both are VOD media "
    "playlists (EXT-X-PLAYLIST-TYPE:VOD, EXT-X-ENDLIST) of every segment the stream's "
    "LL-HLS had, with EXT-X-MAP, EXT-X-PROGRAM-DATE-TIME and EXT-X-DISCONTINUITY where "
    "the publisher came back. Under /replay/{stream_id}/signed/{expires}/{signature}/ the "
    "same, with no token.",
    responses={
        200: Reply(
            None,
            "the playlist; cached an hour once recording has finished",
            media_type=PLAYLIST_TYPE,
            headers={**_ETAG, "Cache-Control": "public, max-age=..."},
        ),
        304: Reply(None, "If-None-Match names the playlist's ETag", headers=_ETAG),
    },
    errors={
        **_ACCESS_ERRORS,
        ErrorCode.REPLAY_NOT_FOUND: "no replay (yet, or any more); audio.m3u8 of a "
        "video-only replay",
    },
    auth=Auth.OPTIONAL,
)
async def vod_playlist(request: web.Request) -> web.StreamResponse:
    record = await _access(request)
    replays = request.app[REPLAYS]
    playlists = await replays.playlists(record.stream_id)
    if playlists is None:
        forwarded = await replays.forward(request, record)
        if forwarded is not None:
            return forwarded
        raise NotFound("this replay's files are not here", code=ErrorCode.REPLAY_NOT_FOUND)
    playlist = playlists.get(request.path.rsplit("/", 1)[-1])
    if playlist is None:
        raise NotFound("this replay has no audio", code=ErrorCode.REPLAY_NOT_FOUND)
    max_age = 3600 if record.open == 0 else 5
    return _answer(request, playlist.body, PLAYLIST_TYPE, playlist.etag, max_age, False)


@routes.get(f"{_SIGNED}/{{name}}")
@routes.get("/replay/{stream_id}/{name}")
@contract(
    summary="An init segment, segment (fMP4) or the poster (JPEG) of a replay",
    description="init-*.mp4, seg-*.m4s (video), audio-init-*.mp4, audio-seg-*.m4s "
    "(audio) or poster.jpg; immutable.",
    responses={
        200: Reply(
            None,
            "the file; Cache-Control: public, max-age=31536000, immutable",
            media_type=("video/mp4", "image/jpeg"),
            headers=_ETAG,
        ),
        304: Reply(None, "If-None-Match names the file's ETag", headers=_ETAG),
    },
    errors={**_ACCESS_ERRORS, ErrorCode.REPLAY_NOT_FOUND: "no replay, or no such file in it"},
    auth=Auth.OPTIONAL,
)
async def replay_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if _FILE.fullmatch(name) is None:
        raise NotFound("no such replay file", code=ErrorCode.REPLAY_NOT_FOUND)
    record = await _access(request)
    replays = request.app[REPLAYS]
    if not replays.has_files(record.stream_id):
        forwarded = await replays.forward(request, record)
        if forwarded is not None:
            return forwarded
    directory = replays.directory(record.stream_id)
    if name.startswith("audio-"):
        directory /= AUDIO_DIR
    data = await asyncio.to_thread(_read, directory / name)
    if data is None:
        raise NotFound("no such replay file", code=ErrorCode.REPLAY_NOT_FOUND)
    content_type = "image/jpeg" if name == POSTER else "video/mp4"
    return _answer(request, data, content_type, f'"{name}"', _IMMUTABLE, True)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


@routes.route("OPTIONS", f"{_SIGNED}/{{name}}")
@routes.route("OPTIONS", "/replay/{stream_id}/{name}")
@contract(
    summary="CORS preflight for every /replay/ path",
    description="A player on any origin may send Authorization and If-None-Match.",
    responses={
        204: Reply(
            None,
            "allowed",
            headers={
                "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, If-None-Match",
                "Access-Control-Max-Age": "86400",
            },
        )
    },
    redis=False,
)
async def preflight(request: web.Request) -> web.Response:
    methods = "GET, HEAD, OPTIONS"
    return web.Response(
        status=204,
        headers={
            "Allow": methods,
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": "Authorization, If-None-Match",
            "Access-Control-Max-Age": "86400",
        },
    )


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Players on any origin may fetch replay playlists and media."""
    if request.path.startswith("/replay/"):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = "ETag"
