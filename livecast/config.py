"""One typed settings tree, loaded once.

Precedence, lowest to highest: the defaults below, the TOML file (``--config`` or
``LIVECAST_CONFIG``), ``LIVECAST_<SECTION>_<KEY>`` environment variables, command-line
flags. ``config/livecast.toml`` documents every setting with its default; a test keeps the
two in step.

An unknown section or key, or a value of the wrong type or out of range, raises
:class:`ConfigError` whose message names the key and the value.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AuthSettings",
    "CartSettings",
    "ChatSettings",
    "ConfigError",
    "DevSettings",
    "InventorySettings",
    "PaymentSettings",
    "RedisSettings",
    "ReplaySettings",
    "ServerSettings",
    "Settings",
    "TimelineSettings",
    "WebRtcSettings",
    "WebhookSettings",
    "http_url",
    "load_settings",
]

ENV_PREFIX = "LIVECAST_"
# Environment variables with this prefix that are not settings.
_ENV_NOT_SETTINGS = ("LIVECAST_CONFIG", "LIVECAST_TEST_")


class ConfigError(Exception):
    """A setting is unknown, malformed or out of range; the message names it."""


def _check(predicate: Callable[[Any], bool], expected: str) -> dict[str, Any]:
    return {"check": predicate, "expected": expected}


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=_check(lambda v: 0 <= v <= 65535, "a port 0-65535"))
    # Largest accepted request body; larger ones get 413.
    max_body_bytes: int = field(
        default=1_048_576, metadata=_check(lambda v: v >= 1024, "at least 1024")
    )
    # Seconds given to open connections to finish at shutdown.
    shutdown_timeout_s: float = field(default=5.0, metadata=_check(lambda v: v >= 0, ">= 0"))
    # The URL other nodes reach this one at (an edge pulls a stream's media from its origin
    # there). Empty: http://<host>:<port>, with this machine's name if host is a wildcard.
    advertise_url: str = field(
        default="",
        metadata=_check(
            lambda v: v == "" or (v.startswith(("http://", "https://")) and len(v) > 8),
            "empty or an http(s) URL",
        ),
    )
    # One INFO line per HTTP request on the "livecast.access" logger (token= query values
    # and Authorization headers are never logged).
    access_log: bool = True
    # Worker processes of `livecast serve`, each a node with its own media, all sharing
    # host:port. 0: one per core this process may run on; 1: a single process.
    workers: int = field(default=0, metadata=_check(lambda v: 0 <= v <= 256, "0-256"))
    # With several workers, each also listens on a private port of its own on this address,
    # its node URL (where other workers and nodes pull media from it and forward its
    # sessions' requests): worker n gets worker_base_port + n - 1; 0: free ports.
    worker_host: str = "127.0.0.1"
    worker_base_port: int = field(
        default=0, metadata=_check(lambda v: 0 <= v <= 65535, "a port 0-65535")
    )

    @property
    def node_url(self) -> str:
        """:attr:`advertise_url`, or the one derived from ``host`` and ``port``."""
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        return http_url(self.host, self.port)

    @property
    def worker_count(self) -> int:
        """:attr:`workers`, with 0 resolved to the cores this process may run on."""
        if self.workers:
            return self.workers
        try:
            return len(os.sched_getaffinity(0)) or 1
        except AttributeError:  # pragma: no cover - not on Linux
            return os.cpu_count() or 1


def http_url(host: str, port: int) -> str:
    """``http://host:port``, naming this machine when ``host`` is a wildcard address."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@dataclass(frozen=True, slots=True)
class DataSettings:
    # Holds the embedded Redis (socket, append-only file), the token secret and the lock.
    dir: str = "./.livecast"


