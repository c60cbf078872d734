"""The HTTP client deliveries go out on: keep-alive HTTP/1.1 connections, one POST at a time each.

A delivery needs little of an HTTP client: a POST of a body of known length, no redirects
(design.md 4), no cookies, proxies or compression, and of the answer only its status, its
``Content-Type`` and its first bytes. aiohttp's client does all that and much more, and on
a delivery's path the much more is what costs: 139-203 us of CPU per POST against 21-33 us
for a protocol of this shape, side by side on one core to one nginx (16 at once). This
client is that shape: ``http11`` writes the request and reads the answer, an
``asyncio.Protocol`` per connection moves the bytes, and connections are kept per origin.

* ``limit`` requests run at once (a connection each); more wait for a slot.
* A connection idle longer than ``keepalive`` seconds, or closed by the server, is not used
  again. A request sent on a kept connection that ends before any byte of an answer (the
  server closed it as the request went out) is sent once more on a new connection; one that
  got part of an answer is not.
* ``give_up_after`` covers the whole request: the wait for a slot, connecting (TLS included) and
  the answer. On timeout the connection is closed and the caller gets ``TimeoutError``.
* Everything else that goes wrong (refused, reset, TLS, an answer that is not HTTP) is an
  ``HttpError`` naming what happened. Neither raises for an HTTP status: that is the answer.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, unquote, urlsplit

from gateway import __version__
from gateway.delivery.http11 import Answer, AnswerReader, InvalidAnswer, request_bytes

USER_AGENT = f"webhook-gateway/{__version__}"
#: Characters a request target keeps as they are (RFC 3986 unreserved, sub-delims, ":@/?"
#: and "%" of what is encoded already); anything else is percent-encoded.
_TARGET_SAFE = "/%:@!$&'()*+,;=-._~?"
#: Destinations' URLs remembered, parsed (a few per config; more only after many reloads).
_TARGETS_MAX = 1024


class HttpError(Exception):
    """A request got no answer: not connected, closed early, or answered with something not
    HTTP. The message says which."""


class _Unanswered(HttpError):
    """The connection ended before any byte of an answer: the request may be sent again."""


@dataclass(frozen=True, slots=True)
class _Origin:
    host: str
    port: int
    tls: bool


@dataclass(frozen=True, slots=True)
class _Target:
    origin: _Origin
    path: str  # the request target: path and query
    host: str  # the Host header
    #: Headers sent unless the caller's name them: the User-Agent, the URL's Basic auth.
    defaults: dict[str, str]


def _target_of(url: str, agent: str) -> _Target:
    """Parse a destination URL once: where to connect and what the request names."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise HttpError(f"not a usable URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise HttpError(f"not an http or https URL: {url[:80]!r}")
    if not parts.hostname:
        raise HttpError(f"the URL names no host: {url[:80]!r}")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise HttpError(f"not a usable host name: {exc}") from exc
    tls = scheme == "https"
    port = port or (443 if tls else 80)
    named = f"[{host}]" if ":" in host else host
    header = named if port == (443 if tls else 80) else f"{named}:{port}"
    path = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_TARGET_SAFE)
    defaults = {"User-Agent": agent}
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        defaults["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    return _Target(_Origin(host, port, tls), path, header, defaults)


class _Connection(asyncio.Protocol):
    """One connection: a request written, its answer read, then idle until the next."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.open = True
        self.idle_since = 0.0
        self._reader: AnswerReader | None = None
        self._waiter: asyncio.Future[Answer] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they are one.
        self.transport = cast(asyncio.Transport, transport)

    def exchange(self, request: bytes, limit: int) -> asyncio.Future[Answer]:
        """Write ``request``; the future of its answer (or of why there is none)."""
        assert self.transport is not None
        self._reader = AnswerReader(limit)
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return waiter

    @property
    def reusable(self) -> bool:
        """Whether the last answer left the connection fit for another request."""
        return self.open and self._reader is not None and self._reader.reusable

    def data_received(self, data: bytes) -> None:
        reader, waiter = self._reader, self._waiter
        if reader is None or waiter is None or waiter.done():
            # Bytes no request asked for: the connection is out of step, never used again.
            self.abort()
            return
        try:
            answer = reader.feed(data)
        except InvalidAnswer as exc:
            waiter.set_exception(HttpError(f"not a readable HTTP answer: {exc}"))
            self.abort()
            return
        if answer is not None:
            self._waiter = None
            if not reader.reusable:
                self.open = False
                assert self.transport is not None
                self.transport.close()
            waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        reader, waiter = self._reader, self._waiter
        self._waiter = None
        if reader is None or waiter is None or waiter.done():
            return
        try:
            waiter.set_result(reader.end())
        except InvalidAnswer as error:
            why = f"{error}" if exc is None else f"{error}: {exc}"
            waiter.set_exception(HttpError(why) if reader.started else _Unanswered(why))

    def time_out(self, seconds: float) -> None:
        """The request's time ran out: fail its waiter and drop the connection."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError(f"no answer within {seconds:g} s"))
        self.abort()

    def abort(self) -> None:
        """Close at once, dropping whatever is unsent or unread."""
        self.open = False
        if self.transport is not None:
            self.transport.abort()


class DeliveryClient:
    """POSTs to destinations over kept connections (see the module's docstring)."""

    def __init__(
        self,
        *,
        limit: int = 32,
        keepalive: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._slots = asyncio.Semaphore(limit)
        self._keepalive = keepalive
        self._ssl = ssl_context
        self._agent = user_agent
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._closed = False

    async def post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        *,
        give_up_after: float,
        read_limit: int = 64 * 1024,
    ) -> Answer:
        """POST ``body`` with ``headers`` to ``url``; the answer, whatever its status.

        ``User-Agent`` is the gateway's unless ``headers`` has one. Raises ``TimeoutError``
        after ``give_up_after`` seconds and ``HttpError`` for anything else than an answer.
        """
        if self._closed:
            raise HttpError("the delivery client is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after
        target = self._targets.get(url)
        if target is None:
            target = self._remember(url)
        try:
            request = request_bytes(target.path, target.host, headers, body, target.defaults)
        except ValueError as exc:
            raise HttpError(f"the request cannot be written: {exc}") from exc
        if self._slots.locked():
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        else:
            await self._slots.acquire()
        try:
            connection = self._take_idle(target.origin, loop.time())
            if connection is not None:
                try:
                    return await self._exchange(connection, target, request, read_limit, deadline)
                except _Unanswered:
                    pass  # the server closed it as the request went out: once more, anew
            connection = await self._connect(target.origin, deadline)
            return await self._exchange(connection, target, request, read_limit, deadline)
        finally:
            self._slots.release()

    def _remember(self, url: str) -> _Target:
        target = _target_of(url, self._agent)
        if len(self._targets) >= _TARGETS_MAX:
            self._targets.clear()
        self._targets[url] = target
        return target

    async def _exchange(
        self,
        connection: _Connection,
        target: _Target,
        request: bytes,
        read_limit: int,
        deadline: float,
    ) -> Answer:
        loop = asyncio.get_running_loop()
        waiter = connection.exchange(request, read_limit)
        timer = loop.call_at(deadline, connection.time_out, deadline - loop.time())
        try:
            answer = await waiter
        except BaseException:
            connection.abort()  # cancelled, or failed: its state is unknown
            raise
        finally:
            timer.cancel()
        if not connection.reusable:
            return answer
        if self._closed:
            connection.abort()
            return answer
        now = connection.idle_since = loop.time()
        idle = self._idle.setdefault(target.origin, [])
        idle.append(connection)
        # The least recently used is at the bottom: once it has idled past ``keepalive`` it
        # goes, so connections a burst opened do not stay open for ever after it.
        if now - idle[0].idle_since >= self._keepalive:
            idle.pop(0).abort()
        return answer

    def _take_idle(self, origin: _Origin, now: float) -> _Connection | None:
        """The most recently used kept connection to ``origin`` that is still fit."""
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.open and now - connection.idle_since < self._keepalive:
                return connection
            connection.abort()
        return None

    async def _connect(self, origin: _Origin, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if origin.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        try:
            async with asyncio.timeout_at(deadline):
                _, connection = await loop.create_connection(
                    _Connection,
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls is not None else None,
                )
        except OSError as exc:  # refused, unreachable, no such host, TLS (ssl.SSLError)
            raise HttpError(f"cannot connect to {origin.host}:{origin.port}: {exc}") from exc
        return connection

    async def close(self) -> None:
        """Close every kept connection; later requests fail with ``HttpError``."""
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()
