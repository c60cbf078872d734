"""Slack request signatures (https://api.slack.com/authentication/verifying-requests-from-slack).

``X-Slack-Signature: v0=<hex>`` is the HMAC-SHA256 of ``v0:<timestamp>:<raw body>`` keyed
with the app's signing secret; ``X-Slack-Request-Timestamp`` is in Unix seconds and is checked
both ways against the tolerance (Slack suggests five minutes).

Slack sends JSON (Events API) and form-encoded bodies (slash commands, interactivity), so the
defaults read nothing from the body: the dedupe key is the body's SHA-256 (a retry resends the
same bytes) and the time comes from the timestamp header. For the Events API set
``event: {id: /event_id, type: /event/type}`` on the source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.errors import VerificationError
from gateway.extract import Extractor, Extractors
from gateway.providers.base import (
    BaseProvider,
    Secret,
    check_timestamp,
    lowered,
    parse_int_timestamp,
)
from gateway.providers.encoding import (
    decode_hex,
    hmac_digest,
    require_hmac_match,
)

SIGNATURE_HEADER = "x-slack-signature"
TIMESTAMP_HEADER = "x-slack-request-timestamp"
VERSION = "v0"


def base_string(timestamp: str, body: bytes) -> bytes:
    """The bytes a Slack ``v0`` signature covers."""
    return f"{VERSION}:{timestamp}:".encode() + body


class Slack(BaseProvider):
    """Slack ``X-Slack-Signature`` (v0 HMAC-SHA256 over ``v0:ts:body``), several secrets."""

    name = "slack"
    reads = frozenset({SIGNATURE_HEADER, TIMESTAMP_HEADER})
    uses_timestamp = True
    defaults = Extractors(
        time=Extractor("header", TIMESTAMP_HEADER),
        dedupe=Extractor("sha256"),
    )

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[Secret], now: float
    ) -> None:
        """Check the timestamp, then ``X-Slack-Signature`` against each secret."""
        h = lowered(headers)
        timestamp_text = h.get(TIMESTAMP_HEADER)
        check_timestamp(parse_int_timestamp(timestamp_text), now, self.tolerance)
        assert timestamp_text is not None  # parse_int_timestamp refused a missing header
        header = h.get(SIGNATURE_HEADER)
        if header is None:
            raise VerificationError("X-Slack-Signature header is missing")
        version, sep, value = header.strip().partition("=")
        digest = decode_hex(value) if sep and version == VERSION else None
        if digest is None:
            raise VerificationError("X-Slack-Signature must be v0=<hex>")
        # The base string holds the header's text exactly as Slack sent it.
        payload = base_string(timestamp_text.strip(), body)
        require_hmac_match(payload, secrets, [digest])

    def sign(self, body: bytes, secret: Secret, now: float, **kw: Any) -> dict[str, str]:
        """The two headers Slack would send for ``body`` at ``now``."""
        timestamp = str(int(now))
        digest = hmac_digest(secret.encode(), base_string(timestamp, body)).hex()
        return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"{VERSION}={digest}"}


PROVIDERS = (Slack,)