@dataclass(frozen=True, slots=True)
class RedisSettings:
    # Empty: start the embedded redis-server in the data dir. Otherwise redis:// rediss:// unix://
    url: str = field(
        default="",
        metadata=_check(
            lambda v: v == "" or v.split("://", 1)[0] in {"redis", "rediss", "unix"},
            "empty or a redis://, rediss:// or unix:// URL",
        ),
    )
    # Every key and channel starts with this, so several deployments can share one server.
    key_prefix: str = "livecast:"
    connect_timeout_s: float = field(default=5.0, metadata=_check(lambda v: v > 0, "> 0"))
    command_timeout_s: float = field(default=5.0, metadata=_check(lambda v: v > 0, "> 0"))
    max_connections: int = field(default=64, metadata=_check(lambda v: v >= 4, ">= 4"))
    # Seconds a command waits for a free connection when all max_connections are busy,
    # before the request fails with 503 (a reachable but saturated Redis).
    pool_timeout_s: float = field(default=10.0, metadata=_check(lambda v: v > 0, "> 0"))
    # When the embedded Redis fsyncs its append-only file: "always" (before answering each
    # write), "everysec" or "no" (when the OS chooses). See the README, "Where data lives".
    embedded_appendfsync: str = field(
        default="everysec",
        metadata=_check(lambda v: v in {"always", "everysec", "no"}, "always, everysec or no"),
    )
    # The embedded Redis is started again when it dies; dying more than five times within
    # this many seconds stops livecast serve (exit 1), so that its service manager acts.
    embedded_restart_window_s: float = field(default=60.0, metadata=_check(lambda v: v > 0, "> 0"))


@dataclass(frozen=True, slots=True)
class AuthSettings:
    # HMAC secret for tokens. Empty: generated once and kept in <data.dir>/token-secret.
    secret: str = field(
        default="", metadata=_check(lambda v: v == "" or len(v) >= 32, "empty or 32+ characters")
    )
    issuer: str = "livecast"
    # Default lifetime of `livecast token`, in seconds.
    default_ttl_s: int = field(default=28_800, metadata=_check(lambda v: v > 0, "> 0"))


def _http_urls(urls: tuple[str, ...]) -> bool:
    return all(u.startswith(("http://", "https://")) and len(u) > 8 for u in urls)


@dataclass(frozen=True, slots=True)
class CartSettings:
    # Lines one buyer's cart may hold.
    max_lines: int = field(default=50, metadata=_check(lambda v: 1 <= v <= 500, "1-500"))
    # Seconds between the live numbers pushed to a live stream's hosts (the `stats` event).
    stats_push_interval_s: float = field(default=3.0, metadata=_check(lambda v: v >= 0.5, ">= 0.5"))
    # A running checkout's lease: past it (its node died, or it stopped midway), the
    # recovery pass of any node finishes the checkout or voids its payment.
    checkout_lease_s: float = field(default=10.0, metadata=_check(lambda v: v >= 0.2, ">= 0.2"))
    # How often each node looks for checkouts left midway.
    recovery_interval_s: float = field(default=1.0, metadata=_check(lambda v: v > 0, "> 0"))


@dataclass(frozen=True, slots=True)
class PaymentSettings:
    # Payment provider; "test" approves everything except the decline triggers below.
    provider: str = field(default="test", metadata=_check(lambda v: v in {"test"}, "one of: test"))
    # The test provider declines this card number...
    test_decline_card: str = "4000000000000002"
    # ...and any total at or above this many minor units (0: no limit).
    test_decline_amount_minor: int = field(default=0, metadata=_check(lambda v: v >= 0, ">= 0"))


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    # Merchant endpoints that receive order.created and order.paid.
    urls: tuple[str, ...] = field(default=(), metadata=_check(_http_urls, "http(s) URLs"))
    # HMAC secret for the Livecast-Signature header; empty: generated once and kept in
    # <data.dir>/webhook-secret (share it with the receiver).
    secret: str = field(
        default="", metadata=_check(lambda v: v == "" or len(v) >= 32, "empty or 32+ characters")
    )
    timeout_s: float = field(default=10.0, metadata=_check(lambda v: v > 0, "> 0"))
    # Attempts before a delivery moves to the dead-letter list.
    max_attempts: int = field(default=12, metadata=_check(lambda v: v >= 1, ">= 1"))
    # Retry n waits min(cap, base * 2^(n-1)) seconds, with +-20% jitter.
    backoff_base_s: float = field(default=2.0, metadata=_check(lambda v: v > 0, "> 0"))
    backoff_cap_s: float = field(default=3600.0, metadata=_check(lambda v: v > 0, "> 0"))
    # How often an idle node looks for due deliveries.
    poll_interval_s: float = field(default=1.0, metadata=_check(lambda v: v > 0, "> 0"))
    # Deliveries one node sends at a time: to one endpoint, and in all. A slow or dead
    # endpoint holds only its own slots.
    max_in_flight_per_endpoint: int = field(default=4, metadata=_check(lambda v: v >= 1, ">= 1"))
    max_in_flight: int = field(default=64, metadata=_check(lambda v: v >= 1, ">= 1"))


