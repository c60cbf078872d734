"""Debian's nginx as two helpers of the pinned measurements, each its own process tree.

* ``destination``: the fast destination. ``return 200`` for every POST, with no access log,
  so delivery costs the gateway and not the backend; ``GET /_stats`` is ``stub_status``,
  whose request counter tells how many deliveries arrived (minus the stats reads).
* ``proxy``: the reverse-proxy baseline. ``proxy_pass`` to the destination over keep-alive
  upstream connections, as the gateway keeps its connections to the destination alive:
  what forwarding a request costs a fast C proxy, with no verification and no store.

One worker process, ``daemon off``, the config, pid file, logs and temp paths in a directory
of the run; started through ``taskset`` when pinned, stopped by the master's PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

from bench.procs import BenchError, Proc, pinned

NGINX = os.environ.get("NGINX", shutil.which("nginx") or "/usr/sbin/nginx")

_COMMON = """\
daemon off;
master_process on;
worker_processes 1;
{user}pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests 1000000;
{server}
}}
"""

_DESTINATION = """\
    server {{
        listen 127.0.0.1:{port} reuseport;
        location = /_stats {{ stub_status; }}
        location / {{ return 200; }}
    }}"""

_PROXY = """\
    upstream destination {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://destination;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""


def nginx_config(root: Path, kind: str, port: int, upstream: int | None = None) -> str:
    """The whole nginx.conf of a ``destination`` or a ``proxy`` to ``upstream``."""
    if kind == "destination":
        server = _DESTINATION.format(port=port)
    elif kind == "proxy" and upstream is not None:
        server = _PROXY.format(port=port, upstream=upstream)
    else:
        raise ValueError(f"unknown nginx helper {kind!r} (a proxy needs an upstream)")
    # As root, nginx would hand its worker to ``nobody``, who cannot enter the run's private
    # temporary directory; the worker keeps our user instead (nothing here listens outside
    # the loopback interface).
    user = "user root;\n" if os.geteuid() == 0 else ""
    return _COMMON.format(root=root, user=user, server=server)


def nginx_version() -> str:
    """``nginx -v`` (it prints on stderr)."""
    try:
        done = subprocess.run(  # noqa: S603 - the configured nginx binary, no shell
            [NGINX, "-v"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return done.stderr.decode(errors="replace").strip().removeprefix("nginx version: ")


def start_nginx(
    root: Path, name: str, kind: str, port: int, *, upstream: int | None = None,
    cpus: str | None = None,
) -> Proc:  # fmt: skip
    """Write the config under ``root/name`` and start nginx on it (pinned to ``cpus``)."""
    home = root / name
    home.mkdir(parents=True)
    conf = home / "nginx.conf"
    conf.write_text(nginx_config(home, kind, port, upstream))
    command = pinned([NGINX, "-p", str(home), "-c", str(conf)], cpus)
    log_path = home / "stdout.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(  # noqa: S603 - nginx (or taskset exec-ing it), no shell
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    return Proc(name, popen, log_path)


def requests_served(port: int) -> int:
    """The destination's ``stub_status`` request counter: every request so far, this read and
    earlier reads included (callers take differences)."""
    url = f"http://127.0.0.1:{port}/_stats"
    with urllib.request.urlopen(url, timeout=5.0) as response:
        text = response.read().decode()
    # "Active connections: 1 \nserver accepts handled requests\n 5 5 9 \nReading: ..."
    try:
        return int(text.splitlines()[2].split()[2])
    except (IndexError, ValueError) as exc:
        raise BenchError(f"unexpected stub_status answer: {text!r}") from exc
