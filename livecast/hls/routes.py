"""The LL-HLS endpoints: ``/hls/{stream id}/index.m3u8`` and the playlists and files it names.

* ``index.m3u8``, the stable URL, is the multivariant playlist: it names the current
  run's media playlists, ``video-{run}.m3u8`` and (with audio) ``audio-{run}.m3u8``,
  each a CMAF track with its init segments, segments and parts.
* A media playlist answers at once, or, with ``_HLS_msn`` (and ``_HLS_part``), when that
  segment (part) exists: the playlist as it was made then, so identical blocking
  requests get identical bytes. The wait is bounded by three target durations (then
  503 with ``Retry-After``); nonsense values are 400 and wait for nothing.
* Init segments, segments and parts are immutable: cached by anyone for a year. A
  request for the part the playlist hints (``EXT-X-PRELOAD-HINT``) waits for it.
* Playlists may be cached for about a part's duration, blocking answers for as long
  as their segment stays in the window (they never change); every answer has an ETag
  and ``Access-Control-Allow-Origin: *``, and ``OPTIONS`` answers a CORS preflight.

Any node answers: a stream packaged on another node (its origin) is answered by
forwarding the request there (:mod:`livecast.hls.forward`).

Public streams play anonymously; a private stream needs a token that may watch it, or
a signed, expiring playback URL (``GET /api/streams/{id}/playback``, the same files under
``/hls/{id}/signed/{expires}/{signature}/``: see :mod:`livecast.hls.signing`), which a
shared CDN can pass through and cache.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Annotated, Final, Literal

import msgspec
from aiohttp import web

from livecast.appkeys import STREAMS
from livecast.error_codes import ErrorCode
from livecast.errors import BadRequest, NotFound
from livecast.hls.forward import FORWARDED_HEADER
from livecast.hls.keys import FORWARDER, PACKAGING, PLAYBACK
from livecast.hls.packager import Packager, Playlist
from livecast.hls.packaging import Packaged
from livecast.http import error_response, identity, json_response
from livecast.ingest.whep import require_watch
from livecast.openapi import Auth, Param, Reply, contract
from livecast.streams.registry import Stream, StreamRegistry

__all__ = ["cors_headers", "routes"]

routes = web.RouteTableDef()

PLAYLIST_TYPE: Final = "application/vnd.apple.mpegurl"
_IMMUTABLE: Final = "public, max-age=31536000, immutable"
_FILE = re.compile(
    r"(?:audio-)?(?:init-(?P<init_run>[0-9a-f]{8})-\d{1,6}\.mp4"
    r"|(?:seg|(?P<part>part))-(?P<run>[0-9a-f]{8})-(?P<number>\d{1,12})\.m4s)"
)
_NUMBER = re.compile(r"\d{1,12}")
# the query every LL-HLS player sends, read without parsing the query into a mapping
_BLOCKING_QUERY = re.compile(r"_HLS_msn=(\d{1,12})(?:&_HLS_part=(\d{1,12}))?")
# a stream's record (its visibility) is read again this often (a public one may turn private)
_RECHECK_S: Final = 5.0


async def _packaged(request: web.Request) -> Packaged | None:
    """The stream's packaging here, once the caller may watch it (by its token, or by the
    signed path it came through); None if it is packaged elsewhere, or nowhere (an
    ended playlist lingering here gives way to a node the stream is live on now)."""
    stream_id = request.match_info["stream_id"]
    signature = request.match_info.get("signature")
    if signature is not None:
        request.app[PLAYBACK].check(stream_id, request.match_info["expires"], signature)
    packaging = request.app.get(PACKAGING)
    packaged = packaging.streams.get(stream_id) if packaging is not None else None
    if packaged is None:
        return None
    if (
        packaged.ended_at is not None
        and FORWARDED_HEADER not in request.headers
        and await request.app[FORWARDER].origin(stream_id) is not None
    ):
        return None
    if signature is not None:
        return packaged
    stream = packaged.stream
    if stream is None or time.monotonic() - packaged.stream_read_at > _RECHECK_S:
        stream = await _read_stream(request.app[STREAMS], packaged, stream_id)
    if not stream.public:  # a public stream ignores tokens: no need to read one
        require_watch(identity(request), stream)
    return packaged


async def _read_stream(streams: StreamRegistry, packaged: Packaged, stream_id: str) -> Stream:
    """The stream's record, read once for every request that arrives while it is read
    (thousands of players may ask within one Redis round trip when it falls due)."""
    reading = packaged.stream_reading
    while reading is not None:
        try:
            return _found(await asyncio.shield(reading), stream_id)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not reading.cancelled() or (task is not None and task.cancelling()):
                raise
            reading = packaged.stream_reading  # its reader went away: read here, or await anew
    reading = packaged.stream_reading = asyncio.get_running_loop().create_future()
    try:
        found = await streams.find(stream_id)
    except Exception as exc:
        reading.set_exception(exc)
        reading.exception()  # retrieved: the waiters, if any, raise it too
        raise
    except BaseException:
        reading.cancel()
        raise
    else:
        reading.set_result(found)
        if found is not None:
            packaged.stream = found
            packaged.stream_read_at = time.monotonic()
    finally:
        packaged.stream_reading = None
    return _found(found, stream_id)


def _found(stream: Stream | None, stream_id: str) -> Stream:
    if stream is None:
        raise NotFound(f"no stream {stream_id!r}", code=ErrorCode.STREAM_NOT_FOUND)
    return stream


async def _forward(request: web.Request) -> web.StreamResponse:
    """The answer of the node that packages the stream (:mod:`livecast.hls.forward`)."""
    return await request.app[FORWARDER].forward(request, request.match_info["stream_id"])


def _query_number(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not _NUMBER.fullmatch(raw):
        raise BadRequest(
            f"{name} must be a whole number, not {raw[:20]!r}", code=ErrorCode.INVALID_HLS_REQUEST
        )
    return int(raw)


def _blocking_query(request: web.Request) -> tuple[int | None, int | None]:
    """``_HLS_msn`` and ``_HLS_part``, if asked for."""
    raw = request.rel_url.raw_query_string
    if not raw:
        return None, None
    usual = _BLOCKING_QUERY.fullmatch(raw)
    if usual is not None:
        return int(usual[1]), None if usual[2] is None else int(usual[2])
    msn = _query_number(request, "_HLS_msn")
    part = _query_number(request, "_HLS_part")
    if part is not None and msn is None:
        raise BadRequest("_HLS_part needs _HLS_msn", code=ErrorCode.INVALID_HLS_REQUEST)
    return msn, part


def _skip_query(request: web.Request) -> str | None:
    """``_HLS_skip`` (a delta update, RFC 8216bis 6.2.5.1): ``YES``, ``v2`` or absent."""
    skip = request.query.get("_HLS_skip")
    if skip is not None and skip not in ("YES", "v2"):
        raise BadRequest("_HLS_skip is YES or v2", code=ErrorCode.INVALID_HLS_REQUEST)
    return skip


def _wait_limit(packager: Packager) -> float:
    return 3.0 * packager.target_duration


async def _until(packager: Packager, ready: Callable[[], bool], within: float) -> bool:
    """Whether ``ready()`` came true within ``within`` seconds, looked at on each change."""
    if ready():
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        change = packager.next_change()
        timer = loop.call_at(deadline, _resolve, change)
        try:
            await change
        finally:
            timer.cancel()
        if ready():
            return True
        if loop.time() >= deadline:
            return False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _unavailable(message: str) -> web.Response:
    return error_response(
        ErrorCode.HLS_UNAVAILABLE, message, {"Retry-After": "1", "Cache-Control": "no-store"}
    )


def _max_age(request: web.Request, seconds: int) -> int:
    """``seconds``, but never past a signed URL's expiry: a CDN must not keep answering it."""
    expires = request.match_info.get("expires")
    if expires is None:
        return seconds
    return max(0, min(seconds, int(expires) - int(time.time())))


