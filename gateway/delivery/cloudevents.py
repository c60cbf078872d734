"""CloudEvents 1.0 HTTP binding for what the destination receives (design.md 4). Pure.

Binary mode keeps the provider's bytes as the body and puts the attributes in ``ce-*`` headers
(CloudEvents HTTP Protocol Binding 1.0, section 3.1); structured mode sends one
``application/cloudevents+json`` document with the original payload as ``data``
(``data_base64`` when the payload is not JSON), section 3.2.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime

from gateway.store.records import Event

SPECVERSION = "1.0"
#: A header value that needs no encoding: printable ASCII but space, ``"`` and ``%`` (one
#: regular expression match costs a fifth of a test of each character in Python).
_PLAIN = re.compile(r"[!#$&-~]*")
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
#: A time exactly as ``rfc3339`` writes one: UTC, milliseconds, ``Z``.
_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


def content_type(event: Event) -> str | None:
    """The original ``Content-Type`` the sender declared, kept with the event (``None`` when
    it holds a control character: no header could carry it on)."""
    for name, value in event.headers:
        if name.lower() == "content-type":
            return value if all(c == "\t" or " " <= c != "\x7f" for c in value) else None
    return None


def _is_canonical(text: str) -> bool:
    """Whether ``text`` is a real time already written the way ``rfc3339`` returns one."""
    if _CANONICAL.fullmatch(text) is None:
        return False
    try:
        datetime.fromisoformat(text[:-1])
    except ValueError:
        return False  # shaped like one, but not a real time (a month 13)
    return True


def rfc3339(value: str | None, fallback: float) -> str:
    """An RFC 3339 time from an extracted value (unix s/ms or ISO 8601), else ``fallback``."""
    moment: datetime | None = None
    if value:
        text = value.strip()
        if _is_canonical(text):
            # What the payments service sends: its own answer, at a fifth of the cost of
            # parsing and formatting it again.
            return text
        if text.isdigit():
            number = int(text)
            # 13 digits and more are milliseconds (Rafiki), fewer are seconds.
            seconds = number / 1000 if len(text) >= 13 else float(number)
            try:
                moment = datetime.fromtimestamp(seconds, tz=UTC)
            except (OverflowError, OSError, ValueError):
                moment = None
        else:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                moment = None
            if moment is not None and moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    if moment is None:
        moment = datetime.fromtimestamp(fallback, tz=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_type(event: Event) -> str:
    """``ce-type`` is required; an untyped event gets a type naming its source."""
    return event.type or f"{event.source}.webhook"


def header_value(value: str) -> str:
    """An attribute as a ``ce-*`` header value (binding section 3.1.3.2): space, ``"``, ``%``
    and everything outside printable ASCII are percent-encoded as UTF-8, so a sender's CR LF,
    control character or non-ASCII text can always travel and always decodes back."""
    if _PLAIN.fullmatch(value) is not None:
        return value
    return "".join(
        c
        if "!" <= c <= "~" and c not in '"%'
        # surrogateescape: a byte that was not UTF-8 when it arrived goes out as that byte.
        else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogateescape"))
        for c in value
    )


def binary_headers(event: Event) -> dict[str, str]:
    """The ``ce-*`` headers of binary mode, plus the original ``Content-Type``."""
    headers = {
        "ce-specversion": SPECVERSION,
        "ce-id": header_value(event.id),
        "ce-source": header_value(f"/sources/{event.source}"),
        "ce-type": header_value(event_type(event)),
        "ce-time": rfc3339(event.time, event.received_at),
    }
    if event.subject is not None:
        headers["ce-subject"] = header_value(event.subject)
    original = content_type(event)
    if original:
        headers["Content-Type"] = original
    return headers


def structured_body(event: Event) -> bytes:
    """One CloudEvents JSON document carrying the original payload as ``data``."""
    document: dict[str, object] = {
        "specversion": SPECVERSION,
        "id": event.id,
        "source": f"/sources/{event.source}",
        "type": event_type(event),
        "time": rfc3339(event.time, event.received_at),
    }
    if event.subject is not None:
        document["subject"] = event.subject
    original = content_type(event)
    if original:
        document["datacontenttype"] = original
    try:
        document["data"] = json.loads(event.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        document["data_base64"] = base64.b64encode(event.body).decode()
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: written as its JSON escape instead
        return json.dumps(document, separators=(",", ":")).encode()
