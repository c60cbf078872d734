"""The one table of ``store.url`` schemes (design.md 5.4): which backend each one opens.

Read by the config loader (to refuse an unknown scheme by ``store.url``), by ``open_store``
(to pick the backend) and by the Redis store (to pick the client), so adding a scheme is a
change in one place.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

StoreKind = Literal["sqlite", "redis", "cluster", "sentinel"]

#: Each scheme and what it opens; an ``s`` after ``redis`` means TLS.
SCHEMES: dict[str, StoreKind] = {
    "sqlite": "sqlite",
    "redis": "redis",
    "rediss": "redis",
    "redis+cluster": "cluster",
    "rediss+cluster": "cluster",
    "redis+sentinel": "sentinel",
    "rediss+sentinel": "sentinel",
}


def store_kind(url: str) -> StoreKind | None:
    """What a store URL opens, by its scheme; ``None`` for a scheme no store takes."""
    scheme = urlsplit(url).scheme
    if not url.startswith(f"{scheme}:"):
        return None
    return SCHEMES.get(scheme)


def describe_schemes() -> str:
    """The schemes for an error message: ``sqlite://, redis://, ...``."""
    return ", ".join(f"{scheme}://" for scheme in SCHEMES)
