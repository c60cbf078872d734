"""The header deadline's bookkeeping (design.md 2): one timer per listener, and nothing kept
for a request whose headers arrive whole. tests/test_server.py covers it on real sockets."""

from __future__ import annotations

import asyncio

import pytest

from gateway.ingress.deadline import HeaderDeadline, HeaderDeadlines, response_started


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class Inner(asyncio.Protocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.received.append(data)


def connect(deadlines: HeaderDeadlines) -> tuple[HeaderDeadline, Transport, Inner]:
    inner, transport = Inner(), Transport()
    guard = HeaderDeadline(inner, deadlines)
    guard.connection_made(transport)
    return guard, transport, inner


async def test_headers_in_the_first_packet_leave_nothing_to_watch():
    deadlines = HeaderDeadlines(0.2)
    guard, transport, inner = connect(deadlines)
    assert len(deadlines) == 1  # the clock runs from the connection's opening
    request = b"POST /hooks/p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    guard.data_received(request)
    assert len(deadlines) == 0
    assert inner.received == [request]  # handed on unchanged
    # The next request on the kept-alive connection, whole in one packet: never entered.
    response_started(transport)
    guard.data_received(request)
    assert len(deadlines) == 0
    await asyncio.sleep(0.4)
    assert not transport.closed


async def test_a_trickle_is_closed_once_the_deadline_passes():
    deadlines = HeaderDeadlines(0.2)
    guard, transport, _ = connect(deadlines)
    guard.data_received(b"POST /hooks/p HTTP/1.1\r\n")
    await asyncio.sleep(0.1)
    guard.data_received(b"Host: x\r\n")
    assert not transport.closed
    # Cut within a tick (a quarter of the timeout) after the deadline.
    await asyncio.sleep(0.2)
    assert transport.closed
    assert len(deadlines) == 0


async def test_the_end_of_the_headers_split_across_packets_still_counts():
    deadlines = HeaderDeadlines(0.2)
    guard, transport, _ = connect(deadlines)
    guard.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r")
    guard.data_received(b"\n")
    assert len(deadlines) == 0
    await asyncio.sleep(0.35)
    assert not transport.closed


async def test_an_idle_kept_alive_connection_has_no_clock_until_its_next_byte():
    deadlines = HeaderDeadlines(0.2)
    guard, transport, _ = connect(deadlines)
    guard.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    response_started(transport)
    await asyncio.sleep(0.35)
    assert not transport.closed  # idle between requests: aiohttp's keep-alive timeout
    guard.data_received(b"\r\n")  # an empty line first: the clock starts all the same
    await asyncio.sleep(0.35)
    assert transport.closed


async def test_the_timer_stops_when_nothing_waits():
    deadlines = HeaderDeadlines(0.2)
    guard, transport, _ = connect(deadlines)
    guard.connection_lost(None)
    await asyncio.sleep(0.1)
    assert deadlines._timer is None
    assert not transport.closed


def test_a_timeout_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        HeaderDeadlines(0)
