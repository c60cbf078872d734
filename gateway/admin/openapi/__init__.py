"""The OpenAPI 3.1 description of the admin API, served at ``/admin/openapi.json``: the events
part, the reconciliation part and the analytics part in one document."""

from __future__ import annotations

from typing import Any

from gateway.admin.openapi import analytics, events, reconcile

DOCUMENT: dict[str, Any] = {
    **events.DOCUMENT,
    "paths": {**events.DOCUMENT["paths"], **reconcile.PATHS, **analytics.PATHS},
    "components": {
        **events.DOCUMENT["components"],
        "schemas": {
            **events.DOCUMENT["components"]["schemas"],
            **reconcile.SCHEMAS,
            **analytics.SCHEMAS,
        },
    },
}
