"""Helpers for the buyer's status streams (design.md 5.10): tokens minted by hand, as the
docs tell a marketplace to (independent of ``gateway.status.token``), the config block, and
readers for both transports that wait with a bound."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import aiohttp

#: The secret the tests' marketplace and gateway share (at least 32 bytes).
STATUS_SECRET = "status-token-secret-for-tests-0123456789abcdef"
ORIGIN = "https://market.example"
#: Bound on any wait for a message or the end of a stream.
WAIT = 15.0
FIELDS = {"source", "key", "state", "amount", "confirmed", "updated_at"}


def mint(
    source: str,
    key: str,
    *,
    ttl: float = 600,
    expiry: int | None = None,
    secret: str = STATUS_SECRET,
) -> str:
    """``v1.<expiry>.<sig>``, written from the contract's words, not the gateway's code."""
    if expiry is None:
        expiry = int(time.time() + ttl)
    text = f"v1.{source}.{key}.{expiry}".encode()
    digest = hmac.new(secret.encode(), text, hashlib.sha256).digest()
    return f"v1.{expiry}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def status_block(**overrides: Any) -> dict[str, Any]:
    """A config's ``status:`` block with the tests' secret and origin."""
    return {"secret": STATUS_SECRET, "allow_origins": [ORIGIN], **overrides}


def status_path(source: str, key: str, token: str | None = None, **mint_kw: Any) -> str:
    """The stream's path and query for ``(source, key)``, with a fresh token by default."""
    token = mint(source, key, **mint_kw) if token is None else token
    return f"/status/{source}/{key}?token={token}"


class Sse:
    """Reads a Server-Sent Events response: ``data:`` messages (parsed), comment lines, and
    the end of the stream."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.messages: list[dict[str, Any]] = []
        self.comments: list[str] = []
        self.ended = False

    async def _line(self) -> bytes:
        async with asyncio.timeout(WAIT):
            return await self.response.content.readline()

    async def next(self) -> dict[str, Any] | None:
        """The next message, or ``None`` once the stream ended."""
        data: list[str] = []
        while True:
            raw = await self._line()
            if not raw:
                self.ended = True
                return None
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                self.comments.append(line)
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                message = json.loads("\n".join(data))
                self.messages.append(message)
                return message

    async def until(self, check: Any) -> dict[str, Any]:
        """Read messages until one satisfies ``check``; that one."""
        while True:
            message = await self.next()
            assert message is not None, f"the stream ended first; messages: {self.messages}"
            if check(message):
                return message

    async def end(self) -> list[dict[str, Any]]:
        """Read to the end of the stream; every message seen."""
        while await self.next() is not None:
            pass
        return self.messages


async def ws_next(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """The next frame the client sees, bounded."""
    async with asyncio.timeout(WAIT):
        return await ws.receive()


async def ws_until(ws: aiohttp.ClientWebSocketResponse, check: Any) -> list[dict[str, Any]]:
    """Read text frames until one satisfies ``check``; every message up to it."""
    seen: list[dict[str, Any]] = []
    while True:
        frame = await ws_next(ws)
        assert frame.type == aiohttp.WSMsgType.TEXT, (frame, seen)
        seen.append(json.loads(frame.data))
        if check(seen[-1]):
            return seen


async def ws_rest(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Read text frames until the socket closes; the messages seen (``ws.close_code`` says
    how it closed)."""
    seen: list[dict[str, Any]] = []
    while True:
        frame = await ws_next(ws)
        if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return seen
        assert frame.type == aiohttp.WSMsgType.TEXT, (frame, seen)
        seen.append(json.loads(frame.data))
