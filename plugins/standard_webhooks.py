"""Standard Webhooks (https://www.standardwebhooks.com/), the scheme of the payments service.

Signed content is ``{webhook-id}.{webhook-timestamp}.{body}``. ``webhook-signature`` holds
space-separated ``version,signature`` pairs:

* ``v1``: base64 HMAC-SHA256 keyed with the base64-decoded ``whsec_`` secret;
* ``v1a``: base64 Ed25519 signature, verified with a ``whpk_`` public key (signed with ``whsk_``).

Unknown versions are ignored, as the spec asks, so senders can add schemes without breaking us.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import VerificationError
from gateway.extract import Extractor, Extractors
from gateway.providers.base import (
    BaseProvider,
    Secret,
    check_timestamp,
    digest_matches,
    lowered,
    parse_int_timestamp,
)
from gateway.signing import (
    MIN_HMAC_KEY_BYTES,
    hmac_key,
    hmac_sha256,
    signed_content,
    v1_signature,
)

PUBLIC_PREFIX = "whpk_"
PRIVATE_PREFIX = "whsk_"


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


class StandardWebhooks(BaseProvider):
    """Standard Webhooks v1 (HMAC-SHA256) and v1a (Ed25519) with several active secrets."""

    name = "standard-webhooks"
    reads = frozenset({"webhook-id", "webhook-timestamp", "webhook-signature"})
    uses_timestamp = True
    defaults = Extractors(
        id=Extractor("header", "webhook-id"),
        type=Extractor("body", "/type"),
        time=Extractor("header", "webhook-timestamp"),
        dedupe=Extractor("header", "webhook-id"),
    )

    def describe_secret(self, secret: Secret) -> str | None:
        """``whsec_`` (HMAC), ``whpk_`` (Ed25519 public) or ``whsk_`` (Ed25519 private)."""
        value = secret.value
        try:
            if value.startswith(PUBLIC_PREFIX):
                Ed25519PublicKey.from_public_bytes(_b64(value[len(PUBLIC_PREFIX) :]))
            elif value.startswith(PRIVATE_PREFIX):
                Ed25519PrivateKey.from_private_bytes(_b64(value[len(PRIVATE_PREFIX) :]))
            else:
                key = hmac_key(secret)
                if len(key) < MIN_HMAC_KEY_BYTES:
                    return (
                        f"a whsec_ key must decode to at least {MIN_HMAC_KEY_BYTES} bytes"
                        f" (this one has {len(key)})"
                    )
        except (binascii.Error, ValueError):
            # An Ed25519 key is exactly 32 bytes: from_*_bytes refuses any other length.
            return "not a Standard Webhooks secret (whsec_/whpk_/whsk_ followed by base64)"
        return None

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[Secret], now: float
    ) -> None:
        """Check the id/timestamp/signature headers against every active secret."""
        h = lowered(headers)
        msg_id = h.get("webhook-id")
        signature_header = h.get("webhook-signature")
        if not msg_id or signature_header is None:
            raise VerificationError("missing webhook-id or webhook-signature header")
        timestamp_text = h.get("webhook-timestamp")
        check_timestamp(parse_int_timestamp(timestamp_text), now, self.tolerance)
        assert timestamp_text is not None
        content = signed_content(msg_id, timestamp_text.strip(), body)

        v1: list[bytes] = []
        v1a: list[bytes] = []
        for item in signature_header.split():
            version, _, value = item.partition(",")
            try:
                if version == "v1":
                    v1.append(_b64(value))
                elif version == "v1a":
                    v1a.append(_b64(value))
            except binascii.Error:
                continue  # a malformed entry cannot match; another entry still may

        for secret in secrets:
            if secret.value.startswith(PUBLIC_PREFIX):
                if v1a and self._ed25519_matches(secret, content, v1a):
                    return
            elif v1 and not secret.value.startswith(PRIVATE_PREFIX):
                try:
                    expected = hmac_sha256(secret, content)
                except ValueError:
                    continue
                if digest_matches(expected, v1):
                    return
        raise VerificationError()

    @staticmethod
    def _ed25519_matches(secret: Secret, content: bytes, signatures: Sequence[bytes]) -> bool:
        try:
            key = Ed25519PublicKey.from_public_bytes(_b64(secret.value[len(PUBLIC_PREFIX) :]))
        except (binascii.Error, ValueError):
            return False
        for signature in signatures:
            try:
                key.verify(signature, content)
            except InvalidSignature:
                continue
            return True
        return False

    def sign(self, body: bytes, secret: Secret, now: float, **kw: Any) -> dict[str, str]:
        """Headers for ``body``; ``msg_id`` may be given (default: derived from body and time)."""
        timestamp = str(int(now))
        msg_id = str(
            kw.get("msg_id") or "msg_" + hashlib.sha256(body + timestamp.encode()).hexdigest()[:24]
        )
        content = signed_content(msg_id, timestamp, body)
        if secret.value.startswith(PRIVATE_PREFIX):
            key = Ed25519PrivateKey.from_private_bytes(_b64(secret.value[len(PRIVATE_PREFIX) :]))
            signature = "v1a," + base64.b64encode(key.sign(content)).decode()
        else:
            signature = v1_signature(secret, content)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": signature,
        }


PROVIDERS = (StandardWebhooks,)
