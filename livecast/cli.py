"""The ``livecast`` command: ``serve``, ``token`` and friends."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from livecast.auth import Role, TokenIssuer, load_or_create_secret, parse_duration
from livecast.bench import BENCHMARKS, run_benchmark
from livecast.config import ConfigError, Settings, load_settings
from livecast.embedded_redis import EmbeddedRedisError
from livecast.errors import ApiError
from livecast.ids import new_id
from livecast.logs import configure as configure_logs
from livecast.redisdb import RedisUnavailable

__all__ = ["main"]

log = logging.getLogger("livecast")

Command = Callable[[argparse.Namespace], int]

# Why ``serve`` could not open its port, by errno: said in one line, not a traceback.
_LISTEN_ERRORS = {
    errno.EADDRINUSE: "address already in use",
    errno.EACCES: "permission denied",
    errno.EADDRNOTAVAIL: "address not available on this machine",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    command: Command = args.command
    try:
        return command(args)
    except ConfigError as exc:
        print(f"livecast: configuration error: {exc}", file=sys.stderr)
        return 2
    except (EmbeddedRedisError, RedisUnavailable) as exc:
        print(f"livecast: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livecast", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server")
    _settings_flags(serve)
    serve.add_argument("--host", help="address to listen on (server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (server.port)")
    serve.add_argument("--redis-url", help="use this Redis instead of the embedded one (redis.url)")
    serve.add_argument(
        "--workers", type=int, metavar="N",
        help="worker processes sharing the port, each with its own media; 0: one per core "
        "(server.workers, default 0); 1: a single process",
    )  # fmt: skip
    # How the main process of --workers N starts each worker (livecast.workers).
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--listen-fds", help=argparse.SUPPRESS)
    serve.add_argument("--node-url", help=argparse.SUPPRESS)
    serve.set_defaults(command=_serve)

    token = sub.add_parser("token", help="print a signed token")
    _settings_flags(token)
    token.add_argument("--role", required=True, choices=[r.value for r in Role])
    token.add_argument("--name", required=True, help="display name shown in chat")
    token.add_argument("--sub", help="stable user id (default: a new random one)")
    token.add_argument(
        "--stream", action="append", default=[], metavar="ID",
        help="stream the role applies to (repeatable; '*' for admins; --stream=ID for an id "
        "that starts with '-')",
    )  # fmt: skip
    token.add_argument("--ttl", default=None, help="lifetime such as 90s, 15m, 8h, 30d")
    token.set_defaults(command=_token)

    demo = sub.add_parser("demo", help="seed a demo catalog and stream; print links to try it")
    _settings_flags(demo)
    demo.set_defaults(command=_demo)

    catalog = sub.add_parser(
        "import-catalog", help="import products from a JSON lines or CSV file, row by row"
    )
    _settings_flags(catalog)
    catalog.add_argument("file", help="JSON lines (.jsonl, .ndjson) or CSV (.csv) file")
    catalog.add_argument("--format", choices=["jsonl", "csv"], help="default: by file suffix")
    catalog.add_argument("--redis-url", help="import into this Redis (redis.url)")
    catalog.add_argument(
        "--owner", metavar="SUB",
        help="the seller (token subject) whose products the rows are, where a row names none",
    )  # fmt: skip
    catalog.set_defaults(command=_import_catalog)

    bench = sub.add_parser("bench", help="run a benchmark on loopback and print one JSON line")
    bench.add_argument("benchmark", choices=sorted(BENCHMARKS))
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")
    bench.set_defaults(command=_bench)
    return parser


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML settings file (or LIVECAST_CONFIG)")
    parser.add_argument("--data-dir", help="where data lives (data.dir; default ./.livecast)")


def _load(args: argparse.Namespace, **flags: Any) -> Settings:
    overrides = {key: value for key, value in flags.items() if value is not None}
    if args.data_dir is not None:
        overrides["data.dir"] = args.data_dir
    return load_settings(args.config, overrides=overrides)


async def _tune_gc(app: web.Application) -> None:
    """Once started, keep the cyclic garbage collector off the hot paths.

    Every request allocates thousands of short-lived objects (futures, headers, log
    records), so the default threshold (700 allocations) ran a young collection every
    few requests, and each older collection walked everything loaded at start-up. The
    start-up heap is frozen (never collected, as it lives until exit) and young
    collections run every 200,000 allocations; cycles are still collected.

    The count is of allocations not yet freed, and what a collection walks is what is
    alive then: under a crowd, the state of every request in flight. So a collection
    costs about the same however rarely it runs, and running it 20 times less often
    (10,000 before) took a checkout under 500 in flight from ~600 to ~400 us of CPU,
    as good as no collector at all (``bench checkout``). The price is cyclic garbage
    living a little longer: at most the 200,000 objects of one young generation.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 10, 10)


