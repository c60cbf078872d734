"""The OpenAPI description of the analytics routes (design.md 5.9)."""

from __future__ import annotations

from typing import Any

from gateway.admin.openapi.base import COMMON_ERRORS, error, json_content, ref
from gateway.analytics.report import BUCKETS, CSV_COLUMNS

_PARAMETERS = [
    {
        "name": "from",
        "in": "query",
        "description": "the range's start (RFC 3339; default 7 days before to)",
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "to",
        "in": "query",
        "description": "the range's end (RFC 3339; default now)",
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "bucket",
        "in": "query",
        "description": "aligned in UTC, a week from Monday (default by the range: hour up to"
        " 2 days, day up to 90, else week)",
        "schema": {"enum": list(BUCKETS)},
    },
    {
        "name": "source",
        "in": "query",
        "description": "one configured source (default: all)",
        "schema": {"type": "string"},
    },
]
_ERRORS = {
    "400": error("bad from, to or bucket; a range over 400 days or 2000 buckets"),
    **COMMON_ERRORS,
    "404": error("no such source, or the admin API is off"),
}
_PERCENTILES = {
    "oneOf": [
        {"type": "object", "additionalProperties": {"type": "number"}},
        {"type": "null"},
    ],
    "description": "seconds, from log-spaced bins 25 % apart",
}

PATHS: dict[str, Any] = {
    "/admin/analytics": {
        "get": {
            "summary": "Payments, money per currency, success and delivery, per bucket",
            "operationId": "getAnalytics",
            "description": "Read from hourly rollups kept as events arrive and payments change"
            " state, never from the events: a query costs the same whatever the traffic.",
            "parameters": _PARAMETERS,
            "responses": {
                "200": {
                    "description": "the buckets, oldest first, and the totals",
                    "content": json_content(ref("Analytics")),
                },
                **_ERRORS,
            },
        }
    },
    "/admin/analytics.csv": {
        "get": {
            "summary": "The same as CSV: one row per bucket and currency",
            "operationId": "getAnalyticsCsv",
            "parameters": _PARAMETERS,
            "responses": {
                "200": {
                    "description": "columns: " + ", ".join(CSV_COLUMNS),
                    "content": {"text/csv": {"schema": {"type": "string"}}},
                },
                **_ERRORS,
            },
        }
    },
}

_COUNTS = {"type": "integer"}
SCHEMAS: dict[str, Any] = {
    "AnalyticsBucket": {
        "type": "object",
        "properties": {
            "start": {"type": "string", "format": "date-time", "description": "not in totals"},
            "payments": {
                "type": "object",
                "description": "first seen, and reaching each final state, in the bucket",
                "properties": {
                    name: _COUNTS
                    for name in ("first_seen", "completed", "failed", "expired", "cancelled")
                },
            },
            "completed_amounts": {
                "type": "object",
                "description": "currency -> decimal text, exact",
                "additionalProperties": {"type": "string"},
            },
            "success_ratio": {
                "type": ["number", "null"],
                "description": "completed over every payment that reached a final state",
            },
            "time_to_completion": {**_PERCENTILES, "description": "p50, p90 (seconds)"},
            "deliveries": {
                "type": "object",
                "properties": {
                    "delivered": _COUNTS,
                    "dead_lettered": _COUNTS,
                    "latency": {**_PERCENTILES, "description": "arrival to delivery: p50, p99"},
                },
            },
        },
    },
    "Analytics": {
        "type": "object",
        "required": ["from", "to", "bucket", "buckets", "totals"],
        "properties": {
            "source": {"type": ["string", "null"]},
            "from": {"type": "string", "format": "date-time"},
            "to": {"type": "string", "format": "date-time"},
            "bucket": {"enum": list(BUCKETS)},
            "buckets": {"type": "array", "items": ref("AnalyticsBucket")},
            "totals": ref("AnalyticsBucket"),
        },
    },
}
