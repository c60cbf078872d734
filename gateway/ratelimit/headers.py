"""Response headers for a rate-limit decision. Pure.

``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` follow the IETF draft
"RateLimit header fields for HTTP" (draft-ietf-httpapi-ratelimit-headers, the revisions with
three separate fields, as design.md section 2 names them): the quota (here the burst, the most a
sender may send at once), what is left of it, and the delta-seconds until it is whole again.
``Retry-After`` (RFC 9110, section 10.2.3) goes only on a refusal.

Seconds are rounded up: a sender that waits the advertised time must find room, never come back
a fraction of a second early and be refused again. ``Retry-After`` is at least 1 because 0 would
invite an immediate retry that is bound to fail.
"""

from __future__ import annotations

import math

from gateway.ratelimit.gcra import Decision


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """``RateLimit-*`` headers for ``decision``, plus ``Retry-After`` when it was refused."""
    headers = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(max(0, decision.remaining)),
        "RateLimit-Reset": str(max(0, math.ceil(decision.reset_after))),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(retry_after_seconds(decision))
    return headers


def retry_after_seconds(decision: Decision) -> int:
    """Whole seconds a refused sender should wait: ``retry_after`` rounded up, at least 1."""
    return max(1, math.ceil(decision.retry_after))
