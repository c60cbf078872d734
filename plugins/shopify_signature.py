"""Shopify webhook signatures (https://shopify.dev/docs/apps/build/webhooks/subscribe/https).

``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the raw body keyed with the app's client
secret. Shopify signs no timestamp, so replays are caught by deduplicating on
``X-Shopify-Webhook-Id`` (the default dedupe key); ``X-Shopify-Triggered-At`` gives the time.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.errors import VerificationError
from gateway.extract import Extractor, Extractors
from gateway.providers.base import (
    BaseProvider,
    Secret,
    lowered,
)
from gateway.providers.encoding import (
    decode_base64,
    derived_id,
    hmac_digest,
    require_hmac_match,
)

HEADER = "x-shopify-hmac-sha256"


class Shopify(BaseProvider):
    """Shopify ``X-Shopify-Hmac-Sha256`` (base64 HMAC-SHA256 of the raw body), several secrets."""

    name = "shopify"
    reads = frozenset({HEADER})
    defaults = Extractors(
        id=Extractor("header", "x-shopify-webhook-id"),
        type=Extractor("header", "x-shopify-topic"),
        time=Extractor("header", "x-shopify-triggered-at"),
        dedupe=Extractor("header", "x-shopify-webhook-id"),
    )

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[Secret], now: float
    ) -> None:
        """Check ``X-Shopify-Hmac-Sha256`` against each secret; ``now`` is unused."""
        header = lowered(headers).get(HEADER)
        if header is None:
            raise VerificationError("X-Shopify-Hmac-Sha256 header is missing")
        digest = decode_base64(header)
        if digest is None:
            raise VerificationError("X-Shopify-Hmac-Sha256 is not base64")
        require_hmac_match(body, secrets, [digest])

    def sign(self, body: bytes, secret: Secret, now: float, **kw: Any) -> dict[str, str]:
        """Signature, webhook id and trigger time; ``webhook_id`` and ``topic`` may be given."""
        digest = hmac_digest(secret.encode(), body)
        triggered = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        headers = {
            "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
            "X-Shopify-Webhook-Id": str(kw.get("webhook_id") or derived_id(body, now)),
            "X-Shopify-Triggered-At": triggered.replace("+00:00", "Z"),
        }
        if kw.get("topic"):
            headers["X-Shopify-Topic"] = str(kw["topic"])
        return headers


PROVIDERS = (Shopify,)