_SIGNED = "/hls/{stream_id}/signed/{expires}/{signature}"

# Both ways in: a token (or none, for a public stream) on /hls/{stream_id}/, or a signed
# playback URL (GET /api/streams/{stream_id}/playback), whose expiry and signature are in
# the path so that a CDN caches by path.
_ACCESS_ERRORS = {
    ErrorCode.UNAUTHORIZED: "a private stream and no token (the token way in)",
    ErrorCode.FORBIDDEN: "the token may not watch this private stream",
    ErrorCode.STREAM_NOT_FOUND: "no such stream",
    ErrorCode.PLAYBACK_URL_INVALID: "the expiry or signature is not one this server made "
    "for this stream (the signed way in)",
    ErrorCode.PLAYBACK_URL_EXPIRED: "ask GET /api/streams/{stream_id}/playback for a new one",
    ErrorCode.HLS_UNAVAILABLE: "the node packaging the stream cannot be reached; Retry-After",
}
_WAYS_IN = (
    " Under /hls/{stream_id}/signed/{expires}/{signature}/ the same, with no token, through "
    "a signed playback URL; Cache-Control max-age never reaches past its expiry. Any node "
    "answers: the one packaging the stream, or any other by forwarding the request there."
)
_ETAG = {"ETag": "the same for the same bytes, whichever node answers"}
_BLOCKING = Annotated[int, msgspec.Meta(ge=0)]


