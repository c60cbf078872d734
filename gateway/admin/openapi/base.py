"""Pieces every part of the OpenAPI document uses."""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, str]:
    """A reference to a schema of the components."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON body of this schema."""
    return {"application/json": {"schema": schema}}


def error(description: str) -> dict[str, Any]:
    """An error answer (the ingress's error shape)."""
    return {"description": description, "content": json_content(ref("Error"))}


NULLABLE_STRING = {"type": ["string", "null"]}
TIME = {"type": ["string", "null"], "format": "date-time"}
PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]
SOURCE = {"name": "source", "in": "query", "schema": {"type": "string"}}
EVENT_ID = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}
COMMON_ERRORS = {
    "401": error("missing or wrong bearer token, and no dashboard session"),
    "403": error("a POST carried by the session cookie from another origin"),
    "404": error("not found, or the admin API is off (no admin.token)"),
    "503": error("the store is unreachable"),
}
