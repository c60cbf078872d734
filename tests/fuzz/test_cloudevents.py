"""CloudEvents building (design.md 4) on any event field values: binary mode always yields the
required ``ce-*`` headers as text an HTTP header can carry, and structured mode always yields
one JSON document. The values come from the sender (extracted from its body or headers)."""

from __future__ import annotations

import json
import re
import string
from datetime import datetime
from urllib.parse import unquote_to_bytes

from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery.cloudevents import binary_headers, header_value, rfc3339, structured_body
from gateway.store.records import Event
from tests.fuzz.settings import fuzz

# Times worth trying: the forms rfc3339() reads, near misses, and huge or negative numbers.
TIMES = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["2026-11-26T10:00:00.000Z", "1774589675000", "9" * 40, "Z", "  1 "]),
)


# Text as the ingress can hand it over: JSON's "\udc80" escape, or a header byte that is not
# UTF-8 (aiohttp decodes with surrogateescape), leaves a lone surrogate in a Python string.
SURROGATES = st.lists(
    st.one_of(st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF), st.characters()),
    min_size=1,
    max_size=6,
).map("".join)


def events(text: st.SearchStrategy[str]) -> st.SearchStrategy[Event]:
    """Events whose sender-controlled fields are drawn from ``text``."""
    return st.builds(
        Event,
        id=text.filter(bool),
        source=st.text(alphabet=string.ascii_lowercase + "-_", min_size=1, max_size=12),
        type=st.none() | text,
        subject=st.none() | text,
        time=st.one_of(TIMES, text),
        dedupe_key=text,
        body=st.binary(max_size=80) | st.just(b'{"a": [1, "x"]}'),
        headers=st.lists(
            st.tuples(st.sampled_from(["Content-Type", "content-type", "X-Trace"]), text),
            max_size=2,
        ).map(tuple),
        request_id=st.text(alphabet=string.hexdigits, max_size=8),
        received_at=st.floats(min_value=0, max_value=4e9),
    )


def check_structured(event: Event) -> None:
    document = json.loads(structured_body(event))
    assert document["specversion"] == "1.0"
    assert document["id"] == event.id
    assert ("data" in document) != ("data_base64" in document)


@fuzz(300)
@given(events(st.text(max_size=40)))
def test_any_printable_or_not_values_build_both_modes(event: Event) -> None:
    headers = binary_headers(event)
    for name in ("ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time"):
        assert isinstance(headers[name], str) and headers[name], name
    assert headers["ce-time"].endswith("Z")
    check_structured(event)


def header_safe(value: str) -> bool:
    """What RFC 9110 5.5 allows in a field value once aiohttp writes it as UTF-8: visible
    characters, space, tab and obs-text; no other control character, no DEL (a CR or LF would
    end the header and start another one)."""
    return all(c == "\t" or (0x20 <= ord(c) != 0x7F) for c in value)


@fuzz(300)
@given(events(st.text(max_size=40)))
def test_binary_headers_are_valid_field_values(event: Event) -> None:
    for name, value in binary_headers(event).items():
        assert header_safe(value), (name, value)


@fuzz(200)
@given(events(SURROGATES))
def test_lone_surrogates_build_both_modes(event: Event) -> None:
    binary_headers(event)
    check_structured(event)


@fuzz(300)
@given(st.text(max_size=40) | SURROGATES)
def test_a_ce_header_value_is_plain_or_escaped_and_decodes_back(value: str) -> None:
    """Binding 3.1.3.2: printable ASCII but space, ``"`` and ``%`` goes as it is, everything
    else as ``%XX`` of its UTF-8 bytes (a byte that was not UTF-8 as that byte), so the
    receiver decodes back exactly the bytes that were sent."""
    encoded = header_value(value)
    assert re.fullmatch(r"(?:[!#$&-~]|%[0-9A-F]{2})*", encoded), encoded
    assert unquote_to_bytes(encoded) == value.encode("utf-8", "surrogateescape")
    if all("!" <= c <= "~" and c not in '"%' for c in value):
        assert encoded == value


def _canonical(moment: datetime) -> str:
    """A naive datetime as UTC in the form ``rfc3339`` returns."""
    return moment.isoformat(timespec="milliseconds") + "Z"


# Shaped like rfc3339's own output, real dates or not (month 13, day 31 of February, ...).
CANONICAL_SHAPED = st.from_regex(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z"
)


@fuzz(300)
@given(st.one_of(CANONICAL_SHAPED, st.datetimes().map(_canonical)))
def test_a_time_in_the_returned_form_reads_as_the_same_time_with_an_offset(text: str) -> None:
    """The short way for a time already in the form returned (kept as it is) agrees with
    the long way, which the same time written with ``+00:00`` takes."""
    assert rfc3339(text, 0.0) == rfc3339(text[:-1] + "+00:00", 0.0)
    assert rfc3339(f" {text} ", 0.0) == rfc3339(text, 0.0)
