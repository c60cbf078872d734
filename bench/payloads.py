"""Benchmark payloads: payments events of a fixed size, signed as the payments service signs them.

The secrets are fixed benchmark-only values (nothing real is ever signed with them), so a run is
reproducible and the load generator, the gateway config and the verification bench agree.
"""

from __future__ import annotations

import base64
import json

from gateway.providers.base import BaseProvider, Secret
from gateway.providers.registry import load_registry
from gateway.signing import hmac_key

#: The payments source's secret (Standard Webhooks ``whsec_`` + base64 key). Benchmark only.
PAYMENTS_SECRET = "whsec_" + base64.b64encode(b"bench-payments-secret-0123456789").decode()
#: The gateway's own signing secret towards the destination. Benchmark only.
MARKETPLACE_SECRET = "whsec_" + base64.b64encode(b"bench-marketplace-secret-0123456").decode()
#: A typical payments-service event is a few hundred bytes; every benchmark body is this long.
BODY_SIZE = 400
#: The path of the payments source, on the gateway and on the baseline server alike.
SOURCE_PATH = "/hooks/payments"
#: Where the fake destination takes deliveries.
DESTINATION_PATH = "/api/webhooks/payments"


def event_body(index: int, prefix: str, size: int = BODY_SIZE) -> bytes:
    """A ``payment.completed`` event, distinct per ``(prefix, index)``, padded to ``size`` bytes."""
    event = {
        "type": "payment.completed",
        "pendingId": f"pending-{prefix}-{index:08d}",
        "offerId": "offer-42",
        "status": "completed",
        "outgoingPaymentId": f"https://wallet.example/outgoing-payments/{prefix}-{index:08d}",
        "timestamp": "2026-11-26T10:00:00.000Z",
        "description": "",
    }
    bare = len(json.dumps(event, separators=(",", ":")).encode())
    event["description"] = "p" * max(0, size - bare)
    return json.dumps(event, separators=(",", ":")).encode()


def payments_secret() -> Secret:
    """The payments source's secret as the gateway holds it."""
    return Secret(PAYMENTS_SECRET)


def payments_key() -> bytes:
    """The raw HMAC key behind ``PAYMENTS_SECRET`` (for the bare-HMAC baseline)."""
    return hmac_key(payments_secret())


def standard_webhooks(tolerance: float = 300.0) -> BaseProvider:
    """The gateway's ``standard-webhooks`` provider, found as the config loader finds it."""
    return load_registry(use_entry_points=False).get("standard-webhooks")(tolerance=tolerance)