@routes.get(f"{_SIGNED}/index.m3u8")
@routes.get("/hls/{stream_id}/index.m3u8")
@contract(
    summary="LL-HLS multivariant playlist (RFC 8216bis)",
    description="The stable URL of a stream's LL-HLS: EXT-X-STREAM-INF (CODECS, RESOLUTION, "
    "BANDWIDTH) naming the video media playlist video-{run}.m3u8 and, when the stream has "
    "audio, EXT-X-MEDIA naming the audio one, audio-{run}.m3u8, as the AUDIO group. A new "
    "run (the stream started again here, or a returning publisher brought audio to a video-only "
    "run) is a new multivariant naming new media playlists." + _WAYS_IN,
    responses={
        200: Reply(
            None,
            "the multivariant playlist; cacheable about one part duration",
            media_type=PLAYLIST_TYPE,
            headers={**_ETAG, "Cache-Control": "public, max-age=..."},
        ),
        304: Reply(None, "If-None-Match names the playlist's ETag", headers=_ETAG),
    },
    errors={
        **_ACCESS_ERRORS,
        ErrorCode.HLS_NOT_FOUND: "no node packages the stream",
        ErrorCode.HLS_UNAVAILABLE: "no part yet within three target durations, or the node "
        "packaging the stream cannot be reached; Retry-After",
    },
    auth=Auth.OPTIONAL,
)
async def multivariant(request: web.Request) -> web.StreamResponse:
    packaged = await _packaged(request)
    if packaged is None:
        return await _forward(request)
    packager = packaged.packager
    found = packager.multivariant()
    if found is None and not await _until(
        packager, lambda: packager.multivariant() is not None, _wait_limit(packager)
    ):
        return _unavailable("no part is ready yet")
    found = packager.multivariant()
    assert found is not None
    return _playlist_response(request, found, max(1, round(packager.settings.part_s)))


def _playlist_response(request: web.Request, found: Playlist, max_age: int) -> web.Response:
    max_age = _max_age(request, max_age)
    headers = {"ETag": found.etag, "Cache-Control": f"public, max-age={max_age}"}
    if request.headers.get("If-None-Match") == found.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, content_type=PLAYLIST_TYPE, headers=headers)


def _run(packaged: Packaged, run: str) -> Packager:
    """The packager of run ``run`` of the stream here (the current one, or the one a
    returning publisher's audio replaced), else 404."""
    for packager in (packaged.packager, packaged.previous):
        if packager is not None and packager.run == run:
            return packager
    raise NotFound("no such HLS run here (or no longer)", code=ErrorCode.HLS_NOT_FOUND)


