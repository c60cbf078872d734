"""The two helper servers, each run in its own process (``python -m bench.servers KIND --port P``).

* ``baseline``: the ingress baseline. It reads the body and answers 202, with no verification,
  no store and no log: what any aiohttp service costs before it does the gateway's work.
  With ``--uvloop`` it runs on uvloop's event loop: the pinned measurements' baseline, the
  fastest an aiohttp service gets without doing any work.
* ``destination``: the fake marketplace. It reads the body, counts it and answers 200 at once,
  so the delivery numbers measure the gateway and not the backend.

Both answer ``GET /_stats`` with ``{"count", "first", "last"}``: how many POSTs arrived and the
``time.monotonic()`` of the first and last (CLOCK_MONOTONIC is one clock for every process on
the host, so the orchestrator can compare it with its own readings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass

from aiohttp import web

BASELINE_ANSWER = b'{"status":"queued"}'


@dataclass
class Arrivals:
    """POSTs counted so far, with the monotonic time of the first and the last."""

    count: int = 0
    first: float | None = None
    last: float | None = None

    def mark(self) -> None:
        """Count one arrival now."""
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += 1


ARRIVALS = web.AppKey("arrivals", Arrivals)


async def _stats(request: web.Request) -> web.Response:
    arrivals = request.app[ARRIVALS]
    body = {"count": arrivals.count, "first": arrivals.first, "last": arrivals.last}
    return web.Response(body=json.dumps(body).encode(), content_type="application/json")


async def _baseline(request: web.Request) -> web.Response:
    await request.read()
    request.app[ARRIVALS].mark()
    return web.Response(status=202, body=BASELINE_ANSWER, content_type="application/json")


async def _destination(request: web.Request) -> web.Response:
    await request.read()
    request.app[ARRIVALS].mark()
    return web.Response(status=200)


def create_server_app(kind: str) -> web.Application:
    """The ``baseline`` or ``destination`` application."""
    app = web.Application()
    app[ARRIVALS] = Arrivals()
    app.router.add_get("/_stats", _stats)
    app.router.add_post("/{tail:.*}", _baseline if kind == "baseline" else _destination)
    return app


def main() -> None:
    """Serve one helper on ``127.0.0.1:PORT`` until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("kind", choices=["baseline", "destination"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="serve on uvloop's event loop")
    args = parser.parse_args()
    loop: asyncio.AbstractEventLoop | None = None
    if args.uvloop:
        # Imported here: only this baseline needs it (the dev extra installs it).
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(
        create_server_app(args.kind),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        shutdown_timeout=1.0,
        loop=loop,
    )


if __name__ == "__main__":
    main()
