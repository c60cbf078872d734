"""The floor of the accept path: the gateway's per-request work, written as leanly as aiohttp
allows, as a third baseline beside bare aiohttp and nginx (``python -m bench.floor``).

Per request, on uvloop: read the body; check the Standard Webhooks signature (``webhook-id``,
``webhook-timestamp`` within five minutes, an HMAC-SHA256 ``v1,`` entry of
``webhook-signature``); parse the JSON body (orjson) and read its type and subject; one Lua
script that dedupes, stores the event and enqueues it, sent through an auto-pipeline (every
call made in one turn of the event loop goes out as one pipeline); one JSON log line; the
answer with ``X-Request-ID``. No rate limits, metrics, header deadline, payments, analytics or
dashboard indexes: a reference for what the gateway's work costs when nothing else is done,
so ``gateway / floor`` says how much the rest costs. ``GET /_stats`` answers for readiness.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import sys
import time
from typing import Any

import orjson
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.payloads import PAYMENTS_SECRET, SOURCE_PATH

#: Dedupe, store, enqueue: KEYS 1 the dedupe key, 2 the event hash, 3 the due queue; ARGV the
#: event id, body, type, subject, received time, the dedupe window (s). 1 stored, 0 duplicate.
ACCEPT = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[6]) then return 0 end
redis.call('HSET', KEYS[2], 'body', ARGV[2], 'type', ARGV[3], 'subject', ARGV[4],
  'received', ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
return 1
"""
TOLERANCE = 300
WINDOW = str(72 * 3600)


class AutoPipeline:
    """Commands queued in one loop turn, sent as one pipeline at the end of it."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._queued: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []

    def call(self, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._send)
        self._queued.append((args, future))
        return future

    def _send(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.ensure_future(self._run(batch))
        task.add_done_callback(lambda t: t.exception())

    async def _run(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for args, _ in batch:
            pipe.execute_command(*args)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (OSError, RedisError) as exc:  # the connection failed: every caller hears it
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)


class Floor:
    """The one handler's state: the key, the pipeline, the script, the log."""

    def __init__(self, redis_url: str) -> None:
        self.key = base64.b64decode(PAYMENTS_SECRET.removeprefix("whsec_"))
        self.client = Redis.from_url(redis_url)
        self.pipeline = AutoPipeline(self.client)
        self.sha = ""
        self.log = sys.stderr.buffer
        self.count = 0

    def _authentic(self, headers: Any, body: bytes) -> str | None:
        """The event id when the signature holds, else ``None``."""
        msg_id = headers.get("webhook-id")
        stamp = headers.get("webhook-timestamp")
        signatures = headers.get("webhook-signature")
        if not msg_id or not stamp or not signatures or not stamp.isdigit():
            return None
        if abs(time.time() - int(stamp)) > TOLERANCE:
            return None
        digest = hmac.new(self.key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256)
        expected = base64.b64encode(digest.digest())
        for entry in signatures.split():
            version, _, value = entry.partition(",")
            if version == "v1" and hmac.compare_digest(expected, value.encode()):
                return str(msg_id)
        return None

    async def accept(self, request: web.Request) -> web.Response:
        body = await request.read()
        request_id = os.urandom(8).hex()
        event_id = self._authentic(request.headers, body)
        if event_id is None:
            return web.Response(status=401, headers={"X-Request-ID": request_id})
        event = orjson.loads(body)
        now = time.time()
        stored = await self.pipeline.call(
            "EVALSHA", self.sha, 3, f"d:{event_id}", f"e:{event_id}", "due",
            event_id, body, str(event.get("type")), str(event.get("offerId")), repr(now), WINDOW,
        )  # fmt: skip
        status = "queued" if stored else "duplicate"
        line = {"ts": now, "level": "info", "msg": "request", "request_id": request_id,
                "source": "payments", "event_id": event_id, "outcome": status}  # fmt: skip
        self.log.write(orjson.dumps(line) + b"\n")
        self.count += 1
        answer = orjson.dumps({"id": event_id, "status": status})
        return web.Response(
            status=202 if stored else 200,
            body=answer,
            content_type="application/json",
            headers={"X-Request-ID": request_id},
        )

    async def stats(self, request: web.Request) -> web.Response:
        return web.Response(
            body=orjson.dumps({"count": self.count}), content_type="application/json"
        )


def main() -> None:
    """Serve the floor on ``127.0.0.1:PORT`` until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    web.run_app(
        make_app(Floor(args.redis)), host="127.0.0.1", port=args.port, access_log=None, print=None
    )


async def make_app(floor: Floor) -> web.Application:
    """The floor's application: its script loaded, the source's path and ``/_stats``."""
    floor.sha = await floor.client.script_load(ACCEPT)
    application = web.Application()
    application.router.add_post(SOURCE_PATH, floor.accept)
    application.router.add_get("/_stats", floor.stats)

    async def close(_: web.Application) -> None:
        await floor.client.aclose()

    application.on_cleanup.append(close)
    return application


if __name__ == "__main__":
    main()