def _serve(args: argparse.Namespace) -> int:
    flags = {
        "server.host": args.host,
        "server.port": args.port,
        "redis.url": args.redis_url,
        "server.workers": args.workers,
    }
    if args.worker is not None:
        flags |= {"server.workers": 1, "server.advertise_url": args.node_url}
    settings = _load(args, **flags)
    count = settings.server.worker_count
    if args.worker is None and count > 1:
        return _serve_workers(args, settings, count)
    role = "" if args.worker is None else f"[worker {args.worker}] "
    configure_logs(role)
    from livecast.access_log import access_log_options
    from livecast.app import ABORT, create_app

    app = create_app(settings, worker=args.worker)
    app[ABORT].stop = _stop_serving
    app.on_startup.append(_tune_gc)
    url = f"http://{settings.server.host}:{settings.server.port}"
    listen: dict[str, Any] = {"host": settings.server.host, "port": settings.server.port}
    if args.worker is not None:
        import os
        import socket

        from livecast.workers import exit_with_parent

        fds = [int(fd) for fd in args.listen_fds.split(",")]
        listen = {"sock": [socket.socket(fileno=fd) for fd in fds]}
        app.cleanup_ctx.append(exit_with_parent(os.getppid(), _stop_serving))
        url += f" (node {settings.server.node_url})"
    try:
        web.run_app(
            app,
            **listen,
            loop=_new_event_loop(),
            shutdown_timeout=settings.server.shutdown_timeout_s,
            print=lambda _: log.info("livecast %s listening on %s", _version(), url),
            **access_log_options(settings.server),
        )
    except OSError as exc:
        if exc.errno not in _LISTEN_ERRORS:
            raise
        return _cannot_listen(
            settings.server.host,
            settings.server.port,
            exc.errno,
            "--host / --port (server.host / server.port)",
        )
    if app[ABORT].reason is not None:
        print(f"livecast: {app[ABORT].reason}", file=sys.stderr)
        return 1
    return 0


def _serve_workers(args: argparse.Namespace, settings: Settings, count: int) -> int:
    """The main process of ``serve --workers N`` (:mod:`livecast.workers`)."""
    from livecast.workers import ListenError, run_workers

    if settings.server.advertise_url:
        raise ConfigError(
            f"server.advertise_url names one node, but server.workers runs {count} "
            "(each advertises its own private port on server.worker_host): "
            "set server.workers = 1, or leave server.advertise_url empty"
        )
    configure_logs("[main] ")
    try:
        return run_workers(settings, count, args.config, _new_event_loop())
    except ListenError as exc:
        if exc.errno not in _LISTEN_ERRORS:
            raise
        return _cannot_listen(exc.host, exc.port, exc.errno, exc.choose)


def _cannot_listen(host: str, port: int, err: int, choose: str) -> int:
    reason = _LISTEN_ERRORS[err]
    print(
        f"livecast: cannot listen on {host}:{port}: {reason}; choose another with {choose}",
        file=sys.stderr,
    )
    return 1


def _stop_serving() -> None:
    """Shut the app down as SIGTERM does: ``run_app`` stops on a GracefulExit raised in
    its loop."""
    asyncio.get_running_loop().call_soon(_raise_graceful_exit)


def _raise_graceful_exit() -> None:
    raise web.GracefulExit()


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _token(args: argparse.Namespace) -> int:
    settings = _load(args)
    issuer = TokenIssuer(
        load_or_create_secret(settings.auth.secret, settings.data_dir), issuer=settings.auth.issuer
    )
    try:
        ttl = parse_duration(args.ttl) if args.ttl else settings.auth.default_ttl_s
        token = issuer.issue(
            sub=args.sub or f"u-{new_id(6)}",
            name=args.name,
            role=Role(args.role),
            streams=frozenset(args.stream),
            ttl_s=ttl,
        )
    except (ValueError, ApiError) as exc:
        print(f"livecast token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from livecast.demo import DemoError, run_demo

    settings = _load(args)
    try:
        links, running = run_demo(settings)
    except DemoError as exc:
        print(f"livecast demo: {exc}", file=sys.stderr)
        return 1
    catalog = (
        f"{links.seeded_products} demo products"
        if links.catalog_available
        else "no products (this server has no catalog API)"
    )
    print(f"Seeded a scheduled stream ({links.stream_id}) featuring {catalog}.\n")
    if not running:
        flags = f" --config {args.config}" if args.config else ""
        flags += f" --data-dir {args.data_dir}" if args.data_dir else ""
        print(
            "Start the server (dev mode lets viewers join with just a name):\n"
            f"  LIVECAST_DEV_MINT_VIEWER_TOKENS=1 livecast serve{flags}\n"
        )
    print(
        f"Studio, go live:   {links.studio}\n"
        f"Control panel:     {links.control}\n"
        f"Watch:             {links.watch}"
    )
    return 0


def _import_catalog(args: argparse.Namespace) -> int:
    from pathlib import Path

    import msgspec

    from livecast.inventory.catalog_import import run_import

    settings = _load(args, **{"redis.url": args.redis_url})
    try:
        report, code = run_import(settings, Path(args.file), args.format, owner=args.owner)
    except (OSError, UnicodeDecodeError, ApiError) as exc:
        print(f"livecast import-catalog: {exc}", file=sys.stderr)
        return 2
    print(msgspec.json.encode(report).decode())
    return code


def _bench(args: argparse.Namespace) -> int:
    return run_benchmark(args.benchmark, args.options)


def _version() -> str:
    from livecast import __version__

    return __version__
