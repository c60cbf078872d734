"""GitHub webhook signatures (https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries).

``X-Hub-Signature-256: sha256=<hex>``, the HMAC-SHA256 of the raw body keyed with the
webhook secret. GitHub signs no timestamp, so replays are caught by deduplicating on
``X-GitHub-Delivery`` (the default dedupe key). The legacy SHA-1 ``X-Hub-Signature`` header is
not accepted: GitHub sends the SHA-256 one on every delivery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.errors import VerificationError
from gateway.extract import Extractor, Extractors
from gateway.providers.base import (
    BaseProvider,
    Secret,
    lowered,
)
from gateway.providers.encoding import (
    decode_hex,
    derived_id,
    hmac_digest,
    require_hmac_match,
)

HEADER = "x-hub-signature-256"
PREFIX = "sha256="


class GitHub(BaseProvider):
    """GitHub ``X-Hub-Signature-256`` (hex HMAC-SHA256 of the raw body), several secrets."""

    name = "github"
    reads = frozenset({HEADER})
    defaults = Extractors(
        id=Extractor("header", "x-github-delivery"),
        type=Extractor("header", "x-github-event"),
        dedupe=Extractor("header", "x-github-delivery"),
    )

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[Secret], now: float
    ) -> None:
        """Check ``X-Hub-Signature-256`` against each secret; ``now`` is unused (no timestamp)."""
        header = lowered(headers).get(HEADER)
        if header is None:
            raise VerificationError("X-Hub-Signature-256 header is missing")
        header = header.strip()
        if not header.startswith(PREFIX):
            raise VerificationError("X-Hub-Signature-256 must start with sha256=")
        digest = decode_hex(header[len(PREFIX) :])
        if digest is None:
            raise VerificationError("X-Hub-Signature-256 is not a hex digest")
        require_hmac_match(body, secrets, [digest])

    def sign(self, body: bytes, secret: Secret, now: float, **kw: Any) -> dict[str, str]:
        """Signature and delivery headers; ``delivery`` and ``event`` may be given."""
        headers = {
            "X-Hub-Signature-256": PREFIX + hmac_digest(secret.encode(), body).hex(),
            "X-GitHub-Delivery": str(kw.get("delivery") or derived_id(body, now)),
        }
        if kw.get("event"):
            headers["X-GitHub-Event"] = str(kw["event"])
        return headers


PROVIDERS = (GitHub,)
