"""HTTP/1.1 for deliveries, with no networking: a POST's bytes and the answer read back (RFC 9112).

``request_bytes`` writes one POST. ``AnswerReader`` is fed what the connection receives and
says when a whole answer is in: its status, its ``Content-Type`` and up to ``limit`` bytes of
its body, and whether the connection may carry another request. The client
(``delivery.client``) moves the bytes; everything here is pure and tested byte by byte.

What a delivery needs of an answer is small, and so is what this reads: interim 1xx answers
are skipped; the body is framed by ``Transfer-Encoding: chunked``, ``Content-Length`` or the
connection's end (RFC 9112 6.3); a body longer than ``limit`` is cut there and its connection
not used again. Anything else that is not HTTP/1.x (a bad status line, a folded or nameless
header line, conflicting lengths, a head over 64 KiB) is an ``InvalidAnswer``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

#: The largest answer head (status line and headers) read.
MAX_HEAD = 64 * 1024
#: The longest chunk-size line read (the size and any extensions).
MAX_CHUNK_LINE = 4 * 1024
#: Statuses whose answer has no body whatever its headers say (RFC 9112 6.3).
_NO_BODY = frozenset({204, 304})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
#: Header names the request writes itself, never taken from the caller.
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})
#: Header names already checked, each with its lower-case form: a delivery's names are few
#: and repeat on every request.
_CHECKED: dict[str, str] = {}
_CHECKED_MAX = 1024

# Body framing: by length, chunked, or until the connection ends.
_LENGTH, _CHUNKED, _TO_CLOSE = 1, 2, 3
# Where a chunked body is: a size line next, the CRLF after a chunk's data, the trailers.
# A positive state is the bytes left of the current chunk's data.
_SIZE, _CRLF, _TRAILERS = -1, -2, -3


class InvalidAnswer(Exception):
    """What came back is not an HTTP/1.x answer this reader can take."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer: its status, its Content-Type and the first ``limit`` bytes of its body."""

    status: int
    content_type: str | None
    body: bytes


