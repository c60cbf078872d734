"""The OpenAPI 3.1 description of the admin API, served at ``/admin/openapi.json``."""

from __future__ import annotations

from typing import Any

import gateway


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json_content(_ref("Error"))}


_NULLABLE_STRING = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]
_SOURCE = {"name": "source", "in": "query", "schema": {"type": "string"}}
_EVENT_ID = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}
_COMMON_ERRORS = {
    "401": _error("missing or wrong bearer token"),
    "404": _error("not found, or the admin API is off (no admin.token)"),
    "503": _error("the store is unreachable"),
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "webhook-gateway admin API",
        "version": gateway.__version__,
        "description": "Events, delivery attempts, replay, dead letters and redrive.",
    },
    "security": [{"bearer": []}],
    "paths": {
        "/admin/events": {
            "get": {
                "summary": "List events, newest first",
                "operationId": "listEvents",
                "parameters": [
                    _SOURCE,
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"enum": ["queued", "delivered", "dead_lettered", "unrouted"]},
                    },
                    *_PAGE,
                ],
                "responses": {
                    "200": {
                        "description": "a page of events",
                        "content": _json_content(_ref("EventPage")),
                    },
                    "400": _error("bad filter, limit or cursor"),
                    **_COMMON_ERRORS,
                },
            }
        },
        "/admin/events/{event_id}": {
            "get": {
                "summary": "One event with every delivery and attempt",
                "operationId": "getEvent",
                "parameters": [_EVENT_ID, _SOURCE],
                "responses": {
                    "200": {"description": "the event", "content": _json_content(_ref("Event"))},
                    **_COMMON_ERRORS,
                },
            }
        },
        "/admin/events/{event_id}/replay": {
            "post": {
                "summary": "Deliver a stored event again (never swallowed by dedupe)",
                "operationId": "replayEvent",
                "parameters": [_EVENT_ID, _SOURCE],
                "requestBody": {
                    "required": False,
                    "content": _json_content(
                        {
                            "type": "object",
                            "properties": {
                                "destinations": {"type": "array", "items": {"type": "string"}}
                            },
                            "additionalProperties": False,
                        }
                    ),
                },
                "responses": {
                    "202": {
                        "description": "new deliveries queued",
                        "content": _json_content(
                            {
                                "type": "object",
                                "required": ["event_id", "deliveries"],
                                "properties": {
                                    "event_id": {"type": "string"},
                                    "deliveries": {"type": "array", "items": {"type": "string"}},
                                },
                            }
                        ),
                    },
                    "400": _error("bad body or unknown destination"),
                    "409": _error("no configured route takes this event's type"),
                    **_COMMON_ERRORS,
                },
            }
        },
        "/admin/dead-letters": {
            "get": {
                "summary": "List dead letters, most recently dead first",
                "operationId": "listDeadLetters",
                "parameters": [
                    {"name": "destination", "in": "query", "schema": {"type": "string"}},
                    *_PAGE,
                ],
                "responses": {
                    "200": {
                        "description": "a page of dead letters",
                        "content": _json_content(_ref("DeadLetterPage")),
                    },
                    "400": _error("bad limit or cursor"),
                    **_COMMON_ERRORS,
                },
            }
        },
        "/admin/dead-letters/redrive": {
            "post": {
                "summary": "Make dead letters due again (attempt count reset)",
                "operationId": "redrive",
                "requestBody": {
                    "required": True,
                    "content": _json_content(
                        {
                            "oneOf": [
                                {
                                    "type": "object",
                                    "required": ["ids"],
                                    "properties": {
                                        "ids": {
                                            "type": "array",
                                            "items": {"type": "string"},
                                            "minItems": 1,
                                        }
                                    },
                                },
                                {
                                    "type": "object",
                                    "required": ["all"],
                                    "properties": {"all": {"const": True}},
                                },
                            ]
                        }
                    ),
                },
                "responses": {
                    "200": {
                        "description": "how many were redriven",
                        "content": _json_content(
                            {
                                "type": "object",
                                "required": ["redriven"],
                                "properties": {"redriven": {"type": "integer"}},
                            }
                        ),
                    },
                    "400": _error("neither ids nor all"),
                    **_COMMON_ERRORS,
                },
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "message", "request_id"],
                "properties": {
                    "error": {"type": "string"},
                    "message": {"type": "string"},
                    "request_id": {"type": "string"},
                },
            },
            "Attempt": {
                "type": "object",
                "properties": {
                    "number": {"type": "integer"},
                    "started_at": _TIME,
                    "status": {"type": ["integer", "null"]},
                    "latency_ms": {"type": "number"},
                    "error": _NULLABLE_STRING,
                    "response_excerpt": {"type": "string"},
                },
            },
            "Delivery": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "destination": {"type": "string"},
                    "state": {"enum": ["due", "leased", "delivered", "dead"]},
                    "attempts_made": {"type": "integer"},
                    "created_at": _TIME,
                    "next_attempt_at": _TIME,
                    "dead_reason": _NULLABLE_STRING,
                    "dead_at": _TIME,
                    "attempts": {"type": "array", "items": _ref("Attempt")},
                },
            },
            "EventSummary": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "source": {"type": "string"},
                    "type": _NULLABLE_STRING,
                    "subject": _NULLABLE_STRING,
                    "received_at": _TIME,
                    "status": {"enum": ["queued", "delivered", "dead_lettered", "unrouted"]},
                    "mode": {"enum": ["queued", "sync"]},
                },
            },
            "Event": {
                "allOf": [
                    _ref("EventSummary"),
                    {
                        "type": "object",
                        "properties": {
                            "time": _NULLABLE_STRING,
                            "dedupe_key": {"type": "string"},
                            "request_id": {"type": "string"},
                            "headers": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                    "minItems": 2,
                                    "maxItems": 2,
                                },
                            },
                            "body": {"type": "string"},
                            "body_base64": {"type": "string"},
                            "deliveries": {"type": "array", "items": _ref("Delivery")},
                        },
                    },
                ]
            },
            "EventPage": {
                "type": "object",
                "properties": {
                    "events": {"type": "array", "items": _ref("EventSummary")},
                    "next_cursor": _NULLABLE_STRING,
                },
            },
            "DeadLetter": {
                "type": "object",
                "properties": {
                    "delivery_id": {"type": "string"},
                    "event_id": {"type": "string"},
                    "source": {"type": "string"},
                    "destination": {"type": "string"},
                    "attempts_made": {"type": "integer"},
                    "dead_at": _TIME,
                    "reason": {"type": "string"},
                    "last_attempt": {"oneOf": [_ref("Attempt"), {"type": "null"}]},
                },
            },
            "DeadLetterPage": {
                "type": "object",
                "properties": {
                    "dead_letters": {"type": "array", "items": _ref("DeadLetter")},
                    "next_cursor": _NULLABLE_STRING,
                },
            },
        },
    },
}
