"""Status tokens (design.md 5.10): what lets one buyer's page follow one payment.

A token is ``v1.<expiry>.<sig>``: ``expiry`` in Unix seconds, ``sig`` the base64url (no
padding) of HMAC-SHA256(``status.secret``, ``v1.<source>.<key>.<expiry>``). The marketplace
mints it for the payment it redirects the buyer to; the gateway checks it before anything
else, in constant time on the bytes of the signature. Pure: text and a clock in, a verdict
out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from gateway.errors import InvalidToken

VERSION = "v1"
#: ``v1.<expiry>.<sig>``: at most 12 digits of expiry (year 33658), 43 characters of signature.
_TOKEN = re.compile(r"v1\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")


def signed_text(source: str, key: str, expiry: int) -> bytes:
    """What the signature covers: ``v1.<source>.<key>.<expiry>``, UTF-8."""
    # A lone surrogate (an undecodable byte of the URL) cannot be in a payment key; it is
    # signed as itself, so it matches no token instead of failing to encode.
    return f"{VERSION}.{source}.{key}.{expiry}".encode("utf-8", "surrogatepass")


def _signature(secret: bytes, source: str, key: str, expiry: int) -> str:
    digest = hmac.new(secret, signed_text(source, key, expiry), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def mint(secret: bytes, source: str, key: str, expiry: int) -> str:
    """A token for the payment ``(source, key)``, valid until ``expiry`` (Unix seconds)."""
    if expiry < 0:
        raise ValueError("a token's expiry is a Unix time, not negative")
    return f"{VERSION}.{expiry}.{_signature(secret, source, key, expiry)}"


def verify(token: str | None, secret: bytes, source: str, key: str, now: float) -> int:
    """The token's expiry if it is this payment's and has not expired; ``InvalidToken``
    otherwise. The signature is compared before the expiry is looked at, so a forged token
    is never told that it expired."""
    if not token:
        raise InvalidToken("a status token is required (?token=...)", "missing")
    match = _TOKEN.fullmatch(token) if token.isascii() else None
    if match is None:
        raise InvalidToken("the status token is malformed (v1.<expiry>.<signature>)", "malformed")
    expiry = int(match[1])
    expected = _signature(secret, source, key, expiry)
    if not hmac.compare_digest(match[2].encode(), expected.encode()):
        raise InvalidToken("the status token is not valid for this payment", "mismatch")
    if now >= expiry:
        raise InvalidToken(
            "the status token has expired: ask the marketplace for a new page", "expired"
        )
    return expiry
