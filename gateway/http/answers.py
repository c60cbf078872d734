"""JSON answers: errors carry ``error``, ``message`` and ``request_id`` (the ingress and the
admin API answer alike), and every answer carries ``X-Request-ID``."""

from __future__ import annotations

import itertools
import json
import os
import re

from aiohttp import web

from gateway.errors import RequestError
from gateway.jsontext import dumpb

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


#: Fresh request ids: a random prefix per process, then a counter. Unique across processes and
#: restarts like a UUID, without paying for 16 random bytes on every request.
_PREFIX = os.urandom(8).hex()
_SEQUENCE = itertools.count(1)


def request_id_of(header: str | None) -> str:
    """The sender's ``X-Request-ID`` when it is sane, else a fresh one (never echo junk to logs)."""
    if header and _REQUEST_ID.match(header):
        return header
    return f"{_PREFIX}{next(_SEQUENCE):08x}"


def json_response(status: int, payload: dict[str, object], request_id: str) -> web.Response:
    """A compact JSON response carrying ``X-Request-ID``."""
    return web.Response(
        status=status,
        body=dumpb(payload),
        content_type="application/json",
        headers={"X-Request-ID": request_id},
    )


def error_response(error: RequestError, request_id: str) -> web.Response:
    """The response for a refusal: status, JSON body and the error's own headers."""
    response = json_response(
        error.status,
        {"error": error.code, "message": error.message, "request_id": request_id, **error.extra},
        request_id,
    )
    response.headers.update(error.headers)
    return response


def json_answer(status: int, payload: object) -> web.Response:
    """A compact JSON response of the admin listener (its guard adds ``X-Request-ID``)."""
    return web.Response(
        status=status,
        body=json.dumps(payload, separators=(",", ":")).encode(),
        content_type="application/json",
    )
