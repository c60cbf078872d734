"""A deadline for request headers: a slow sender cannot hold a connection forever.

aiohttp bounds idle keep-alive connections but not the time a client takes to send a request's
headers, so a client dribbling one byte at a time (slowloris) would hold a connection and its
memory indefinitely. ``HeaderDeadline`` sits in front of aiohttp's protocol object: from a
connection's opening, and from the first byte of each later request on it, the connection is
closed unless the headers' terminating empty line (RFC 9112, section 2.1) arrives within the
listener's timeout. ``response_started`` re-arms it for the next request on a kept-alive one.

The clock costs a request nothing when its headers come in the packet that starts them, as a
webhook's do: only a request whose headers are still incomplete after a packet is entered in
its listener's ``HeaderDeadlines``, whose one timer closes the late ones. That timer ticks
every quarter of the timeout (at most every second) while a connection waits, so a deadline
is enforced within that tick after it passes; no timer is armed and cancelled per request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("gateway.ingress")

#: The deadline guarding each open transport, for ``headers_arrived`` and ``response_started``
#: to find (a plain dict: an entry leaves with its connection).
_GUARDS: dict[asyncio.BaseTransport, HeaderDeadline] = {}

#: The longest interval between two checks of a listener's waiting connections.
MAX_TICK = 1.0


class HeaderDeadlines:
    """The connections of one listener whose request headers are late, checked by one timer."""

    def __init__(self, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.timeout = timeout
        self._tick = min(MAX_TICK, timeout / 4)
        self._since: dict[HeaderDeadline, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._since)

    def start(self, guard: HeaderDeadline) -> None:
        """``guard``'s connection waits for headers from now."""
        loop = asyncio.get_running_loop()
        self._since[guard] = loop.time()
        if self._timer is None:
            self._timer = loop.call_later(self._tick, self._sweep)

    def stop(self, guard: HeaderDeadline) -> None:
        """``guard``'s connection no longer waits (its headers came, or it closed)."""
        self._since.pop(guard, None)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        late = loop.time() - self.timeout
        for guard, since in list(self._since.items()):
            if since <= late:
                del self._since[guard]
                guard.expire()
        self._timer = loop.call_later(self._tick, self._sweep) if self._since else None


class HeaderDeadline(asyncio.Protocol):
    """aiohttp's protocol, closed if request headers take longer than the listener's timeout."""

    __slots__ = ("_begun", "_deadlines", "_entered", "_inner", "_tail", "_transport", "_waiting")

    def __init__(self, inner: Any, deadlines: HeaderDeadlines) -> None:
        self._inner = inner
        self._deadlines = deadlines
        self._waiting = True  # for the headers of a request that has not started yet
        self._begun = False  # a byte other than CR or LF has arrived for it
        self._entered = False  # its clock runs (in ``deadlines``)
        self._tail = b""
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the clock at once: a connection that sends nothing is cut too."""
        self._transport = transport
        _GUARDS[transport] = self
        self._enter()
        self._inner.connection_made(transport)

    def _enter(self) -> None:
        self._entered = True
        self._deadlines.start(self)

    def expire(self) -> None:
        """The deadline passed: close the connection (``HeaderDeadlines`` calls this)."""
        self._entered = False
        transport = self._transport
        if transport is not None and not transport.is_closing():
            log.info("closing a connection whose request headers did not arrive in time")
            transport.close()

    def next_request(self) -> None:
        """A response began: the next bytes on this connection start a new request."""
        self._waiting = True
        self._begun = False
        self._tail = b""

    def data_received(self, data: bytes) -> None:
        """Watch for the end of the headers, then hand the bytes to aiohttp unchanged."""
        if self._waiting:
            self._watch(data)
        self._inner.data_received(data)

    def _watch(self, data: bytes) -> None:
        seen = data
        if not self._begun:
            # Empty lines before a request line are allowed (RFC 9112, section 2.2) and end
            # nothing: only after the request line can an empty line end the headers.
            seen = data.lstrip(b"\r\n")
            self._begun = bool(seen)
        if self._begun:
            if b"\r\n\r\n" in (self._tail + seen if self._tail else seen):
                self._stop()
                return
            self._tail = (self._tail + seen)[-3:]
        if not self._entered:
            self._enter()  # from the first byte, whatever it is

    def headers_arrived(self) -> None:
        """aiohttp parsed a request's headers (its handler runs): the deadline is met."""
        if self._waiting:
            self._stop()

    def _stop(self) -> None:
        self._waiting = False
        if self._entered:
            self._entered = False
            self._deadlines.stop(self)

    def eof_received(self) -> bool | None:
        """Passed to aiohttp."""
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        """Passed to aiohttp; the clock and the entry go with the connection."""
        self._stop()
        if self._transport is not None:
            _GUARDS.pop(self._transport, None)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        """Passed to aiohttp."""
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        """Passed to aiohttp."""
        self._inner.resume_writing()


def headers_arrived(transport: asyncio.BaseTransport | None) -> None:
    """End the header deadline of ``transport``'s current request (its handler has begun)."""
    guard = _GUARDS.get(transport) if transport is not None else None
    if guard is not None:
        guard.headers_arrived()


def response_started(transport: asyncio.BaseTransport | None) -> None:
    """Re-arm the deadline of ``transport`` for its next request (keep-alive)."""
    guard = _GUARDS.get(transport) if transport is not None else None
    if guard is not None:
        guard.next_request()
