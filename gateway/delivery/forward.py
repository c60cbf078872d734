"""POST one event to its destination, signed by the gateway (design.md 4).

Used by sync delivery (inline, the sender gets the answer) and by the delivery workers. One
shared ``DeliveryClient`` (``delivery.client``); redirects are never followed; success is any
2xx within ``timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gateway.delivery.client import DeliveryClient, HttpError
from gateway.delivery.cloudevents import (
    STRUCTURED_CONTENT_TYPE,
    binary_headers,
    structured_body,
)
from gateway.secret import Secret
from gateway.signing import sign_delivery
from gateway.store.records import Event, excerpt

#: Hop-by-hop headers (RFC 9110 7.6.1) and framing headers never pass, even if listed.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
})  # fmt: skip
#: Headers the gateway writes on every delivery; a sender's value must never replace them.
GATEWAY_HEADERS = frozenset(
    {"x-request-id", "x-gateway-attempt", "x-gateway-origin", "content-type"}
)
GATEWAY_PREFIXES = ("ce-", "webhook-")


def gateway_owned(name: str) -> bool:
    """Whether a header is the gateway's to write (or hop-by-hop): never forwarded."""
    lower = name.strip().lower()
    return lower in HOP_BY_HOP or lower in GATEWAY_HEADERS or lower.startswith(GATEWAY_PREFIXES)


@dataclass(frozen=True)
class Destination:
    """Where and how a destination receives events: what one delivery needs to know of it."""

    name: str
    url: str
    signing_secret: Secret
    timeout: float = 10.0
    format: Literal["binary", "structured"] = "binary"


@dataclass(frozen=True)
class DeliveryResult:
    """What one attempt saw: the status (``None`` when no answer), body excerpt and timing."""

    status: int | None
    latency: float
    body: bytes = b""
    content_type: str | None = None
    error: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """Whether the destination took the event (any 2xx)."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def excerpt(self) -> str:
        """The first bytes of the answer as text, for the attempt record."""
        return excerpt(self.body)


def build_request(
    event: Event, destination: Destination, attempt: int, now: float
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one delivery attempt."""
    if destination.format == "structured":
        body = structured_body(event)
        headers = {"Content-Type": STRUCTURED_CONTENT_TYPE}
    else:
        body = event.body
        headers = binary_headers(event)
    for name, value in event.headers:
        if name.lower() not in HOP_BY_HOP and name.lower() != "content-type":
            headers[name] = value
    # The signature covers the exact body sent; webhook-id is the event id, stable across
    # retries and replays so the destination can deduplicate (Standard Webhooks, "Idempotency").
    headers.update(sign_delivery(body, destination.signing_secret, event.id, now))
    headers["X-Request-ID"] = event.request_id
    headers["X-Gateway-Attempt"] = str(attempt)
    if event.origin == "reconciled":
        # Recovered from the provider's listing, not posted by it (design.md 5.8).
        headers["X-Gateway-Origin"] = "reconciled"
    return body, headers


async def deliver(
    client: DeliveryClient,
    event: Event,
    destination: Destination,
    attempt: int,
    *,
    clock: Callable[[], float] = time.time,
    read_limit: int = 64 * 1024,
) -> DeliveryResult:
    """POST ``event`` to ``destination``; never raises for network trouble, reports it."""
    body, headers = build_request(event, destination, attempt, clock())
    started = time.monotonic()
    try:
        answer = await client.post(
            destination.url, body, headers, give_up_after=destination.timeout, read_limit=read_limit
        )
    except TimeoutError:
        return DeliveryResult(None, time.monotonic() - started, error="timed out", timed_out=True)
    except HttpError as exc:
        return DeliveryResult(None, time.monotonic() - started, error=str(exc)[:300])
    return DeliveryResult(
        status=answer.status,
        latency=time.monotonic() - started,
        body=answer.body,
        content_type=answer.content_type,
    )
