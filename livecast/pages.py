"""The web pages: the directory, watch, studio and control panel, and the files they load.

The pages are plain HTML, CSS and ES modules under ``web/`` (no build step). In a source
checkout they are read from ``<repo>/web``; ``pip install .`` installs the same tree as data
files under ``<prefix>/share/livecast/web`` (see ``[tool.setuptools.data-files]``), and
:func:`web_root` finds whichever is present.

Routes::

    GET /                    the stream directory
    GET /watch/{id}          the viewer's page
    GET /studio/{id}         the seller's go-live page
    GET /control/{id}        the host's control panel
    GET /static/{path}       files under web/ (known types only)
    GET /api/directory       the directory's streams, live ones with their viewer counts
    GET /api/dev             which development conveniences are on
    POST /api/dev/tokens     {"name"} -> a viewer token, only with [dev] mint_viewer_tokens

The HTML never embeds data: each page reads its stream id from the URL and talks to the
API, so one file per page serves every stream. Pages carry a strict Content-Security-Policy
(no inline script, no ``eval``), a second line of defence behind the pages' rule of
inserting user text only as text. Everything is served with ``Cache-Control: no-cache``
and an ETag, so a browser revalidates instead of running stale modules after an upgrade.
"""

from __future__ import annotations

import asyncio
import sys
import sysconfig
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from livecast.appkeys import SETTINGS, STREAMS, TOKENS
from livecast.auth import Role
from livecast.chat import CHAT
from livecast.display_text import check_line
from livecast.error_codes import ErrorCode
from livecast.errors import NotFound, Unprocessable
from livecast.http import identity, json_response, read_json
from livecast.ids import is_stream_id, new_id
from livecast.openapi import Auth, Reply, contract
from livecast.streams.registry import Stream

__all__ = ["CONTENT_TYPES", "PAGES", "WEB_ROOT", "routes", "web_root"]

_INSTALLED = Path("share") / "livecast" / "web"

# Served extensions and their types; anything else under web/ is not served.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}

# Page route -> the HTML file under web/.
PAGES = {
    "/": "index.html",
    "/watch/{stream_id}": "watch.html",
    "/studio/{stream_id}": "studio.html",
    "/control/{stream_id}": "control.html",
}

_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob: https: http:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
_COMMON_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
_PAGE_HEADERS = {
    **_COMMON_HEADERS,
    "Content-Security-Policy": _CSP,
    "Referrer-Policy": "no-referrer",
}

WEB_ROOT = web.AppKey("web_root", Path)
_DIRECTORY_LIMIT = 100


def web_root() -> Path:
    """Where the page files are: the source checkout's ``web/``, else the installed copy."""
    here = Path(__file__).resolve().parent
    candidates = [
        here.parent / "web",
        # <prefix>/lib/pythonX.Y/site-packages/livecast -> <prefix>/share/livecast/web
        here.parents[3] / _INSTALLED if len(here.parents) > 3 else None,
        Path(sys.prefix) / _INSTALLED,
        Path(sysconfig.get_path("data")) / _INSTALLED,
        Path(sysconfig.get_path("data", sysconfig.get_preferred_scheme("user"))) / _INSTALLED,
    ]
    for candidate in candidates:
        if candidate is not None and (candidate / "index.html").is_file():
            # Resolved, so the static handler's containment check compares like with like.
            return candidate.resolve()
    raise FileNotFoundError(
        "the livecast web pages are missing; reinstall with `pip install .` from a checkout"
    )


