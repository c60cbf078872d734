"""Times as the gateway writes them for people and other programs: RFC 3339, UTC, milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(seconds: float) -> str:
    """Unix seconds as an RFC 3339 UTC string with milliseconds (``2026-11-26T10:00:00.000Z``)."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> float:
    """An RFC 3339 time with its offset (``Z`` or ``±hh:mm``) as Unix seconds; ``ValueError``
    for anything else, a time without an offset included."""
    if len(text) > 64 or "T" not in text.upper():
        raise ValueError(f"not an RFC 3339 time: {text[:64]!r}")
    moment = datetime.fromisoformat(text.replace("z", "Z"))
    if moment.tzinfo is None:
        raise ValueError(f"an RFC 3339 time needs its offset: {text!r}")
    return moment.timestamp()
