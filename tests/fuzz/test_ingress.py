"""The ingress of a real ``python -m gateway run`` process, fed through a raw TCP socket: header
bytes aiohttp's client would refuse to send, and signed events whose JSON values are arbitrary.
Whatever arrives, the answer is a documented one (design.md 2): a refusal with its error code, an
acceptance, or 503, never another 5xx.

The gateway, its SQLite store and a destination run for the whole module, on a loop in a thread
of their own; each example opens one connection (``Connection: close``) and reads the answer to
the end, within a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.gateway_process import Destination, GatewayProcess, e2e_config
from tests.fuzz.settings import fuzz
from tests.support import payments_source, sign_payment

# The error codes of design.md 2 an ingress answer may carry.
DOCUMENTED = {
    "unknown_source", "method_not_allowed", "ip_not_allowed", "rate_limited", "body_too_large",
    "request_timeout", "invalid_signature", "invalid_body", "missing_field", "in_progress",
    "unavailable",
}  # fmt: skip
# Refusals aiohttp's HTTP parser gives before the gateway sees a request (plain text bodies).
PARSER_STATUSES = {400, 408, 413, 431}
ANSWER_TIMEOUT = 15.0


class Harness:
    """A loop in a thread, holding a destination and a gateway process with two sources:
    ``/hooks/payments`` (queued) and ``/hooks/sync`` (forwarded inline)."""

    def __init__(self, directory: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.destination = Destination()
        routes = [{"destination": "marketplace", "types": ["payment.*"]}]
        config = e2e_config(
            store_url=f"sqlite:///{directory / 'gateway.db'}",
            destinations={"marketplace": self.destination.url},
            sources={
                "payments": payments_source(routes=routes),
                "sync": payments_source(path="/hooks/sync", delivery="sync", routes=routes),
            },
        )
        self.gateway = GatewayProcess(directory, config, name="fuzzed")

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        """Run ``coroutine`` on the harness's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.gateway.cleanup()
        with contextlib.suppress(Exception):
            self.run(self.destination.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    running = Harness(tmp_path_factory.mktemp("fuzz-ingress"))
    try:
        running.run(running.destination.start())
        running.run(running.gateway.start())
        yield running
    finally:
        running.close()


async def exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` on a fresh connection; the answer's status and body."""
    async with asyncio.timeout(ANSWER_TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
            answer = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1."), f"no HTTP answer: {answer[:200]!r}"
    return int(status_line.split()[1]), body


def raw_request(path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """One HTTP/1.1 POST, framed by Content-Length, with the headers exactly as given."""
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def check(status: int, body: bytes, *, accepted: set[int]) -> None:
    """The answer is a documented one (see the module docstring)."""
    assert status < 500 or status == 503, (status, body[:300])
    if status in accepted:
        return
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        assert status in PARSER_STATUSES, (status, body[:300])
        return
    assert error in DOCUMENTED, (status, body[:300])


# -- strategies -------------------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(
        [b"webhook-id", b"webhook-timestamp", b"webhook-signature", b"content-type",
         b"x-request-id", b"x-forwarded-for", b"content-encoding", b"transfer-encoding"]
    ),
    st.binary(min_size=1, max_size=12).filter(lambda b: b":" not in b and b"\r" not in b and b"\n" not in b),
)  # fmt: skip
# Any byte but CR and LF (which would frame another header, a different test).
HEADER_BYTES = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
ASCII_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
    str.encode
)
# JSON values with no control character and no lone surrogate in any string.
PLAIN_TEXT = st.text(
    st.characters(min_codepoint=0x20, exclude_categories=["Cs", "Cc"]), max_size=20
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | PLAIN_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(PLAIN_TEXT, inner, max_size=3),
    max_leaves=10,
)
FIELDS = ["pendingId", "offerId", "status", "timestamp", "outgoingPaymentId"]


def event_body(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """A payments event whose fields (some, all or none) hold ``values``."""
    return st.fixed_dictionaries(
        {"type": st.sampled_from(["payment.completed", "payment.failed"]) | values},
        optional={name: values for name in FIELDS},
    ).map(lambda event: json.dumps(event).encode())


SERIAL = itertools.count()


def signed(body: bytes, msg_id: str) -> list[tuple[bytes, bytes]]:
    """Headers signing ``body``; the id gets a serial suffix, so no example is a duplicate of
    an earlier one (a duplicate answers before the stages under test)."""
    unique = f"{msg_id}.{next(SERIAL)}"
    return [(k.encode(), v.encode()) for k, v in sign_payment(body, msg_id=unique).items()]


MSG_IDS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)


# -- properties -------------------------------------------------------------------------------


@fuzz(60)
@given(
    path=st.sampled_from(["/hooks/payments", "/hooks/sync", "/nowhere"]),
    body=event_body(JSON),
    msg_id=MSG_IDS,
    extra=st.lists(st.tuples(NAMES, ASCII_VALUES), max_size=4),
    sign=st.booleans(),
)
def test_signed_events_with_any_json_values(harness, path, body, msg_id, extra, sign) -> None:
    headers = (signed(body, msg_id) if sign else []) + extra
    status, answer = harness.run(exchange(harness.gateway.port, raw_request(path, headers, body)))
    check(status, answer, accepted={200, 202})


@fuzz(60)
@given(
    body=event_body(JSON),
    msg_id=MSG_IDS,
    extra=st.lists(st.tuples(NAMES, HEADER_BYTES), min_size=1, max_size=4),
)
def test_arbitrary_header_bytes(harness, body, msg_id, extra) -> None:
    # Each drawn header replaces the signed one of that name, so the bytes reach the stages
    # that read it (X-Request-ID, the signature, the dedupe key) instead of a second copy.
    replaced = {name.lower() for name, _ in extra}
    headers = [(n, v) for n, v in signed(body, msg_id) if n.lower() not in replaced] + extra
    request = raw_request("/hooks/payments", headers, body)
    status, answer = harness.run(exchange(harness.gateway.port, request))
    check(status, answer, accepted={200, 202})


@fuzz(40)
@given(
    path=st.sampled_from(["/hooks/payments", "/hooks/sync"]),
    field=st.sampled_from(["offerId", "type", "timestamp"]),
    text=st.lists(
        st.sampled_from(["\\udc80", "\\ud800", "a", "\\u00e9"]), min_size=1, max_size=4
    ).map("".join),
    msg_id=MSG_IDS,
)
def test_lone_surrogates_in_extracted_values(harness, path, field, text, msg_id) -> None:
    event = {"type": "payment.completed", "pendingId": "p", "offerId": "o", "status": "paid"}
    body = json.dumps(event).encode()[:-1] + f', "{field}x": 0, "{field}": "{text}"}}'.encode()
    status, answer = harness.run(
        exchange(harness.gateway.port, raw_request(path, signed(body, msg_id), body))
    )
    check(status, answer, accepted={200, 202})


@fuzz(30)
@given(
    subject=st.text(st.characters(max_codepoint=0x1F), min_size=1, max_size=4),
    msg_id=MSG_IDS,
)
def test_control_characters_in_extracted_values(harness, subject, msg_id) -> None:
    event = {"type": "payment.completed", "pendingId": "p", "offerId": subject, "status": "paid"}
    body = json.dumps(event).encode()
    request = raw_request("/hooks/sync", signed(body, msg_id), body)
    status, answer = harness.run(exchange(harness.gateway.port, request))
    check(status, answer, accepted={200, 202})
    # Forwarded inline: the destination got it, or the sender was told it was not.
    assert status != 200 or json.loads(answer) == {"ok": True}
