"""The analytics part of the admin API (design.md 5.5, 5.9): ``GET /admin/analytics`` and
``GET /admin/analytics.csv``, read from the store's hourly rollups, never from the events.

Parameters: ``from`` and ``to`` (RFC 3339; default the 7 days up to now), ``bucket`` (``hour``,
``day`` or ``week``, aligned in UTC; default by the range: an hour up to 2 days, a day up to
90, else a week) and ``source`` (one configured source; default all of them). A range is at
most ``MAX_DAYS`` long and ``MAX_BUCKETS`` buckets; anything else is 400 with what to fix.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gateway import times
from gateway.admin.api import store_of
from gateway.analytics.report import BUCKETS, Bucket, hours_of, report, to_csv
from gateway.analytics.rollup import RETENTION_DAYS
from gateway.appkeys import CLOCK, GATEWAY, RUNTIME
from gateway.errors import InvalidRequest, NotFound
from gateway.http.answers import json_answer

#: The longest range (the rollups are kept this long) and the most buckets one answer holds.
MAX_DAYS = RETENTION_DAYS
MAX_BUCKETS = 2000
DEFAULT_DAYS = 7


def _time(request: web.Request, name: str, default: float) -> float:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return times.parse_rfc3339(text)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an RFC 3339 time, like 2026-12-01T00:00:00Z") from exc


def _bucket(request: web.Request, span: float) -> Bucket:
    text = request.query.get("bucket")
    if text is None:
        return "hour" if span <= 2 * 86400 else "day" if span <= 90 * 86400 else "week"
    for bucket in BUCKETS:
        if text == bucket:
            return bucket
    raise InvalidRequest(f"bucket must be one of: {', '.join(BUCKETS)}")


async def _document(request: web.Request) -> dict[str, Any]:
    now = request.app[GATEWAY].get(CLOCK, time.time)()
    end = _time(request, "to", now)
    start = _time(request, "from", end - DEFAULT_DAYS * 86400)
    if start >= end:
        raise InvalidRequest("from must be before to")
    if end - start > MAX_DAYS * 86400:
        raise InvalidRequest(f"a range is at most {MAX_DAYS} days")
    bucket = _bucket(request, end - start)
    first, last = hours_of(start, end, bucket)
    size = {"hour": 1, "day": 24, "week": 168}[bucket]
    if (last - first + 1) // size > MAX_BUCKETS:
        raise InvalidRequest(f"at most {MAX_BUCKETS} buckets: take a longer bucket")
    sources = list(request.app[GATEWAY][RUNTIME].config.sources)
    source = request.query.get("source")
    if source is not None:
        if source not in sources:
            raise NotFound(f"no source named {source[:200]!r}")
        sources = [source]
    rollup = await store_of(request).rollups(first, last, sources)
    return {"source": source, **report(rollup, start, end, bucket)}


async def show_analytics(request: web.Request) -> web.Response:
    """``GET /admin/analytics``: the report as JSON."""
    return json_answer(200, await _document(request))


async def export_analytics(request: web.Request) -> web.Response:
    """``GET /admin/analytics.csv``: one row per bucket and currency."""
    document = await _document(request)
    name = f"analytics-{document['from'][:10]}-{document['to'][:10]}.csv"
    return web.Response(
        text=to_csv(document),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def add_routes(app: web.Application) -> None:
    """Register the analytics routes on the admin application."""
    app.router.add_get("/admin/analytics", show_analytics)
    app.router.add_get("/admin/analytics.csv", export_analytics)