def request_bytes(
    target: str,
    host: str,
    headers: Mapping[str, str],
    body: bytes,
    defaults: Mapping[str, str] | None = None,
) -> bytes:
    """One POST of ``body`` to ``target`` (path and query) on ``host`` (the Host header).

    ``defaults`` are sent after ``headers``, each unless ``headers`` names it (in any case).
    No header may set the framing (Host, Content-Length, Transfer-Encoding, Connection); a
    name that is not a token, or a value holding CR, LF or NUL, is a ``ValueError``: no
    header can split the request.
    """
    parts = [f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"]
    given: set[str] = set()
    for name, value in headers.items():
        given.add(_CHECKED.get(name) or _check_name(name))
        parts.append(f"{name}: {value}\r\n")
    for name, value in (defaults or {}).items():
        if (_CHECKED.get(name) or _check_name(name)) not in given:
            parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    head = "".join(parts)
    # Every line was written with one CRLF: any other CR, LF or NUL came from a value.
    lines = len(parts) + 2
    if head.count("\n") != lines or head.count("\r") != lines or "\0" in head:
        raise ValueError("a header value holds CR, LF or NUL")
    return head.encode() + body


def _check_name(name: str) -> str:
    """Check a header name the first time it is seen; its lower-case form."""
    if _TOKEN.fullmatch(name) is None:
        raise ValueError(f"{name!r} is not a header name")
    lower = name.lower()
    if lower in _FRAMING:
        raise ValueError(f"{name} is written by the request itself")
    if len(_CHECKED) >= _CHECKED_MAX:
        _CHECKED.clear()
    _CHECKED[name] = lower
    return lower


class AnswerReader:
    """Reads one answer from what a connection receives (``feed``, then ``end`` at its close)."""

    __slots__ = (
        "_body",
        "_buffer",
        "_chunk",
        "_content_type",
        "_framing",
        "_keep",
        "_left",
        "_limit",
        "_status",
        "reusable",
        "started",
    )

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._body = bytearray()
        self._framing = 0  # until the head is read
        self._status = 0
        self._content_type: str | None = None
        self._keep = False
        self._left = 0
        self._chunk = _SIZE
        #: Whether any byte of an answer came (a request that got none may be sent again).
        self.started = False
        #: After the answer: whether the connection may carry the next request.
        self.reusable = False

    def feed(self, data: bytes) -> Answer | None:
        """Take ``data``; the answer once it is whole, else ``None``."""
        self.started = True
        self._buffer += data
        if not self._framing and not self._read_head():
            return None
        if self._framing == _LENGTH:
            return self._read_length()
        if self._framing == _CHUNKED:
            return self._read_chunks()
        self._keep_body(self._buffer)
        self._buffer.clear()
        return self._answer() if len(self._body) >= self._limit else None

    def end(self) -> Answer:
        """The connection ended: the answer, if it was read to its end (else ``InvalidAnswer``)."""
        if self._framing == _TO_CLOSE:
            return self._answer()
        if not self.started:
            raise InvalidAnswer("the connection closed without an answer")
        raise InvalidAnswer("the connection closed before the answer was complete")

    def _read_head(self) -> bool:
        """Read the head once it is all in (skipping interim answers); whether it is."""
        buffer = self._buffer
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise InvalidAnswer(f"the answer's head is over {MAX_HEAD} bytes")
                return False
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            if self._parse_head(head):
                return True

    def _parse_head(self, head: bytes) -> bool:
        """Take one head; ``False`` for an interim (1xx) answer, to be skipped."""
        lines = head.split(b"\r\n")
        first = lines[0]
        version = first[:8]
        code = first[9:12]
        if (
            version not in (b"HTTP/1.1", b"HTTP/1.0")
            or first[8:9] != b" "
            or not code.isdigit()
            or first[12:13] not in (b"", b" ")
        ):
            raise InvalidAnswer(f"not an HTTP/1.x status line: {first[:80]!r}")
        status = int(code)
        if status < 100:
            raise InvalidAnswer(f"status {status} is not an HTTP status")
        if status == 101:
            raise InvalidAnswer("the destination switched protocols")
        length: int | None = None
        coded = chunked = close = keep_alive = False
        content_type = None
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1] in b" \t" or name[0] in b" \t":
                raise InvalidAnswer(f"not a header line: {line[:80]!r}")
            name = name.lower()
            value = value.strip(b" \t")
            if name == b"content-length":
                if not value.isdigit():
                    raise InvalidAnswer(f"Content-Length is not a number: {value[:40]!r}")
                if length is not None and int(value) != length:
                    raise InvalidAnswer("two different Content-Length headers")
                length = int(value)
            elif name == b"transfer-encoding":
                coded = True
                chunked = value.rsplit(b",", 1)[-1].strip(b" \t").lower() == b"chunked"
            elif name == b"connection":
                tokens = {token.strip(b" \t").lower() for token in value.split(b",")}
                close = close or b"close" in tokens
                keep_alive = keep_alive or b"keep-alive" in tokens
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        if status < 200:
            return False
        self._status = status
        self._content_type = content_type
        self._keep = not close and (version == b"HTTP/1.1" or keep_alive)
        if status in _NO_BODY:
            self._framing, self._left = _LENGTH, 0
        elif coded:
            # RFC 9112 6.1: chunked decides the length (and a Content-Length beside it is
            # ignored, the connection not reused); any other coding runs to the close.
            self._framing = _CHUNKED if chunked else _TO_CLOSE
            self._keep = self._keep and chunked and length is None
        elif length is not None:
            self._framing, self._left = _LENGTH, length
        else:
            self._framing = _TO_CLOSE
        if self._framing == _TO_CLOSE:
            self._keep = False
        return True

    def _read_length(self) -> Answer | None:
        buffer = self._buffer
        take = min(self._left, len(buffer))
        if take:
            self._keep_body(buffer[:take] if take < len(buffer) else buffer)
            del buffer[:take]
            self._left -= take
        if self._left and len(self._body) < self._limit:
            return None
        return self._answer()

    def _read_chunks(self) -> Answer | None:
        buffer = self._buffer
        while True:
            state = self._chunk
            if state == _SIZE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > MAX_CHUNK_LINE:
                        raise InvalidAnswer("a chunk-size line too long")
                    return None
                size = bytes(buffer[:end]).split(b";", 1)[0].strip(b" \t")
                if _HEX.fullmatch(size) is None:
                    raise InvalidAnswer(f"not a chunk size: {size[:40]!r}")
                del buffer[: end + 2]
                self._chunk = int(size, 16) or _TRAILERS
            elif state == _CRLF:
                if len(buffer) < 2:
                    return None
                if buffer[:2] != b"\r\n":
                    raise InvalidAnswer("a chunk's data runs past its size")
                del buffer[:2]
                self._chunk = _SIZE
            elif state == _TRAILERS:
                if buffer[:2] == b"\r\n":
                    del buffer[:2]
                    return self._answer()
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD:
                        raise InvalidAnswer(f"the answer's trailers are over {MAX_HEAD} bytes")
                    return None
                del buffer[: end + 4]
                return self._answer()
            else:
                take = min(state, len(buffer))
                if not take:
                    return None
                self._keep_body(buffer[:take])
                del buffer[:take]
                self._chunk = state - take or _CRLF
                if len(self._body) >= self._limit:
                    self._keep = False  # the rest is never read
                    return self._answer()

    def _keep_body(self, data: bytes | bytearray) -> None:
        room = self._limit - len(self._body)
        if room > 0:
            self._body += data[:room] if len(data) > room else data
        if len(data) > room:
            self._keep = False  # cut: the rest of the body is never read

    def _answer(self) -> Answer:
        # Bytes past the answer were never asked for: the connection is not trusted again.
        self.reusable = self._keep and not self._buffer and not self._left
        return Answer(self._status, self._content_type, bytes(self._body))