_MEDIA_PLAYLIST = "{rendition:video|audio}-{run:[0-9a-f]{8}}.m3u8"


@routes.get(f"{_SIGNED}/{_MEDIA_PLAYLIST}")
@routes.get(f"/hls/{{stream_id}}/{_MEDIA_PLAYLIST}")
@contract(
    summary="LL-HLS media playlist of one rendition (RFC 8216bis, CMAF)",
    description="video-{run}.m3u8 or audio-{run}.m3u8, as the multivariant playlist names "
    "them. With _HLS_msn (and _HLS_part) it answers once that segment (part) exists: "
    "blocking reload, with the playlist as it was then (identical bytes and ETag for "
    "identical requests). Both renditions have the same segment numbers and part indexes."
    + _WAYS_IN,
    params=[
        Param("_HLS_msn", type=_BLOCKING, description="wait for this media sequence number"),
        Param("_HLS_part", type=_BLOCKING, description="wait for this part of _HLS_msn"),
        Param(
            "_HLS_skip",
            type=Literal["YES", "v2"],
            description="a delta update: EXT-X-SKIP for the oldest segments (v2: also the "
            "date ranges unchanged since then)",
        ),
    ],
    responses={
        200: Reply(
            None,
            "the playlist; cacheable about one part duration (a blocking answer while its "
            "segment is in the window)",
            media_type=PLAYLIST_TYPE,
            headers={**_ETAG, "Cache-Control": "public, max-age=..."},
        ),
        304: Reply(None, "If-None-Match names the playlist's ETag", headers=_ETAG),
    },
    errors={
        **_ACCESS_ERRORS,
        ErrorCode.INVALID_HLS_REQUEST: "_HLS_msn/_HLS_part not whole numbers, _HLS_part "
        "alone, _HLS_msn more than two segments ahead, or _HLS_skip not YES or v2",
        ErrorCode.HLS_NOT_FOUND: "no node packages the stream, or not this run or rendition",
        ErrorCode.HLS_UNAVAILABLE: "no part yet, the awaited part did not come within three "
        "target durations, or the node packaging the stream cannot be reached; Retry-After",
    },
    auth=Auth.OPTIONAL,
)
async def media_playlist(request: web.Request) -> web.StreamResponse:
    msn, part = _blocking_query(request)
    skip = _skip_query(request)
    packaged = await _packaged(request)
    if packaged is None:
        return await _forward(request)
    info = request.match_info
    packager = _run(packaged, info["run"])
    rendition = packager.rendition(f"{info['rendition']}-{info['run']}.m3u8")
    if rendition is None:
        raise NotFound("this stream has no such rendition", code=ErrorCode.HLS_NOT_FOUND)
    found: Playlist | None
    if msn is None:
        found = rendition.playlist()
        if found is None and not await _until(
            packager, lambda: rendition.playlist() is not None, _wait_limit(packager)
        ):
            return _unavailable("no part is ready yet")
        found = rendition.playlist()
        max_age = max(1, round(packager.settings.part_s))
    else:
        found = rendition.blocking_playlist(msn, part)  # 400 before any wait
        if found is None:
            await _until(
                packager,
                lambda: rendition.blocking_playlist(msn, part) is not None,
                _wait_limit(packager),
            )
            found = rendition.blocking_playlist(msn, part)
        if found is None:
            return _unavailable(f"segment {msn} part {part} did not come in time")
        # the answer for (msn, part) never changes while msn is in the window
        max_age = rendition.target_duration * packager.settings.window
    assert found is not None
    return _playlist_response(request, found.for_skip(skip), max_age)