def _page_handler(filename: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def page(request: web.Request) -> web.StreamResponse:
        status = 200
        stream_id = request.match_info.get("stream_id")
        if stream_id is not None and (
            not is_stream_id(stream_id) or await request.app[STREAMS].find(stream_id) is None
        ):
            # The page itself explains that the stream does not exist.
            status = 404
        response = web.FileResponse(
            request.app[WEB_ROOT] / filename, status=status, headers=_PAGE_HEADERS
        )
        response.content_type = "text/html"
        response.charset = "utf-8"
        return response

    return page


async def _static(request: web.Request) -> web.StreamResponse:
    relative = PurePosixPath(request.match_info["path"])
    if relative.is_absolute() or any(part in {"", ".", ".."} for part in relative.parts):
        raise NotFound("no such file", code=ErrorCode.NOT_FOUND)
    if any(part.startswith(".") for part in relative.parts):
        raise NotFound("no such file", code=ErrorCode.NOT_FOUND)
    content_type = CONTENT_TYPES.get(relative.suffix)
    root: Path = request.app[WEB_ROOT]
    path = root.joinpath(*relative.parts)
    if content_type is None or not path.is_file() or root not in path.resolve().parents:
        raise NotFound("no such file", code=ErrorCode.NOT_FOUND)
    headers = _PAGE_HEADERS if relative.suffix == ".html" else _COMMON_HEADERS
    response = web.FileResponse(path, headers=headers)
    mime, _, charset = content_type.partition("; charset=")
    response.content_type = mime
    if charset:
        response.charset = charset
    return response


class DirectoryStream(Stream, frozen=True, kw_only=True):
    viewers: Annotated[
        int | None,
        msgspec.Meta(description="concurrent viewers of a live stream; null otherwise"),
    ]


class Directory(msgspec.Struct, frozen=True):
    streams: list[DirectoryStream]


class DevSettings(msgspec.Struct, frozen=True):
    mint_viewer_tokens: bool


class DevToken(msgspec.Struct, frozen=True, kw_only=True):
    token: Annotated[str, msgspec.Meta(description="HS256 JWT; send as Authorization: Bearer")]
    sub: str
    name: str
    role: Literal["viewer"] = "viewer"
    expires_in: Annotated[int, msgspec.Meta(description="seconds")]


@contract(
    summary="Streams for the directory page: live (with viewer counts), scheduled, ended",
    responses={200: Directory},
    auth=Auth.OPTIONAL,
)
async def directory(request: web.Request) -> web.Response:
    """What ``GET /api/streams`` lists (public streams, and those the caller manages), with
    ``viewers`` on each live stream when live events run on this server, else null."""
    caller = identity(request)
    streams = await request.app[STREAMS].list_streams(limit=_DIRECTORY_LIMIT)
    visible = [s for s in streams if s.public or caller.can_manage(s.id, s.seller_id)]
    chat = request.app.get(CHAT)
    counts: dict[str, int] = {}
    if chat is not None:
        live = [s.id for s in visible if s.is_live]
        snapshots = await asyncio.gather(
            *(chat.history.snapshot(stream_id, with_chat=False) for stream_id in live)
        )
        counts = {stream_id: snap.viewers for stream_id, snap in zip(live, snapshots, strict=True)}
    listed = [
        DirectoryStream(
            **msgspec.structs.asdict(s), viewers=counts.get(s.id) if s.is_live else None
        )
        for s in visible
    ]
    return json_response(Directory(listed))


class MintToken(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]

    def __post_init__(self) -> None:
        check_line("name", self.name)


@contract(
    summary="Which development conveniences are on (the pages ask before offering sign-in by name)",
    responses={200: DevSettings},
    redis=False,
)
async def dev_settings(request: web.Request) -> web.Response:
    return json_response(DevSettings(request.app[SETTINGS].dev.mint_viewer_tokens))


@contract(
    summary="Mint a viewer token for a display name; exists only with [dev] "
    "mint_viewer_tokens = true",
    body=MintToken,
    responses={201: Reply(DevToken, "minted")},
    errors={ErrorCode.NOT_FOUND: "dev mode is off"},
    redis=False,
)
async def mint_dev_token(request: web.Request) -> web.Response:
    """A viewer identity for a display name; the route does not exist unless dev mode is on."""
    settings = request.app[SETTINGS]
    if not settings.dev.mint_viewer_tokens:
        raise NotFound(f"no route {request.path}", code=ErrorCode.NOT_FOUND)
    body = await read_json(request, MintToken)
    name = " ".join(body.name.split())
    if not name:
        raise Unprocessable("name must not be blank", code=ErrorCode.INVALID_FIELD)
    sub = f"dev-{new_id(6)}"
    ttl = settings.auth.default_ttl_s
    token = request.app[TOKENS].issue(sub=sub, name=name, role=Role.VIEWER, ttl_s=ttl)
    return json_response(DevToken(token=token, sub=sub, name=name, expires_in=ttl), status=201)


routes = [
    *(
        web.get(path, _page_handler(filename), name=f"page:{filename}")
        for path, filename in PAGES.items()
    ),
    web.get("/static/{path:.+}", _static),
    web.get("/api/directory", directory),
    web.get("/api/dev", dev_settings),
    web.post("/api/dev/tokens", mint_dev_token),
]
