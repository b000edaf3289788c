"""Debian's nginx on loopback as the CDN in front of the nodes' ``/hls/``.

``proxy_cache`` with ``proxy_cache_lock``, honouring the origin's cache headers: identical
requests that arrive together make one origin request; ``proxy_cache_use_stale updating``
does the same for an expired playlist (the lock covers new entries only): while one
request fetches the new one, the others get the one that just expired. The access log
has one line per request, ``<cache status> <upstream address> <uri>``, the address
``-`` for a request the cache answered.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from livecast.bench._server import free_port

# The cache in front of the nodes, as the README shows it (one ``server`` line per node;
# the suite checks that the README's directives are these): every node answers every
# stream's /hls/ (forwarding to the one that packages it), so nginx may ask any of them.
UPSTREAM = """
    upstream livecast {{
{servers}
        keepalive 64;
    }}
"""
LOCATION = """
        location /hls/ {
            proxy_pass http://livecast;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache hls;
            proxy_cache_key $request_uri;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 15s;
            proxy_cache_lock_age 15s;
            proxy_cache_use_stale updating;
            proxy_read_timeout 30s;
        }
"""
CONF = """
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 16384; }}
http {{
    log_format origin '$upstream_cache_status $upstream_addr $request_uri';
    access_log {dir}/access.log origin;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    proxy_cache_path {dir}/cache levels=1:2 keys_zone=hls:10m max_size=256m use_temp_path=off;
{upstream}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
{location}
    }}
}}
"""


def nginx_binary() -> str | None:
    """nginx on the PATH, or Debian's (``/usr/sbin`` is not on every user's PATH)."""
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


def start_nginx(directory: Path, node_ports: Sequence[int]) -> tuple[subprocess.Popen[bytes], str]:
    """nginx on a free loopback port in front of the nodes on ``node_ports``, its configuration,
    logs and cache in ``directory`` (created; the access log is ``access.log``); the
    process and its base URL. Raises ``FileNotFoundError`` without nginx."""
    binary = nginx_binary()
    if binary is None:
        raise FileNotFoundError("nginx is not installed (apt-get install nginx-light)")
    directory.mkdir()
    port = free_port()
    conf = directory / "nginx.conf"
    servers = "\n".join(f"        server 127.0.0.1:{node};" for node in node_ports)
    upstream = UPSTREAM.format(servers=servers)
    conf.write_text(CONF.format(dir=directory, port=port, upstream=upstream, location=LOCATION))
    process = subprocess.Popen(
        [binary, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")]
    )
    return process, f"http://127.0.0.1:{port}"