@routes.get(f"{_SIGNED}/{{name}}")
@routes.get("/hls/{stream_id}/{name}")
@contract(
    summary="An init segment, segment or part a media playlist names (CMAF fMP4)",
    description="init-*.mp4, seg-*.m4s or part-*.m4s of the video rendition, the same "
    "with audio- in front of the audio one; immutable. The hinted next part "
    "(EXT-X-PRELOAD-HINT) is answered once it exists." + _WAYS_IN,
    responses={
        200: Reply(
            None,
            "the file; Cache-Control: public, max-age=31536000, immutable",
            media_type="video/mp4",
            headers=_ETAG,
        ),
        304: Reply(None, "If-None-Match names the file's ETag", headers=_ETAG),
    },
    errors={
        **_ACCESS_ERRORS,
        ErrorCode.HLS_NOT_FOUND: "no such file, or it left the playlist window",
    },
    auth=Auth.OPTIONAL,
)
async def media_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    match = _FILE.fullmatch(name)
    if match is None:
        raise NotFound("no such HLS file", code=ErrorCode.HLS_NOT_FOUND)
    packaged = await _packaged(request)
    if packaged is None:
        return await _forward(request)
    packager = _run(packaged, match["init_run"] or match["run"])
    rendition = packager.rendition_of(name)
    if rendition is None:
        raise NotFound("this stream has no such rendition", code=ErrorCode.HLS_NOT_FOUND)
    data = rendition.file(name)
    if data is None and match["part"] is not None:
        number = int(match["number"])
        if rendition.may_come(number):
            await _until(
                packager,
                lambda: rendition.file(name) is not None or not rendition.may_come(number),
                _wait_limit(packager),
            )
            data = rendition.file(name)
    if data is None:
        raise NotFound("no such HLS file (or no longer)", code=ErrorCode.HLS_NOT_FOUND)
    cache = _IMMUTABLE
    if "expires" in request.match_info:
        cache = f"public, max-age={_max_age(request, 31_536_000)}, immutable"
    headers = {"ETag": f'"{name}"', "Cache-Control": cache}
    if request.headers.get("If-None-Match") == headers["ETag"]:
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type="video/mp4", headers=headers)


@routes.route("OPTIONS", f"{_SIGNED}/{{name}}")
@routes.route("OPTIONS", "/hls/{stream_id}/{name}")
@contract(
    summary="CORS preflight for every /hls/ path, the playlist too",
    description="A player on any origin may send Authorization and If-None-Match; "
    "answered by any node whatever the stream, cached a day.",
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
    """The CORS preflight a browser sends before a player on another origin sends a
    token (``Authorization``) or revalidates (``If-None-Match``): allowed for every
    path, answered by this node whatever the stream (never forwarded), cached a day."""
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


class Playback(msgspec.Struct):
    """Where a stream plays as LL-HLS without a token, until ``expires_at``."""

    url: str
    expires_at: int


@routes.get("/api/streams/{stream_id}/playback")
@contract(
    summary="A signed, expiring LL-HLS playlist URL",
    description="For whoever may watch the stream (anyone, for a public one): the same "
    "playlist and files under /hls/{stream_id}/signed/{expires}/{signature}/, with no "
    "token, through any CDN. Expiries are rounded up to five minutes so that viewers "
    "share URLs; the stream need not be live yet.",
    responses={
        200: Reply(
            Playback,
            "the URL (a path on this node) and its expiry in Unix seconds "
            "(hls.playback_url_ttl_s from now, rounded up)",
        )
    },
    errors={
        ErrorCode.UNAUTHORIZED: "a private stream and no token",
        ErrorCode.FORBIDDEN: "the token may not watch this private stream",
        ErrorCode.STREAM_NOT_FOUND: "no such stream",
    },
    auth=Auth.OPTIONAL,
)
async def playback(request: web.Request) -> web.Response:
    """A signed, expiring playlist URL for whoever may watch the stream (anyone, for a
    public one): what a player that cannot send a token, or a CDN, plays a private stream
    through. It is relative to this node; the stream need not be live yet."""
    stream = await request.app[STREAMS].get(request.match_info["stream_id"])
    require_watch(identity(request), stream)
    path, expires = request.app[PLAYBACK].sign(stream.id)
    return json_response(Playback(url=path, expires_at=expires))


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Players on any origin may fetch playlists and media (hls.js uses fetch/XHR)."""
    if request.path.startswith("/hls/"):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = "ETag, Retry-After"