@dataclass(frozen=True, slots=True)
class ChatSettings:
    # Chat entries (messages and deletion notices) kept per stream for hello and recovery.
    history_length: int = field(default=1000, metadata=_check(lambda v: v >= 10, ">= 10"))
    # Chat messages in the hello snapshot.
    hello_messages: int = field(default=50, metadata=_check(lambda v: 0 <= v <= 500, "0-500"))
    max_message_chars: int = field(default=300, metadata=_check(lambda v: v >= 1, ">= 1"))
    # Per-user rate limit: rate_limit_messages per rate_limit_window_s (hosts are exempt).
    rate_limit_messages: int = field(default=20, metadata=_check(lambda v: v >= 1, ">= 1"))
    rate_limit_window_s: float = field(default=30.0, metadata=_check(lambda v: v > 0, "> 0"))
    # Seconds a client id is remembered, so a resent chat.send is not posted twice.
    dedupe_window_s: int = field(default=300, metadata=_check(lambda v: v >= 1, ">= 1"))
    # Largest client frame in bytes; larger ones close the socket with 1009.
    max_frame_bytes: int = field(default=4096, metadata=_check(lambda v: v >= 256, ">= 256"))
    # Bytes waiting in one socket's send buffer before that viewer is dropped (1013).
    max_send_buffer_bytes: int = field(
        default=262_144, metadata=_check(lambda v: v >= 4096, ">= 4096")
    )
    # Invalid frames one socket may send before it is closed with 1008.
    max_bad_frames: int = field(default=20, metadata=_check(lambda v: v >= 1, ">= 1"))
    # Seconds between like flushes (one INCRBY and one total per stream per node).
    like_flush_interval_s: float = field(default=0.25, metadata=_check(lambda v: v > 0, "> 0"))
    # Likes one connection may add per second; taps beyond it are ignored.
    max_likes_per_second: int = field(default=50, metadata=_check(lambda v: v >= 1, ">= 1"))
    # Presence: a node refreshes its viewer counts this often; they expire after presence_ttl_s.
    presence_interval_s: float = field(default=2.0, metadata=_check(lambda v: v > 0, "> 0"))
    presence_ttl_s: float = field(default=10.0, metadata=_check(lambda v: v > 0, "> 0"))
    # WebSocket ping interval in seconds; 0 turns pings off.
    ping_interval_s: float = field(default=30.0, metadata=_check(lambda v: v >= 0, ">= 0"))
    # Words (or phrases) rejected in every stream, matched case-insensitively as whole words.
    banned_words: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DevSettings:
    # Let the pages mint viewer identities for a display name (demo use only).
    mint_viewer_tokens: bool = False


_VIDEO_CODECS = frozenset({"h264", "vp8"})


