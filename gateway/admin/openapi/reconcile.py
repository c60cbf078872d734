"""The OpenAPI description of the reconciliation routes (design.md 5.8)."""

from __future__ import annotations

from typing import Any

from gateway.admin.openapi.base import (
    COMMON_ERRORS,
    NULLABLE_STRING,
    TIME,
    error,
    json_content,
    ref,
)
from gateway.store.records import RECONCILE_RESULTS, RUNS_KEPT

PATHS: dict[str, Any] = {
    "/admin/reconciliation": {
        "get": {
            "summary": "Each reconciled source: its last run and its recent runs",
            "operationId": "listReconciliation",
            "parameters": [
                {
                    "name": "since",
                    "in": "query",
                    "description": "only runs started at or after this time (RFC 3339)",
                    "schema": {"type": "string", "format": "date-time"},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "description": "most runs per source (default 10)",
                    "schema": {"type": "integer", "minimum": 1, "maximum": RUNS_KEPT},
                },
            ],
            "responses": {
                "200": {
                    "description": "the sources with a reconcile block",
                    "content": json_content(ref("ReconcileOverview")),
                },
                "400": error("bad since or limit"),
                **COMMON_ERRORS,
            },
        }
    },
    "/admin/reconciliation/runs/{run_id}": {
        "get": {
            "summary": "One run with every item that is not matched or open",
            "operationId": "getReconcileRun",
            "parameters": [
                {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {"description": "the run", "content": json_content(ref("ReconcileRun"))},
                **COMMON_ERRORS,
                "404": error("no such run (the last 50 of each source are kept)"),
            },
        }
    },
    "/admin/reconciliation/{source}/run": {
        "post": {
            "summary": "Run a reconciliation of the source now and answer it",
            "operationId": "runReconciliation",
            "description": "Waits for the run to end; a run started here finishes even if the"
            " caller goes away. A provider that fails gives a run with ok false and its error,"
            " and nothing recovered.",
            "parameters": [
                {"name": "source", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "dry_run",
                    "in": "query",
                    "description": "1: compare and report, recover nothing, flag nothing",
                    "schema": {"enum": ["0", "1", "true", "false"]},
                },
            ],
            "responses": {
                "200": {"description": "the run", "content": json_content(ref("ReconcileRun"))},
                "400": error("bad dry_run"),
                "409": error("in_progress: a run of this source is going on (any process)"),
                **COMMON_ERRORS,
                "404": error("no such source, or it has no reconcile block"),
            },
        }
    },
}

_COUNTS = {
    "type": "object",
    "properties": {result: {"type": "integer"} for result in RECONCILE_RESULTS},
}

SCHEMAS: dict[str, Any] = {
    "ReconcileItem": {
        "type": "object",
        "required": ["key", "result"],
        "properties": {
            "key": {"type": "string"},
            "provider_state": NULLABLE_STRING,
            "gateway_state": NULLABLE_STRING,
            "result": {"enum": list(RECONCILE_RESULTS)},
            "event_id": NULLABLE_STRING,
            "reason": NULLABLE_STRING,
            "payment": {"type": "string", "description": "the admin path of the payment"},
        },
    },
    "ReconcileRun": {
        "type": "object",
        "required": ["id", "source", "started_at", "finished_at", "ok", "error", "counts"],
        "properties": {
            "id": {"type": "string"},
            "source": {"type": "string"},
            "started_at": {"type": "string", "format": "date-time"},
            "finished_at": TIME,
            "ok": {"type": "boolean"},
            "error": NULLABLE_STRING,
            "dry_run": {"type": "boolean"},
            "counts": _COUNTS,
            "items": {
                "type": "array",
                "description": "only on one run: every item not matched or open (at most 1000)",
                "items": ref("ReconcileItem"),
            },
        },
    },
    "ReconcileOverview": {
        "type": "object",
        "properties": {
            "now": {"type": "string", "format": "date-time"},
            "sources": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "source": {"type": "string"},
                        "kind": {"enum": ["http-list", "rafiki", "stripe"]},
                        "every": {"type": ["number", "null"], "description": "seconds"},
                        "recover": {"type": "boolean"},
                        "running": {
                            "oneOf": [
                                {
                                    "type": "object",
                                    "properties": {
                                        "by": {"type": "string", "description": "host:pid"},
                                        "since": {"type": "string", "format": "date-time"},
                                    },
                                },
                                {"type": "null"},
                            ],
                            "description": "a run going on now, in any process or replica",
                        },
                        "last_run": {"oneOf": [ref("ReconcileRun"), {"type": "null"}]},
                        "runs": {"type": "array", "items": ref("ReconcileRun")},
                    },
                },
            },
        },
    },
}
