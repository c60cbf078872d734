"""Identifiers the gateway makes up: ULIDs (sortable by time, as the payments service uses)."""

from __future__ import annotations

import os

#: Crockford's base 32, the ULID alphabet (https://github.com/ulid/spec): no I, L, O, U.
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(now: float, randomness: bytes | None = None) -> str:
    """A 26-character ULID: 48 bits of milliseconds since the epoch, then 80 random bits."""
    random_bits = randomness if randomness is not None else os.urandom(10)
    if len(random_bits) != 10:
        raise ValueError("a ULID takes exactly 10 random bytes")
    value = (int(now * 1000) & (2**48 - 1)) << 80 | int.from_bytes(random_bits, "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
