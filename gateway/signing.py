"""The gateway's own signature on what it delivers: Standard Webhooks v1 (HMAC-SHA256).

The destination verifies it with any Standard Webhooks library (the marketplace uses the
``standardwebhooks`` PyPI package). The same primitives serve the ``standard-webhooks`` provider
plugin, which verifies what senders sign.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac

from gateway.secret import Secret

HMAC_PREFIX = "whsec_"
#: Standard Webhooks keys are 24 to 64 random bytes; fewer is refused as too weak.
MIN_HMAC_KEY_BYTES = 24


def hmac_key(secret: Secret) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the prefix is optional, as in the reference libs).

    Raises ``ValueError`` when the rest is not base64 or is empty.
    """
    return _decoded_key(secret.value)


def _decoded_key(value: str) -> bytes:
    try:
        key = base64.b64decode(value.removeprefix(HMAC_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("not a Standard Webhooks secret (whsec_ followed by base64)") from exc
    if not key:
        raise ValueError("secret is empty")
    return key


@functools.lru_cache(maxsize=64)
def _keyed(value: str) -> hmac.HMAC:
    # Keying (the key decoded from base64, then its padded inner and outer blocks hashed) was
    # a third of each signature's cost; a copy of the keyed state skips it. A secret that is
    # not a key raises every time: exceptions are not cached.
    return hmac.new(_decoded_key(value), digestmod=hashlib.sha256)


def hmac_sha256(secret: Secret, content: bytes) -> bytes:
    """The HMAC-SHA256 of ``content`` under the key of a ``whsec_`` secret (``hmac_key``);
    ``ValueError`` when the secret is not one."""
    mac = _keyed(secret.value).copy()
    mac.update(content)
    return mac.digest()


def signed_content(msg_id: str, timestamp: str, body: bytes) -> bytes:
    """The bytes every Standard Webhooks signature covers: ``id.timestamp.body``."""
    # surrogateescape: header text decoded from bytes that were not UTF-8 gives those bytes
    # back, so a signature is checked over what was sent (and simply does not match).
    raw_id = msg_id.encode("utf-8", "surrogateescape")
    raw_timestamp = timestamp.encode("utf-8", "surrogateescape")
    return raw_id + b"." + raw_timestamp + b"." + body


def v1_signature(secret: Secret, content: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``content`` under a ``whsec_`` secret's key."""
    return "v1," + base64.b64encode(hmac_sha256(secret, content)).decode()


def sign_delivery(body: bytes, secret: Secret, msg_id: str, now: float) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` for one delivery."""
    timestamp = str(int(now))
    signature = v1_signature(secret, signed_content(msg_id, timestamp, body))
    return {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
