"""Auto-pipelining for Redis: the script calls made in one turn of the event loop share writes.

Each ingress request makes its own store calls (a rate-limit hit, an accept). Sent one by one,
every call costs a round trip and a wake-up of the event loop for its answer; under load most
of the gateway's time went there. ``AutoPipeline`` queues each call and, once the loop has run
everything else that was ready, writes all queued calls as one pipeline and reads all the
answers back: one write and one read per Redis node for however many requests were in flight
(on a single Redis, a write every ``early_flush`` calls within the turn; see below).
Each caller still gets its own answer (or its own error), in the same order Redis ran them.

On a Redis Cluster the batch is split by the master that owns each call's first key (every key
of a script shares one hash slot), and each master gets its own pipeline, all sent at once. A
call a master answers with ``MOVED``, ``ASK``, ``TRYAGAIN`` or ``CLUSTERDOWN`` did not run: the
slot table is read again and the call goes in a later batch (a few times at most). A call whose
connection broke may or may not have run, so its caller gets the error (a sender retries, and
dedupe makes the retry safe); the slot table is read again before the next batch, since a
broken connection to a master is how a failover shows.

Replica acknowledgement (``replicas`` > 0, ``store.wait_replicas``): Redis replicates
asynchronously, so a master that dies can take the writes its replicas had not received with
it, and a failover would lose events already answered 2xx. A call made ``durable`` is answered
only once ``WAIT`` on the same connection (which covers every write made on it so far) says
that many replicas have it; if fewer confirm within ``replica_timeout``, the caller gets
``NotReplicated`` and the sender is told to retry. One ``WAIT`` per connection covers the
whole batch.

Scripts are loaded at start (``load``) and again only when Redis says it lacks one (after a
restart or a failover): a ``NOSCRIPT`` answer means the script did not run, so those calls are
sent again, alone, once it is loaded.

On a single Redis (plain or Sentinel-found), batches go over one ``Link``
(``gateway.redisio.link``): a connection of the client's pool kept for them, each batch written
as soon as it is made and its replies handed out as they are read, with no task or pipeline
object per batch. A batch is written once ``early_flush`` calls are queued, without waiting
for the end of the turn: one loop turn can make dozens of calls (every request whose body
arrived in it), and written together they kept Redis idle while the loop made them and then
the loop idle while Redis ran them all, the requests moving in one convoy. Written four at a
time, Redis runs the first while the loop is making the rest; a few more small writes cost
little. A call may carry its own deadline (``give_up_after``, the rate limiter's):
its caller gets a ``TimeoutError`` then, and the reply, when it comes, is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode, PipelineCommand
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    ClusterDownError,
    DataError,
    MovedError,
    NoScriptError,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)

from gateway.redisio.link import Link
from gateway.redisio.packing import pack

#: Most calls one pipeline carries; more wait for the next turn.
MAX_BATCH = 512
#: On a single Redis, a batch this large is written at once instead of at the end of the turn
#: (see the module's docstring).
EARLY_FLUSH = 4
#: How often a call that did not run (a slot moved, the cluster was failing over, the server
#: lacked the script) is sent again.
MAX_REDIRECTS = 5
#: Answers that mean the command did not run on that node: safe to send again.
_NOT_RUN = (MovedError, AskError, TryAgainError, ClusterDownError, SlotNotCoveredError)


class NotReplicated(RedisError):
    """Fewer replicas than required confirmed a write in time: it may be lost in a failover."""


@dataclass(eq=False)
class _Call:
    script: AsyncScript
    keys: Sequence[Any]
    args: Sequence[Any]
    future: asyncio.Future[Any]
    durable: bool
    redirects: int = field(default=0)


class AutoPipeline:
    """Batches script calls on one client: pipelined round trips, a few per node per loop turn."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        max_batch: int = MAX_BATCH,
        *,
        early_flush: int = EARLY_FLUSH,
        replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        if replicas < 0:
            raise ValueError("replicas must be 0 or more")
        self._client = client
        # Decided once: an isinstance check against redis-py's client classes goes through a
        # Protocol metaclass, too slow to repeat for every batch on the request path.
        self._cluster: RedisCluster | None = None
        self._single: Redis | None = None
        if isinstance(client, RedisCluster):
            self._cluster = client
        else:
            self._single = client
        self._max_batch = max_batch
        self._early = early_flush
        self._replicas = replicas
        self._wait_ms = max(1, round(replica_timeout * 1000))
        self._queued: list[_Call] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        self._stale_slots = False
        self._link: Link | None = None
        self._link_lock = asyncio.Lock()
        # A batch whose replies do not come within the client's socket timeout ends the link.
        self._stall: float | None = (
            None
            if self._single is None
            else self._single.connection_pool.connection_kwargs.get("socket_timeout")
        )

    async def call(
        self,
        script: AsyncScript,
        keys: Sequence[Any],
        args: Sequence[Any],
        *,
        durable: bool = False,
        give_up_after: float | None = None,
    ) -> Any:
        """Run ``script`` with ``keys`` and ``args`` in the next batch; its answer.

        ``durable``: answer only once the configured number of replicas have the write.
        ``give_up_after``: seconds after which the caller gets ``TimeoutError`` (the call may
        still run); one timer instead of an ``asyncio.timeout`` block, which costs several times
        more.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._enqueue(_Call(script, keys, args, future, durable and self._replicas > 0))
        if give_up_after is None:
            return await future
        timer = loop.call_later(give_up_after, _time_out, future, give_up_after)
        try:
            return await future
        finally:
            timer.cancel()

    def _enqueue(self, call: _Call) -> None:
        self._queued.append(call)
        link = self._link
        if len(self._queued) >= self._early and link is not None and link.usable:
            # Enough for one write: Redis starts on these while the loop makes the next ones.
            batch, self._queued = self._queued, []
            self._write(link, batch)
            return
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Send what is queued (at most ``max_batch``; the rest goes next turn)."""
        batch, self._queued = self._queued[: self._max_batch], self._queued[self._max_batch :]
        self._scheduled = bool(self._queued)
        if not batch:
            return  # written early, from ``_enqueue``
        if self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        if self._cluster is not None:
            self._spawn(self._send_cluster(self._cluster, batch))
        elif self._link is not None and self._link.usable:
            self._write(self._link, batch)
        elif self._single is not None:
            self._spawn(self._send_on_new_link(self._single, batch))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_on_new_link(self, client: Redis, batch: list[_Call]) -> None:
        """Open a link (one at a time) to the single Redis, then send ``batch`` on it."""
        try:
            async with self._link_lock:
                link = self._link
                if link is None or not link.usable:
                    link = self._link = await Link.open(client, self._stall)
        except asyncio.CancelledError:
            _cancel(batch)
            raise
        except Exception as exc:  # noqa: BLE001 - every caller gets it, nothing is swallowed
            _fail(batch, exc)
            return
        self._write(link, batch)

    def _write(self, link: Link, batch: list[_Call]) -> None:
        """One write of the batch's commands (and ``WAIT`` if a call is durable)."""
        commands: list[bytes] = []
        calls: list[_Call] = []
        for call in batch:
            if call.future.done():
                continue  # the caller gave up before it was sent
            try:
                commands.append(
                    pack(("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args))
                )
            except DataError as exc:  # an argument redis-py would refuse too: None, a dict, ...
                call.future.set_exception(exc)
                continue
            calls.append(call)
        if not calls:
            return
        wait = any(call.durable for call in calls)
        if wait:
            commands.append(pack(("WAIT", self._replicas, self._wait_ms)))

        def done(replies: list[Any] | BaseException) -> None:
            if isinstance(replies, BaseException):
                _fail(calls, replies)
                return
            acked = replies.pop() if wait else None
            self._answer(calls, replies, acked)

        link.send(commands, done)

    async def _send_cluster(self, client: RedisCluster, batch: list[_Call]) -> None:
        """One pipeline per master that owns a call's slot, sent at once."""
        try:
            if self._stale_slots:
                self._stale_slots = False
                await client.nodes_manager.initialize()
            await client.initialize()
        except asyncio.CancelledError:
            _cancel(batch)
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the callers
            self._stale_slots = True
            _fail(batch, exc)
            return
        groups: dict[str, tuple[ClusterNode, list[_Call]]] = {}
        for call in batch:
            try:
                node = client.get_node_from_key(call.keys[0])
                if node is None:
                    raise SlotNotCoveredError(f"no master serves the slot of {call.keys[0]!r}")
            except Exception as exc:  # noqa: BLE001 - no master for the slot: this caller's error
                self._stale_slots = True
                if not call.future.done():
                    call.future.set_exception(exc)
                continue
            groups.setdefault(node.name, (node, []))[1].append(call)
        await asyncio.gather(*(self._send_node(node, calls) for node, calls in groups.values()))

    async def _send_node(self, node: ClusterNode, calls: list[_Call]) -> None:
        wait = any(call.durable for call in calls)
        commands = [
            PipelineCommand(i, "EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)
            for i, c in enumerate(calls)
        ]
        if wait:
            commands.append(PipelineCommand(len(calls), "WAIT", self._replicas, self._wait_ms))
        try:
            await node.execute_pipeline(commands)
        except asyncio.CancelledError:
            _cancel(calls)
            raise
        except Exception as exc:  # noqa: BLE001 - every caller gets it, nothing is swallowed
            self._stale_slots = True  # a master that cannot be reached may have failed over
            _fail(calls, exc)
            return
        replies = [command.result for command in commands]
        acked = replies.pop() if wait else None
        done: list[_Call] = []
        answers: list[Any] = []
        retry: list[_Call] = []
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, _NOT_RUN) and call.redirects < MAX_REDIRECTS:
                retry.append(call)
            else:
                done.append(call)
                answers.append(reply)
        if retry:
            # Not run there: read the slot table again and send these in a later batch
            # (after a pause that grows, as a failover takes a moment to settle).
            self._stale_slots = True
            await asyncio.sleep(0.05 * max(call.redirects for call in retry))
            for call in retry:
                call.redirects += 1
                self._enqueue(call)
        self._answer(done, answers, acked)

    def _answer(self, batch: list[_Call], replies: Sequence[Any], acked: Any) -> None:
        """Hand each caller its reply; durable ones only if the replicas confirmed."""
        if isinstance(acked, Exception):
            shortfall: Exception | None = acked
        elif acked is not None and int(acked) < self._replicas:
            shortfall = NotReplicated(
                f"only {int(acked)} of {self._replicas} replicas confirmed the write within"
                f" {self._wait_ms} ms (store.wait_replicas); it may not survive a failover"
            )
        else:
            shortfall = None
        missing: list[_Call] = []
        for call, reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError):
                missing.append(call)
            elif call.future.done():
                continue  # the caller gave up (a timeout); the command ran all the same
            elif isinstance(reply, Exception):
                call.future.set_exception(reply)
            elif call.durable and shortfall is not None:
                call.future.set_exception(shortfall)
            else:
                call.future.set_result(reply)
        if missing:
            self._spawn(self._reload(missing))

    async def _reload(self, missing: list[_Call]) -> None:
        """Calls answered ``NOSCRIPT`` did not run: load each script once, then send the
        calls again, in a later batch (so a durable call still gets its WAIT); a few times at
        most, should the load not take."""
        loaded: dict[int, BaseException | None] = {}
        for call in missing:
            if call.redirects >= MAX_REDIRECTS:
                if not call.future.done():
                    call.future.set_exception(NoScriptError("the script could not be loaded"))
                continue
            call.redirects += 1
            script = call.script
            if id(script) not in loaded:
                try:
                    script.sha = await self._client.script_load(script.script)
                    loaded[id(script)] = None
                except Exception as exc:  # noqa: BLE001 - handed to its callers
                    loaded[id(script)] = exc
            failure = loaded[id(script)]
            if failure is None:
                self._enqueue(call)
            elif not call.future.done():
                call.future.set_exception(failure)

    async def load(self, scripts: Sequence[AsyncScript]) -> None:
        """Load ``scripts`` now (at start, on every master), so batches meet no ``NOSCRIPT``."""
        for script in scripts:
            script.sha = await self._client.script_load(script.script)

    def close(self) -> None:
        """Fail what is in flight on the link and stop using it (before the client closes)."""
        if self._link is not None:
            self._link.close()
            self._link = None


def _fail(calls: Sequence[_Call], exc: BaseException) -> None:
    for call in calls:
        if not call.future.done():
            call.future.set_exception(exc)


def _time_out(future: asyncio.Future[Any], timeout: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"Redis did not answer within {timeout:g} s"))


def _cancel(calls: Sequence[_Call]) -> None:
    for call in calls:
        call.future.cancel()