@dataclass(frozen=True, slots=True)
class WebRtcSettings:
    # STUN/TURN URLs handed to peers (Link: rel="ice-server") and used by the server's own
    # ICE agent, e.g. "stun:stun.example.net:3478", "turn:turn.example.net:3478?transport=udp".
    ice_servers: tuple[str, ...] = ()
    # Credentials for the turn: URLs above (empty for STUN only).
    ice_username: str = ""
    ice_credential: str = ""
    # Video codecs accepted from publishers, most preferred first: "h264" and/or "vp8".
    video_codecs: tuple[str, ...] = field(
        default=("h264", "vp8"),
        metadata=_check(
            lambda v: v and set(v) <= _VIDEO_CODECS, 'a non-empty list of "h264", "vp8"'
        ),
    )
    # WHEP sessions allowed per stream on this node; past it viewers get 429.
    max_viewers_per_stream: int = field(default=1000, metadata=_check(lambda v: v >= 1, ">= 1"))
    # WHEP sessions allowed on this node across all its streams; past it viewers get 429
    # stream_full too, and the watch page plays LL-HLS instead. 0: no WebRTC viewers here.
    max_viewers: int = field(default=10_000, metadata=_check(lambda v: v >= 0, ">= 0"))
    # Upstream keyframe requests (PLI) to a publisher are at most this often, shared by
    # every viewer waiting for one.
    keyframe_min_interval_ms: int = field(default=200, metadata=_check(lambda v: v >= 0, ">= 0"))
    # A viewer still waiting for its first keyframe asks again after this long.
    keyframe_retry_ms: int = field(default=500, metadata=_check(lambda v: v >= 50, ">= 50"))
    # Frames kept per stream and track; a viewer that falls further behind skips to the
    # next keyframe instead of queueing.
    frame_buffer: int = field(
        default=64, metadata=_check(lambda v: v >= 8 and v & (v - 1) == 0, "a power of two >= 8")
    )
    # GOP cache: each stream's video since its last keyframe, kept while it spans at most
    # this many seconds and bytes. A joining viewer starts from it at once (a catch-up
    # burst), whatever the encoder does with keyframe requests; past either bound, joiners
    # ask for a keyframe and wait for it.
    gop_cache_s: float = field(default=10.0, metadata=_check(lambda v: v >= 0, ">= 0"))
    gop_cache_bytes: int = field(default=8_000_000, metadata=_check(lambda v: v >= 0, ">= 0"))
    # Viewers connected over a plain UDP candidate pair get their packets written by the
    # relay's fan-out (one pass per frame over all viewers, SRTP and sendto each) instead
    # of by aiortc's per-viewer sender. false: aiortc's path for every viewer.
    fast_relay: bool = True
    # A session whose peer connection is not up after this many seconds is closed.
    connect_timeout_s: float = field(default=20.0, metadata=_check(lambda v: v > 0, "> 0"))
    # A publisher that sent no media for this long is reported as reconnecting, and a
    # new publisher for the stream may take its place.
    publisher_stale_s: float = field(default=3.0, metadata=_check(lambda v: v > 0, "> 0"))
    # A live stream whose publisher stays away this long is ended. 0 keeps it live.
    reconnect_grace_s: float = field(default=300.0, metadata=_check(lambda v: v >= 0, ">= 0"))
    # Several nodes: the node holding a stream's publisher records itself in Redis as the
    # stream's origin; the record expires this many seconds after the node stops refreshing
    # it (it died), and only then may the stream be published through another node.
    origin_ttl_s: float = field(default=10.0, metadata=_check(lambda v: v >= 0.3, ">= 0.3"))
    # An edge (a node serving viewers of a stream published elsewhere) keeps its pull from
    # the origin this many seconds after its last viewer left, for viewers who come back.
    edge_linger_s: float = field(default=5.0, metadata=_check(lambda v: v >= 0, ">= 0"))
    # Record each stream this node is the origin of, for replay: its encoded video and Opus
    # audio remuxed (never re-encoded) into WebM (VP8) or Matroska (H.264) files.
    record: bool = False
    # Where recordings go, one directory per stream. Empty: <data.dir>/recordings.
    recordings_dir: str = ""


