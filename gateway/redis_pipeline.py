"""Auto-pipelining for Redis: the script calls made in one turn of the event loop go together.

Each ingress request makes its own store calls (a rate-limit hit, an accept). Sent one by one,
every call costs a round trip and a wake-up of the event loop for its answer; under load most
of the gateway's time went there. ``AutoPipeline`` queues each call and, once the loop has run
everything else that was ready, writes all queued calls as one pipeline and reads all the
answers back: one write and one read per Redis node for however many requests were in flight.
Each caller still gets its own answer (or its own error), in the same order Redis ran them.

Scripts are loaded at start (``load``) and again only when Redis says it lacks one (after a
restart or a failover): a ``NOSCRIPT`` answer means the script did not run, so those calls are
sent again, alone, once it is loaded.

On a Redis Cluster each call goes on its own (redis-py routes it to the slot's master and
follows ``MOVED``; its cluster pipeline does not carry scripts): there, throughput comes from
the masters the store's partitions spread over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

#: Most calls one pipeline carries; more wait for the next turn.
MAX_BATCH = 512

_Call = tuple[AsyncScript, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class AutoPipeline:
    """Batches script calls on one client: one pipelined round trip per loop turn."""

    def __init__(self, client: Redis | RedisCluster, max_batch: int = MAX_BATCH) -> None:
        self._client = client
        self._max_batch = max_batch
        self._queued: list[_Call] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run ``script`` with ``keys`` and ``args`` in the next batch; its answer."""
        if isinstance(self._client, RedisCluster):
            return await script(keys=keys, args=args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((script, keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """Send what is queued (at most ``max_batch``; the rest goes next turn)."""
        batch, self._queued = self._queued[: self._max_batch], self._queued[self._max_batch :]
        self._scheduled = bool(self._queued)
        if self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            pipe = self._client.pipeline(transaction=False)
            for script, keys, args, _ in batch:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for *_, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every caller gets it, nothing is swallowed
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        missing: list[_Call] = []
        for call, reply in zip(batch, replies, strict=True):
            future = call[3]
            if isinstance(reply, NoScriptError):
                missing.append(call)
            elif future.done():
                continue  # the caller gave up (a timeout); the command ran all the same
            elif isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
        for script, keys, args, future in missing:
            # Not run: load the script (the client reloads it on NOSCRIPT) and run it alone.
            try:
                reply = await script(keys=keys, args=args, client=self._client)
            except Exception as exc:  # noqa: BLE001 - handed to its caller
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(reply)

    async def load(self, scripts: Sequence[AsyncScript]) -> None:
        """Load ``scripts`` now (at start, on every master), so batches meet no ``NOSCRIPT``."""
        for script in scripts:
            script.sha = await self._client.script_load(script.script)
