"""One Redis connection kept for pipelined script calls, its replies read straight off the socket.

``AutoPipeline`` sends each loop turn's script calls as one batch. Through a redis-py
``Pipeline`` every batch paid for a pipeline object, a task, a connection checked out of the
pool and back, and a coroutine round per reply; under load that was about a tenth of the
gateway's CPU. A ``Link`` takes one connection from the client's pool (so the address, TLS,
``AUTH``, ``SELECT``, the protocol version and Sentinel's master lookup are redis-py's, done
once) and becomes the protocol of its transport: a batch is one ``write`` of commands packed by
hiredis, and ``data_received`` feeds a hiredis reader and hands each complete batch of replies
to its callback, in the order Redis ran the commands. Nothing else uses the connection, so the
replies arrive in the order the batches were written.

Failures: when the connection closes, or the oldest batch waits ``stall`` seconds without its
replies (the client's socket timeout), every batch in flight gets a ``ConnectionError`` or a
``TimeoutError``; its commands may or may not have run. A link that failed is never used again:
the next batch opens another one through the pool. A ``READONLY`` reply (a Sentinel failover
turned the master into a replica) closes the link too, so the next one finds the new master.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis._parsers import BaseParser
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Called with a batch's replies (each a value or an exception instance) once all arrived, or
#: with the exception that ended the link before they did.
OnReplies = Callable[[list[Any] | BaseException], None]

#: Connections on their way back to the pool (a task must be referenced until it ends).
_GIVING_BACK: set[asyncio.Task[None]] = set()


@dataclass(eq=False)
class _Flight:
    expected: int
    done: OnReplies
    sent_at: float
    replies: list[Any] = field(default_factory=list)


def _ended(connection: AbstractConnection) -> bool:
    """Whether the other side closed ``connection`` (its end of stream has been read)."""
    reader, writer = connection._reader, connection._writer
    return reader is None or writer is None or reader.at_eof() or writer.transport.is_closing()


class Link(asyncio.Protocol):
    """A connection of ``client``'s pool that carries batches of packed commands."""

    def __init__(self, client: Redis, connection: AbstractConnection, stall: float | None) -> None:
        self._client = client
        self._connection = connection
        writer = connection._writer
        if writer is None:
            raise RedisConnectionError("the connection is not open")
        self._transport: asyncio.Transport = writer.transport  # type: ignore[assignment]
        # redis-py's protocol still learns of the end of the connection, so its own state
        # (and its close) stays consistent.
        self._previous = self._transport.get_protocol()
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse, replyError=BaseParser.parse_error
        )
        self._flights: deque[_Flight] = deque()
        self._stall = stall
        self._timer: asyncio.TimerHandle | None = None
        self._given_back = False
        self.error: BaseException | None = None
        self._transport.set_protocol(self)

    @classmethod
    async def open(cls, client: Redis, stall: float | None) -> Link:
        """A link on a connection taken from ``client``'s pool (connected, handshake done)."""
        pool = client.connection_pool
        connection: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            if _ended(connection):
                # Redis closed it while it sat in the pool (a CLIENT KILL, a timeout) and the
                # pool's own check let it through: its end of stream was read already, so the
                # link would never hear of it and its writes would go nowhere. A new one.
                await connection.disconnect()
                await connection.connect()  # type: ignore[no-untyped-call]
            return cls(client, connection, stall)
        except BaseException:
            await pool.release(connection)
            raise

    @property
    def usable(self) -> bool:
        """Whether batches can still be sent on it."""
        return self.error is None

    def send(self, commands: list[bytes], done: OnReplies) -> None:
        """Write packed ``commands``; ``done`` gets their replies (or the link's failure)."""
        if self.error is not None:
            done(self.error)
            return
        self._flights.append(_Flight(len(commands), done, time.monotonic()))
        self._transport.write(b"".join(commands))
        if self._timer is None and self._stall is not None:
            self._arm(self._stall)

    # -- asyncio.Protocol ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if not self._flights:
                    raise InvalidResponse("Redis answered a command that was not sent")
                flight = self._flights[0]
                flight.replies.append(reply)
                if isinstance(reply, ReadOnlyError):
                    self.error = reply
                if len(flight.replies) == flight.expected:
                    self._flights.popleft()
                    flight.done(flight.replies)
        except (InvalidResponse, hiredis.ProtocolError) as exc:
            self._fail(exc)
            return
        if self.error is not None:
            self._fail(self.error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Redis closed the connection: {exc or 'end of stream'}"))
        self._previous.connection_lost(exc)

    def eof_received(self) -> bool | None:
        # Redis closed its side (it exited, or dropped the client): the link is over.
        self._previous.eof_received()  # type: ignore[attr-defined]
        self._fail(RedisConnectionError("Redis closed the connection"))
        return False

    # -- failure ---------------------------------------------------------------------------

    def _arm(self, delay: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(delay, self._check_stall)

    def _check_stall(self) -> None:
        self._timer = None
        if not self._flights or self._stall is None:
            return
        waited = time.monotonic() - self._flights[0].sent_at
        if waited >= self._stall:
            self._fail(RedisTimeoutError(f"Redis did not answer within {self._stall:g} s"))
        else:
            self._arm(self._stall - waited)

    def _fail(self, exc: BaseException) -> None:
        """End the link: every batch in flight gets ``exc``, the connection goes back closed."""
        if self.error is None or self.error is exc:
            self.error = exc if isinstance(exc, RedisError) else RedisConnectionError(str(exc))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        flights, self._flights = self._flights, deque()
        for flight in flights:
            flight.done(self.error)
        if not self._transport.is_closing():
            self._transport.abort()
        if not self._given_back:
            self._given_back = True
            task = asyncio.ensure_future(self._give_back())
            _GIVING_BACK.add(task)
            task.add_done_callback(_GIVING_BACK.discard)

    async def _give_back(self) -> None:
        """Return the (closed) connection to the pool, which reconnects it when next used."""
        # A dead connection's cleanup: the pool may be closing too; nothing to report.
        with contextlib.suppress(Exception):
            await self._connection.disconnect()
            await self._client.connection_pool.release(self._connection)

    def close(self) -> None:
        """Stop using the link (the client's ``aclose`` closes the connection itself)."""
        self._fail(RedisConnectionError("the store was closed"))
