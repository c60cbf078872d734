"""Decoding helpers shared by the HMAC-based providers.

Signatures are decoded to raw bytes before they are compared (``digest_matches``), so the
comparison is constant-time on bytes and hex case does not matter. A malformed signature
decodes to ``None``: it simply cannot match, and the caller refuses the request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import string
import uuid
from collections.abc import Sequence
from typing import Literal

from gateway.errors import VerificationError
from gateway.secret import Secret

Algorithm = Literal["sha256", "sha512"]
ALGORITHMS: tuple[Algorithm, ...] = ("sha256", "sha512")


def decode_hex(text: str) -> bytes | None:
    """Bytes of a hex string in either case; ``None`` when it is not hex."""
    text = text.strip()
    # bytes.fromhex would also skip whitespace inside the string; a signature has none.
    if not text or len(text) % 2 or any(c not in string.hexdigits for c in text):
        return None
    return bytes.fromhex(text)


def decode_base64(text: str) -> bytes | None:
    """Bytes of a standard (RFC 4648 section 4) base64 string; ``None`` when malformed."""
    try:
        return base64.b64decode(text.strip(), validate=True) or None
    except (binascii.Error, ValueError):
        return None


def hmac_digest(key: bytes, message: bytes, algorithm: Algorithm = "sha256") -> bytes:
    """The raw HMAC of ``message`` under ``key``."""
    return hmac.new(key, message, algorithm).digest()


def require_hmac_match(
    message: bytes,
    secrets: Sequence[Secret],
    candidates: Sequence[bytes],
    algorithm: Algorithm = "sha256",
) -> None:
    """Return if some secret's HMAC of ``message`` equals some candidate; refuse otherwise.

    Every active secret is tried (rotation); each comparison is constant-time on raw bytes.
    """
    for secret in secrets:
        if digest_matches(hmac_digest(secret.encode(), message, algorithm), candidates):
            return
    raise VerificationError()


def digest_matches(expected: bytes, candidates: Sequence[bytes]) -> bool:
    """Constant-time: does any candidate equal ``expected``? Every candidate is compared."""
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(expected, candidate)
    return found


def split_params(header: str) -> list[tuple[str, str]]:
    """``t=1,v1=ab, v1=cd`` as ``[("t", "1"), ("v1", "ab"), ("v1", "cd")]`` (spaces ignored).

    Items without ``=`` are skipped: they cannot carry a timestamp or a signature.
    """
    params = []
    for item in header.split(","):
        name, sep, value = item.partition("=")
        if sep:
            params.append((name.strip(), value.strip()))
    return params


def timestamped_signatures(
    header: str | None, header_name: str, scheme: str = "v1"
) -> tuple[str, list[bytes]]:
    """The ``t`` and the decoded ``<scheme>`` digests of a ``t=..,v1=..,v1=..`` header.

    The layout Stripe introduced and Rafiki reuses: exactly one timestamp, any number of
    signatures (one per active secret while a secret is rolled); malformed digests are dropped,
    other schemes ignored. Refuses a missing header, no or several ``t``, and no signature.
    """
    if header is None:
        raise VerificationError(f"{header_name} header is missing")
    params = split_params(header)
    stamps = [value for name, value in params if name == "t"]
    if len(stamps) != 1:
        raise VerificationError(f"{header_name} header needs exactly one t=")
    digests = [digest for name, value in params if name == scheme if (digest := decode_hex(value))]
    if not digests:
        raise VerificationError(f"{header_name} header has no {scheme} signature")
    return stamps[0], digests


#: Fewest bytes of key material a secret may have: 128 bits, below which an HMAC key or a token
#: can be guessed offline from one signed request.
MIN_SECRET_BYTES = 16


def describe_text_secret(value: str) -> str | None:
    """The problem with a secret used as raw text (HMAC key or token), or ``None``."""
    if not value:
        return "secret is empty"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"secret is shorter than {MIN_SECRET_BYTES} bytes: too weak to sign with"
    if value != value.strip():
        # Nearly always a stray newline from a secret file; it would fail every signature.
        return "secret has leading or trailing whitespace"
    return None


def derived_id(body: bytes, now: float) -> str:
    """A UUID-shaped delivery id derived from the body and the time, for ``sign`` helpers.

    Deterministic, so signing the same body at the same instant twice names the same delivery
    (and a gateway deduplicates it), while a new send gets a new id.
    """
    seed = hashlib.sha256(f"{now!r}.".encode() + body).digest()
    return str(uuid.UUID(bytes=seed[:16], version=4))
