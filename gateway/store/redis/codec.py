"""How the store's values are written as Redis text and read back from its hashes."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.store.crypto import KeyRing, open_payload
from gateway.store.records import Event, UnreadableEvent


def time_text(value: float) -> str:
    """A time as the scripts store it: the shortest exact text of the float."""
    return repr(float(value))


def text_or_none(value: bytes | None) -> str | None:
    """A hash field as text, ``None`` where the hash has no such field."""
    return None if value is None else value.decode()


def present(names: Sequence[str], values: Sequence[bytes | None]) -> dict[str, bytes]:
    """An HMGET reply of ``names`` as a dict of the fields the hash has."""
    return {name: value for name, value in zip(names, values, strict=True) if value is not None}


def event_of(fields: dict[str, bytes], ring: KeyRing | None) -> Event:
    """An ``Event`` from its hash (payload decrypted when sealed); ``UnreadableEvent`` if not."""
    try:
        source, event_id = fields["source"].decode(), fields["id"].decode()
        sealed_body, sealed_headers = bytes(fields["body"]), fields["headers"]
        type_, subject, time_ = (
            text_or_none(fields.get(name)) for name in ("type", "subject", "time")
        )
        dedupe_key = fields["dedupe_key"].decode()
        request_id = fields["request_id"].decode()
        received_at = float(fields["received_at"])
    except (KeyError, ValueError) as exc:  # a field missing or mangled (UnicodeDecodeError too)
        raise UnreadableEvent(f"stored event is corrupt ({type(exc).__name__})") from None
    body, headers = open_payload(ring, source, event_id, sealed_body, sealed_headers)
    return Event(
        id=event_id,
        source=source,
        type=type_,
        subject=subject,
        time=time_,
        dedupe_key=dedupe_key,
        body=body,
        headers=headers,
        request_id=request_id,
        received_at=received_at,
        body_status=text_or_none(fields.get("body_status")),
        origin="reconciled" if fields.get("origin") == b"reconciled" else "webhook",
    )
