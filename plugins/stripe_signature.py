"""Stripe webhook signatures (https://docs.stripe.com/webhooks#verify-manually).

``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=<hex>]``. Each ``v1`` is the hex
HMAC-SHA256 of ``<t>.<raw body>`` keyed with the endpoint secret (the whole ``whsec_...``
string, as Stripe's libraries key it). Stripe sends one ``v1`` per active secret while a secret
is being rolled, so any matching ``v1`` passes; ``v0`` is a test-mode scheme the docs say to
ignore. The timestamp is checked both ways against the tolerance (Stripe's libraries check
only the old side; a timestamp from the future is as suspect as an old one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.extract import Extractor, Extractors
from gateway.providers.base import (
    BaseProvider,
    Secret,
    check_timestamp,
    lowered,
    parse_int_timestamp,
)
from gateway.providers.encoding import (
    hmac_digest,
    require_hmac_match,
    timestamped_signatures,
)

HEADER = "stripe-signature"
SCHEME = "v1"


def signed_payload(timestamp: int, body: bytes) -> bytes:
    """The bytes a Stripe ``v1`` signature covers."""
    return str(timestamp).encode() + b"." + body


class Stripe(BaseProvider):
    """Stripe ``Stripe-Signature`` (v1 HMAC-SHA256 over ``t.body``), several secrets."""

    name = "stripe"
    reads = frozenset({HEADER})
    uses_timestamp = True
    defaults = Extractors(
        id=Extractor("body", "/id"),
        type=Extractor("body", "/type"),
        time=Extractor("body", "/created"),
        dedupe=Extractor("body", "/id"),
    )

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[Secret], now: float
    ) -> None:
        """Check the ``Stripe-Signature`` header's ``t`` and every ``v1`` against each secret."""
        stamp, candidates = timestamped_signatures(
            lowered(headers).get(HEADER), "Stripe-Signature", SCHEME
        )
        timestamp = parse_int_timestamp(stamp)
        check_timestamp(timestamp, now, self.tolerance)
        payload = signed_payload(timestamp, body)
        require_hmac_match(payload, secrets, candidates)

    def sign(self, body: bytes, secret: Secret, now: float, **kw: Any) -> dict[str, str]:
        """The ``Stripe-Signature`` header Stripe would send for ``body`` at ``now``."""
        timestamp = int(now)
        digest = hmac_digest(secret.encode(), signed_payload(timestamp, body)).hex()
        return {"Stripe-Signature": f"t={timestamp},{SCHEME}={digest}"}


PROVIDERS = (Stripe,)