@dataclass(frozen=True, slots=True)
class HlsSettings:
    # Package the streams this node holds as LL-HLS at /hls/{stream id}/index.m3u8.
    enabled: bool = True
    # Longest partial segment, in seconds (EXT-X-PART-INF PART-TARGET).
    part_duration_s: float = field(
        default=0.5, metadata=_check(lambda v: 0.1 <= v <= 2.0, "between 0.1 and 2.0")
    )
    # A segment ends at the first keyframe after this many seconds (one is asked for).
    segment_duration_s: float = field(
        default=2.0, metadata=_check(lambda v: 0.5 <= v <= 10.0, "between 0.5 and 10.0")
    )
    # Complete segments listed in the playlist.
    window_segments: int = field(default=6, metadata=_check(lambda v: 2 <= v <= 100, "2..100"))
    # A VP8 stream is decoded and encoded to H.264 once (one encoder per stream, in a
    # thread of its own) so HLS players can play it. false: VP8 streams have no HLS.
    transcode_vp8: bool = True
    # Signed playback URLs (GET /api/streams/{id}/playback) stay valid this many seconds,
    # plus up to five minutes: expiries are rounded so viewers share URLs a CDN caches once.
    playback_url_ttl_s: int = field(
        default=3600, metadata=_check(lambda v: 60 <= v <= 604_800, "between 60 and 604800")
    )
    # Access-log lines (server.access_log) for /hls/ requests answered without error too:
    # every player asks several times a second. false: only /hls/ errors are logged.
    access_log: bool = False


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    # Record every LL-HLS stream's segments to disk and serve it as a VOD replay once
    # the stream ends, at /replay/{stream id}/index.m3u8.
    enabled: bool = True
    # Where replays are stored (one directory per stream); empty: ``replays`` in the data
    # dir. A directory shared by the nodes (NFS...) lets any node serve any replay.
    dir: str = ""
    # Replays older than this many days (from the stream's end) are deleted; 0 keeps them.
    retention_days: float = field(default=30.0, metadata=_check(lambda v: v >= 0, ">= 0"))
    # How often each node looks for expired (or deleted) replays to remove.
    sweep_interval_s: float = field(default=3600.0, metadata=_check(lambda v: v > 0, "> 0"))


@dataclass(frozen=True, slots=True)
class InventorySettings:
    # Seconds a reservation (hold) lasts before its units go back to stock.
    hold_ttl_s: float = field(default=600.0, metadata=_check(lambda v: v > 0, "> 0"))
    # Seconds a finished hold is remembered, so a replayed hold id changes nothing.
    hold_retention_s: float = field(default=86_400.0, metadata=_check(lambda v: v > 0, "> 0"))
    # Most units one reservation may ask for.
    max_quantity: int = field(default=100, metadata=_check(lambda v: v >= 1, ">= 1"))
    # Seconds a multi-SKU commit may sit between its phases before the sweeper settles it.
    prepare_window_s: float = field(default=30.0, metadata=_check(lambda v: v > 0, "> 0"))
    # How often each node returns expired holds to stock and ends deals past their time.
    sweep_interval_s: float = field(default=1.0, metadata=_check(lambda v: v > 0, "> 0"))
    # How often each node also sweeps every SKU (a safety net for missed schedule marks).
    full_sweep_interval_s: float = field(default=60.0, metadata=_check(lambda v: v > 0, "> 0"))
    # Stock and deal updates to viewers are coalesced per node and sent this often.
    event_interval_s: float = field(default=0.25, metadata=_check(lambda v: v > 0, "> 0"))
    # Longest flash deal, in seconds.
    max_deal_duration_s: int = field(default=86_400, metadata=_check(lambda v: v >= 1, ">= 1"))
    # Most rows one catalog import may carry.
    import_max_rows: int = field(default=10_000, metadata=_check(lambda v: v >= 1, ">= 1"))


