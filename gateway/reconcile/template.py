"""The webhook an ``http-list`` provider would have sent for an item (design.md 5.8). Pure.

A template is the body as a mapping: a string starting with ``/`` is a JSON pointer into the
item (the key is left out when the item lacks it), ``$now`` is the time of the recovery (RFC
3339, UTC), anything else is taken as written; mappings and lists are rendered inside out. The
item's numbers are kept as the listing wrote them (read as ``Decimal``, never a float), so an
amount recovered keeps every digit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from gateway.extract import resolve_pointer
from gateway.times import rfc3339

_ABSENT = object()


def render(template: Mapping[str, Any], item: object, now: float) -> bytes:
    """The body for ``item``, as compact JSON."""
    return compact_json(_value(template, item, now)).encode()


def _value(node: object, item: object, now: float) -> object:
    if isinstance(node, str):
        if node == "$now":
            return rfc3339(now)
        if node.startswith("/"):
            try:
                return resolve_pointer(item, _tokens(node))
            except KeyError:
                return _ABSENT
        return node
    if isinstance(node, Mapping):
        rendered = {str(k): _value(v, item, now) for k, v in node.items()}
        return {k: v for k, v in rendered.items() if v is not _ABSENT}
    if isinstance(node, list):
        return [v for v in (_value(x, item, now) for x in node) if v is not _ABSENT]
    return node


def _tokens(pointer: str) -> tuple[str, ...]:
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:])


def compact_json(value: object) -> str:
    """Compact JSON of plain data whose numbers may be ``Decimal`` (written as their text)."""
    if isinstance(value, Decimal):
        return format(value, "f") if value == value.to_integral_value() else str(value)
    if isinstance(value, Mapping):
        return (
            "{"
            + ",".join(f"{json.dumps(str(k))}:{compact_json(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(compact_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)
