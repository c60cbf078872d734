"""Read a request body within a size limit and a time limit (design.md 2, stage 4)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.http_exceptions import ContentLengthError

from gateway.errors import BodyTimeout, BodyTooLarge, ClientClosed, InvalidBody


def declared_length(request: web.BaseRequest) -> int | None:
    """The ``Content-Length`` the sender declared, or ``None``; a malformed one is a 400."""
    text = request.headers.get("Content-Length")
    if text is None:
        return None
    text = text.strip()
    if not text.isdigit():
        raise InvalidBody("Content-Length is not a number")
    return int(text)


async def read_body(request: web.BaseRequest, limit: int, *, read_timeout: float) -> bytes:
    """The whole body, refused before reading when declared too long, and while streaming.

    A chunked body has no declared length, so the running total is checked as it arrives and
    the read stops at the first byte past the limit: memory never holds more than ``limit``.
    """
    length = declared_length(request)
    if length is not None and length > limit:
        raise BodyTooLarge(f"request body is larger than {limit} bytes")
    content = request.content
    if content.is_eof():
        # The whole body already arrived (a webhook's small body usually comes in the same
        # packets as its headers): nothing to wait for, so no timer to arm.
        try:
            body = content.read_nowait()
        except (ConnectionError, ContentLengthError) as exc:
            # The sender hung up after sending it, while an earlier stage (a rate-limit call)
            # was waiting: aiohttp keeps the loss on the stream and raises it here.
            raise ClientClosed() from exc
        if len(body) > limit:
            raise BodyTooLarge(f"request body is larger than {limit} bytes")
        return body
    chunks: list[bytes] = []
    received = 0
    try:
        async with asyncio.timeout(read_timeout):
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                received += len(chunk)
                if received > limit:
                    raise BodyTooLarge(f"request body is larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError as exc:
        raise BodyTimeout() from exc
    except (ConnectionError, ContentLengthError) as exc:
        # The sender hung up mid-body: aiohttp ends the read with ConnectionResetError, or with
        # ContentLengthError when the connection closed short of the declared length.
        raise ClientClosed() from exc
    return b"".join(chunks)