@dataclass(frozen=True, slots=True)
class TimelineSettings:
    # Entries kept per stream (the oldest go first): pins, deals, stock, auctions.
    max_entries: int = field(
        default=5000, metadata=_check(lambda v: 10 <= v <= 1_000_000, "between 10 and 1000000")
    )
    # Seconds a stream's timeline is kept after its last entry; 0: kept like the stream's
    # other keys (chat, state), until they are deleted.
    retention_s: float = field(default=0.0, metadata=_check(lambda v: v >= 0, ">= 0"))


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    data: DataSettings = field(default_factory=DataSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    cart: CartSettings = field(default_factory=CartSettings)
    payments: PaymentSettings = field(default_factory=PaymentSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    chat: ChatSettings = field(default_factory=ChatSettings)
    dev: DevSettings = field(default_factory=DevSettings)
    inventory: InventorySettings = field(default_factory=InventorySettings)
    webrtc: WebRtcSettings = field(default_factory=WebRtcSettings)
    hls: HlsSettings = field(default_factory=HlsSettings)
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    timeline: TimelineSettings = field(default_factory=TimelineSettings)

    @property
    def data_dir(self) -> Path:
        return Path(self.data.dir).expanduser().resolve()

    @property
    def recordings_dir(self) -> Path:
        """``webrtc.recordings_dir``, or ``recordings`` in the data dir."""
        if self.webrtc.recordings_dir:
            return Path(self.webrtc.recordings_dir).expanduser().resolve()
        return self.data_dir / "recordings"

    @property
    def replays_dir(self) -> Path:
        """``replay.dir``, or ``replays`` in the data dir."""
        if self.replay.dir:
            return Path(self.replay.dir).expanduser().resolve()
        return self.data_dir / "replays"


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from defaults, ``path``, ``env`` and ``overrides``.

    ``overrides`` maps dotted keys (``"server.port"``) to already-typed values, as the
    command line gives them. ``env`` defaults to ``os.environ``.
    """
    environ = os.environ if env is None else env
    if path is None and environ.get("LIVECAST_CONFIG"):
        path = environ["LIVECAST_CONFIG"]
    tree: dict[str, dict[str, Any]] = {}
    if path is not None:
        tree = _read_toml(Path(path))
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name.startswith(_ENV_NOT_SETTINGS):
            continue
        section, key = _env_key(name)
        tree.setdefault(section, {})[key] = _EnvValue(name, raw)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        tree.setdefault(section, {})[key] = value
    settings: Settings = _build(Settings, tree, "")
    return settings


class _EnvValue:
    """A raw string from the environment, parsed by the type of the field it sets."""

    __slots__ = ("name", "raw")

    def __init__(self, name: str, raw: str) -> None:
        self.name = name
        self.raw = raw


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def _env_key(name: str) -> tuple[str, str]:
    rest = name[len(ENV_PREFIX) :].lower()
    section, sep, key = rest.partition("_")
    sections = {f.name for f in dataclasses.fields(Settings)}
    if not sep or section not in sections:
        raise ConfigError(
            f"unknown environment variable {name!r}: expected LIVECAST_<SECTION>_<KEY> "
            f"with a section among {', '.join(sorted(sections))}"
        )
    return section, key


def _build(cls: type[Any], values: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix.rstrip('.')!r} must be a table, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            dotted = f"{prefix}{key}"
            raise ConfigError(f"unknown setting {dotted!r}; known here: {', '.join(sorted(known))}")
    kwargs: dict[str, Any] = {}
    for name, fld in known.items():
        if name not in values:
            continue
        dotted = f"{prefix}{name}"
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, values[name], f"{dotted}.")
            continue
        value = _coerce(hint, values[name], dotted)
        check = fld.metadata.get("check")
        if check is not None and not check(value):
            raise ConfigError(
                f"bad value for {dotted!r}: {value!r} (expected {fld.metadata['expected']})"
            )
        kwargs[name] = value
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, dotted: str) -> Any:
    source = dotted
    if isinstance(value, _EnvValue):
        source = f"{dotted} (from {value.name})"
        value = _parse_env(hint, value.raw, source)
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, list | tuple):
            raise ConfigError(f"bad value for {source!r}: {value!r} (expected a list)")
        return tuple(_coerce(item, v, dotted) for v in value)
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"unsupported setting type for {dotted!r}")
    ok = (
        isinstance(value, bool)
        if hint is bool
        else isinstance(value, hint) and not isinstance(value, bool)
    )
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ConfigError(
            f"bad value for {source!r}: {value!r} (expected {getattr(hint, '__name__', hint)})"
        )
    return value


def _parse_env(hint: Any, raw: str, source: str) -> Any:
    try:
        if hint is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if typing.get_origin(hint) in (tuple, list):
            return [part.strip() for part in raw.split(",") if part.strip()]
    except ValueError:
        name = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"bad value for {source!r}: {raw!r} (expected {name})") from None
    return raw
