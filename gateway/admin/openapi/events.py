"""The OpenAPI 3.1 description of the admin API's events, deliveries, dead letters, payments
and figures (everything but reconciliation)."""

from __future__ import annotations

from typing import Any

import gateway
from gateway.admin.openapi.base import (
    COMMON_ERRORS,
    EVENT_ID,
    NULLABLE_STRING,
    PAGE,
    SOURCE,
    TIME,
    error,
    json_content,
    ref,
)
from gateway.payments.states import STATES
from gateway.store.records import ATTENTIONS, EVENT_STATUSES

#: Everything but reconciliation; ``gateway.admin.openapi`` adds it.
DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "webhook-gateway admin API",
        "version": gateway.__version__,
        "description": "Events, delivery attempts, replay, dead letters and redrive, and"
        " what the dashboard reads: payments, last-hour figures, a live stream.",
    },
    "security": [{"bearer": []}, {"session": []}],
    "paths": {
        "/admin/events": {
            "get": {
                "summary": "List events, newest first",
                "operationId": "listEvents",
                "parameters": [
                    SOURCE,
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"enum": list(EVENT_STATUSES)},
                    },
                    {"name": "type", "in": "query", "schema": {"type": "string", "maxLength": 512}},
                    {
                        "name": "q",
                        "in": "query",
                        "description": "a prefix of the event id or of the subject",
                        "schema": {"type": "string", "maxLength": 512},
                    },
                    *PAGE,
                ],
                "responses": {
                    "200": {
                        "description": "a page of events",
                        "content": json_content(ref("EventPage")),
                    },
                    "400": error("bad filter, limit or cursor"),
                    **COMMON_ERRORS,
                },
            }
        },
        "/admin/events/{event_id}": {
            "get": {
                "summary": "One event with every delivery and attempt",
                "operationId": "getEvent",
                "parameters": [EVENT_ID, SOURCE],
                "responses": {
                    "200": {"description": "the event", "content": json_content(ref("Event"))},
                    **COMMON_ERRORS,
                },
            }
        },
        "/admin/events/{event_id}/replay": {
            "post": {
                "summary": "Deliver a stored event again (never swallowed by dedupe)",
                "operationId": "replayEvent",
                "parameters": [EVENT_ID, SOURCE],
                "requestBody": {
                    "required": False,
                    "content": json_content(
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
                        "content": json_content(
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
                    "400": error("bad body or unknown destination"),
                    "409": error("no configured route takes this event's type"),
                    **COMMON_ERRORS,
                },
            }
        },
        "/admin/dead-letters": {
            "get": {
                "summary": "List dead letters, most recently dead first",
                "operationId": "listDeadLetters",
                "parameters": [
                    {"name": "destination", "in": "query", "schema": {"type": "string"}},
                    *PAGE,
                ],
                "responses": {
                    "200": {
                        "description": "a page of dead letters",
                        "content": json_content(ref("DeadLetterPage")),
                    },
                    "400": error("bad limit or cursor"),
                    **COMMON_ERRORS,
                },
            }
        },
        "/admin/payments": {
            "get": {
                "summary": "Payments: one line per payment, latest update first",
                "operationId": "listPayments",
                "parameters": [
                    SOURCE,
                    {"name": "state", "in": "query", "schema": {"enum": list(STATES)}},
                    {
                        "name": "q",
                        "in": "query",
                        "description": "a prefix of the payment's key or of its reference",
                        "schema": {"type": "string", "maxLength": 512},
                    },
                    {"name": "attention", "in": "query", "schema": {"enum": list(ATTENTIONS)}},
                    *PAGE,
                ],
                "responses": {
                    "200": {
                        "description": "a page of payments",
                        "content": json_content(ref("PaymentPage")),
                    },
                    "400": error("bad filter, limit or cursor"),
                    **COMMON_ERRORS,
                },
            }
        },
        "/admin/payments/{source}/{key}": {
            "get": {
                "summary": "One payment and every event of it in order, with its deliveries",
                "operationId": "getPayment",
                "parameters": [
                    {
                        "name": "source",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "maxLength": 512},
                    },
                    {
                        "name": "key",
                        "in": "path",
                        "required": True,
                        "description": "the payment's key (it may hold slashes: a Rafiki id is a"
                        " URL)",
                        "schema": {"type": "string", "maxLength": 512},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the payment and its events (the last 200)",
                        "content": json_content(
                            {
                                "type": "object",
                                "required": ["payment", "events"],
                                "properties": {
                                    "payment": ref("Payment"),
                                    "events": {"type": "array", "items": ref("Event")},
                                },
                            }
                        ),
                    },
                    "400": error("source or key too long or not valid text"),
                    **COMMON_ERRORS,
                    "404": error("no such payment, or the admin API is off"),
                },
            }
        },
        "/admin/stats": {
            "get": {
                "summary": "Last hour: counts, success ratio, latency, per-minute series, queues",
                "operationId": "getStats",
                "responses": {
                    "200": {
                        "description": "the figures; without them when the store is unreachable",
                        "content": json_content(ref("Stats")),
                    },
                    **COMMON_ERRORS,
                },
            }
        },
        "/admin/stream": {
            "get": {
                "summary": "Live: Server-Sent Events of accepted events and delivery outcomes",
                "operationId": "stream",
                "description": "event: accepted (event_id, source, type, subject, status) or"
                " event: delivery (also destination, attempt, result: delivered, retried or"
                " dead_lettered), each with an id: to send back as Last-Event-ID; a comment"
                " line every 15 s; a slow client is dropped and reconnects.",
                "parameters": [
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "the stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "401": error("no token and no session"),
                    "503": error("too many streams open, or the store is unreachable"),
                },
            }
        },
        "/admin/dead-letters/redrive": {
            "post": {
                "summary": "Make dead letters due again (attempt count reset)",
                "description": "Each id is a dead letter's delivery id or an event id (every"
                " dead delivery of that event); ids that named no dead letter come back under"
                " unmatched.",
                "operationId": "redrive",
                "requestBody": {
                    "required": True,
                    "content": json_content(
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
                        "description": "how many deliveries were redriven",
                        "content": json_content(
                            {
                                "type": "object",
                                "required": ["redriven", "unmatched"],
                                "properties": {
                                    "redriven": {"type": "integer"},
                                    "unmatched": {"type": "array", "items": {"type": "string"}},
                                },
                            }
                        ),
                    },
                    "400": error("neither ids nor all"),
                    **COMMON_ERRORS,
                },
            }
        },
        "/admin/destinations/{name}/retry-now": {
            "post": {
                "summary": "Deliver a destination's backlog now",
                "description": "Every delivery to the destination waiting out a backoff"
                " becomes due at once, its attempt count kept (as happens by itself when a"
                " delivery succeeds after the destination's failures).",
                "operationId": "retryNow",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "maxLength": 512},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "how many deliveries were made due",
                        "content": json_content(
                            {
                                "type": "object",
                                "required": ["destination", "retried"],
                                "properties": {
                                    "destination": {"type": "string"},
                                    "retried": {"type": "integer"},
                                },
                            }
                        ),
                    },
                    **COMMON_ERRORS,
                    "404": error("no such destination, or the admin API is off"),
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {
                "type": "apiKey",
                "in": "cookie",
                "name": "wg_session",
                "description": "the dashboard's session (POST /dashboard/login); a POST carried"
                " by it needs an Origin header naming the request's own scheme and host, else 403",
            },
        },
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
                    "started_at": TIME,
                    "status": {"type": ["integer", "null"]},
                    "latency_ms": {"type": "number"},
                    "error": NULLABLE_STRING,
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
                    "created_at": TIME,
                    "next_attempt_at": TIME,
                    "dead_reason": NULLABLE_STRING,
                    "dead_at": TIME,
                    "attempts": {"type": "array", "items": ref("Attempt")},
                },
            },
            "EventSummary": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "source": {"type": "string"},
                    "type": NULLABLE_STRING,
                    "subject": NULLABLE_STRING,
                    "received_at": TIME,
                    "status": {"enum": list(EVENT_STATUSES)},
                    "mode": {"enum": ["queued", "sync"]},
                    "body_status": NULLABLE_STRING,
                    "attempts": {"type": "integer"},
                },
            },
            "Event": {
                "allOf": [
                    ref("EventSummary"),
                    {
                        "type": "object",
                        "properties": {
                            "time": NULLABLE_STRING,
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
                            "origin": {"enum": ["webhook", "reconciled"]},
                            "payment_key": NULLABLE_STRING,
                            "mark": {"enum": [None, "superseded", "conflict"]},
                            "deliveries": {"type": "array", "items": ref("Delivery")},
                        },
                    },
                ]
            },
            "EventPage": {
                "type": "object",
                "properties": {
                    "events": {"type": "array", "items": ref("EventSummary")},
                    "next_cursor": NULLABLE_STRING,
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
                    "dead_at": TIME,
                    "reason": {"type": "string"},
                    "last_attempt": {"oneOf": [ref("Attempt"), {"type": "null"}]},
                },
            },
            "Amount": {
                "type": "object",
                "description": "exact: value in minor units as text, its scale and currency",
                "required": ["value", "scale", "currency", "decimal"],
                "properties": {
                    "value": {"type": "string", "pattern": "^-?[0-9]+$"},
                    "scale": {"type": "integer", "minimum": 0},
                    "currency": {"type": "string"},
                    "decimal": {"type": "string"},
                },
            },
            "Payment": {
                "type": "object",
                "required": ["source", "key", "state", "events", "delivered", "attention"],
                "properties": {
                    "source": {"type": "string"},
                    "key": {"type": "string"},
                    "reference": NULLABLE_STRING,
                    "state": {"enum": list(STATES)},
                    "amount": {"oneOf": [ref("Amount"), {"type": "null"}]},
                    "events": {"type": "integer"},
                    "delivered": {
                        "type": "boolean",
                        "description": "every delivery of its delivered events is done",
                    },
                    "attention": {"enum": [None, *ATTENTIONS]},
                    "first_seen": TIME,
                    "updated_at": TIME,
                },
            },
            "PaymentPage": {
                "type": "object",
                "properties": {
                    "payments": {"type": "array", "items": ref("Payment")},
                    "next_cursor": NULLABLE_STRING,
                },
            },
            "Stats": {
                "type": "object",
                "required": ["store_reachable"],
                "properties": {
                    "store_reachable": {"type": "boolean"},
                    "now": TIME,
                    "last_hour": {
                        "type": "object",
                        "properties": {
                            "accepted": {"type": "integer"},
                            "delivered": {"type": "integer"},
                            "retried": {"type": "integer"},
                            "dead_lettered": {"type": "integer"},
                            "success_ratio": {
                                "type": ["number", "null"],
                                "description": "delivered / (delivered + dead_lettered): the"
                                " share of the hour's finished deliveries that were delivered"
                                " (a retry is not an outcome); null when none finished",
                            },
                            "latency_p50_ms": {"type": ["number", "null"]},
                            "latency_p99_ms": {"type": ["number", "null"]},
                        },
                    },
                    "per_minute": {
                        "type": "object",
                        "description": "60 counts each, oldest first, from start",
                        "additionalProperties": {"type": "array", "items": {"type": "integer"}},
                    },
                    "queue_depth": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "additionalProperties": {"type": "integer"},
                        },
                    },
                },
            },
            "DeadLetterPage": {
                "type": "object",
                "properties": {
                    "dead_letters": {"type": "array", "items": ref("DeadLetter")},
                    "next_cursor": NULLABLE_STRING,
                },
            },
        },
    },
}
