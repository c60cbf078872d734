"""A deadline for request headers: a slow sender cannot hold a connection forever.

aiohttp bounds idle keep-alive connections but not the time a client takes to send a request's
headers, so a client dribbling one byte at a time (slowloris) would hold a connection and its
memory indefinitely. ``HeaderDeadline`` wraps aiohttp's protocol object: when the first byte of
a request arrives, a timer starts, and the connection is closed unless the headers' terminating
empty line (RFC 9112, section 2.1) arrives before it fires. ``response_started`` re-arms it for
the next request on a kept-alive connection.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

log = logging.getLogger("gateway.ingress")

#: The deadline guarding each open transport, for ``response_started`` to find.
_GUARDS: weakref.WeakKeyDictionary[asyncio.BaseTransport, HeaderDeadline] = (
    weakref.WeakKeyDictionary()
)


class HeaderDeadline(asyncio.Protocol):
    """aiohttp's protocol, closed if request headers take longer than ``timeout`` seconds."""

    def __init__(self, inner: Any, timeout: float) -> None:
        self._inner = inner
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._waiting = True  # for the headers of a request that has not started yet
        self._begun = False  # a byte other than CR or LF has arrived for it
        self._tail = b""
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the clock at once: a connection that sends nothing is cut too."""
        self._transport = transport
        _GUARDS[transport] = self
        self._start()
        self._inner.connection_made(transport)

    def _start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            log.info("closing a connection whose request headers did not arrive in time")
            self._transport.close()

    def next_request(self) -> None:
        """A response began: the next bytes on this connection start a new request."""
        self._waiting = True
        self._begun = False
        self._tail = b""

    def data_received(self, data: bytes) -> None:
        """Watch for the end of the headers, then hand the bytes to aiohttp unchanged."""
        if self._waiting:
            if self._timer is None:
                self._start()  # from the first byte, whatever it is
            seen = data
            if not self._begun:
                # Empty lines before a request line are allowed (RFC 9112, section 2.2) and
                # end nothing: only after the request line can an empty line end the headers.
                seen = data.lstrip(b"\r\n")
                self._begun = bool(seen)
            if self._begun and b"\r\n\r\n" in self._tail + seen:
                self._stop()
            elif self._begun:
                self._tail = (self._tail + seen)[-3:]
        self._inner.data_received(data)

    def headers_arrived(self) -> None:
        """aiohttp parsed a request's headers (its handler runs): the deadline is met."""
        self._stop()

    def _stop(self) -> None:
        self._waiting = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def eof_received(self) -> bool | None:
        """Passed to aiohttp."""
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        """Passed to aiohttp; the timer goes with the connection."""
        self._stop()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        """Passed to aiohttp."""
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        """Passed to aiohttp."""
        self._inner.resume_writing()


def headers_arrived(transport: asyncio.BaseTransport | None) -> None:
    """End the header deadline of ``transport``'s current request (its handler has begun)."""
    if transport is not None:
        guard = _GUARDS.get(transport)
        if guard is not None:
            guard.headers_arrived()


def response_started(transport: asyncio.BaseTransport | None) -> None:
    """Re-arm the deadline of ``transport`` for its next request (keep-alive)."""
    if transport is not None:
        guard = _GUARDS.get(transport)
        if guard is not None:
            guard.next_request()
