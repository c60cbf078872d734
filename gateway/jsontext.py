"""Compact JSON text of the gateway's own values: script arguments, stored records, log lines.

Every request and delivery encodes a few small documents (the accept script's arguments, the
headers kept with the event, the attempt record, the response, the log lines). The standard
library's encoder took 11-13 us for the accept arguments alone on the benchmark machine;
orjson makes the same text in under 1 us (BENCHMARKS.md#what-each-optimisation-gave, "orjson for the
gateway's own JSON"). orjson refuses a few values the standard library
takes (a string holding a lone surrogate, an integer past 64 bits, a key that is not a
string): those few are encoded by the standard library instead, so nothing that encoded before
fails now; ``loads`` reads such text back the same way. The text is UTF-8, not ASCII-escaped,
and compact (no spaces), in key order.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_FALLBACK = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_FALLBACK_STR = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def dumpb(value: Any) -> bytes:
    """``value`` as compact JSON bytes (UTF-8)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return _FALLBACK.encode(value).encode()


def dumps(value: Any) -> str:
    """``value`` as compact JSON text."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return _FALLBACK.encode(value)


def loads(text: bytes | str) -> Any:
    """A value from JSON the gateway wrote (orjson; the standard library for what it refuses,
    such as a lone surrogate's escape, so what parsed before still does)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def dumps_any(value: Any) -> str:
    """Like ``dumps``, with ``str()`` of what JSON has no type for (log fields)."""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return _FALLBACK_STR.encode(value)
