"""Extractors: headers, RFC 6901 JSON pointers and the body hash."""

from __future__ import annotations

import hashlib
import json

import pytest

from gateway.errors import InvalidBody
from gateway.extract import Extractor, Payload, parse_extractor

DOCUMENT = {
    "id": "evt_1",
    "a/b": "slash",
    "m~n": "tilde",
    "list": ["zero", {"deep": 7}],
    "count": 3,
    "ratio": 1.5,
    "flag": True,
    "nothing": None,
    "obj": {"b": 1, "a": 2},
}
BODY = json.dumps(DOCUMENT).encode()


def _get(spec: str, headers=None) -> str | None:
    return Payload(BODY, headers or {}).get(parse_extractor(spec, allow_sha256=True))


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        ("/id", "evt_1"),
        ("body:/id", "evt_1"),
        ("/a~1b", "slash"),  # ~1 is "/"
        ("/m~0n", "tilde"),  # ~0 is "~"
        ("/list/0", "zero"),
        ("/list/1/deep", "7"),
        ("/count", "3"),
        ("/ratio", "1.5"),
        ("/flag", "true"),
        ("/obj", '{"a":2,"b":1}'),  # canonical text, so equal objects dedupe alike
        ("/nothing", None),  # null counts as absent
        ("/missing", None),
        ("/list/2", None),
        ("/list/01", None),  # leading zeros are not array indices (RFC 6901 section 4)
        ("/id/x", None),
    ],
)
def test_json_pointers(spec, value):
    assert _get(spec) == value


def test_headers_are_case_insensitive_through_the_request_mapping():
    from multidict import CIMultiDict

    headers = CIMultiDict({"Webhook-Id": "msg_1"})
    assert _get("header:WEBHOOK-ID", headers) == "msg_1"
    assert _get("header:x-missing", headers) is None


def test_a_header_and_a_pointer_of_like_spelling_are_read_apart():
    payload = Payload(b'{"type": "from-body", "t": 1}', {"type": "from-header"})
    for _ in range(2):  # the second time from what the first read kept
        assert payload.get(parse_extractor("header:type")) == "from-header"
        assert payload.get(parse_extractor("/type")) == "from-body"


def test_sha256_is_the_digest_of_the_raw_body():
    assert _get("sha256") == hashlib.sha256(BODY).hexdigest()


@pytest.mark.parametrize(
    "spec", ["id", "header:", "/a~2b", "sha256x", "header:/type", "header:a b", "header:x:y"]
)
def test_bad_extractors_are_refused(spec):
    with pytest.raises(ValueError):
        parse_extractor(spec)


def test_sha256_only_where_allowed():
    with pytest.raises(ValueError):
        parse_extractor("sha256")
    assert parse_extractor("sha256", allow_sha256=True) == Extractor("sha256")


BIG = 123456789012345678901234567890  # past 64 bits: orjson alone would make it a float


@pytest.mark.parametrize(
    ("body", "spec", "value"),
    [
        (f'{{"amount": {BIG}}}', "/amount", str(BIG)),
        (f'{{"amount": -{BIG}}}', "/amount", f"-{BIG}"),
        (f'{{"obj": {{"n": {BIG}, "r": 0.1}}}}', "/obj", f'{{"n":{BIG},"r":0.1}}'),
        (f'{{"list": [{BIG}]}}', "/list", f"[{BIG}]"),
        (f'{{"list": [{BIG}]}}', "/list/0", str(BIG)),
        ('{"n": 18446744073709551615}', "/n", "18446744073709551615"),  # the largest u64
        ('{"n": 1e400}', "/n", "Infinity"),
        ('{"n": 0.30000000000000004}', "/n", "0.30000000000000004"),
        ('{"id": "x", "n": NaN}', "/id", "x"),  # not JSON, but taken as it always was
        ('{"id": "\\udcff"}', "/id", "\udcff"),  # a lone surrogate's escape
        ('\ufeff{"id": "bom"}', "/id", "bom"),  # a UTF-8 byte order mark
        ('["a", "b"]', "/1", "b"),  # a document that is not an object
        ('"text"', "/0", None),
        ('{"": 5}', "/", "5"),  # the empty name
    ],
)
def test_values_are_read_exactly_as_the_standard_library_reads_them(body, spec, value):
    assert Payload(body.encode("utf-8", "surrogatepass"), {}).get(parse_extractor(spec)) == value
    assert json.loads(body.encode("utf-8", "surrogatepass"))  # the reference parses it too


def test_numbers_past_a_double_are_read_whole_and_too_many_digits_refused():
    digits = "1" + "0" * 400  # orjson refuses it, the standard library reads it exactly
    assert Payload(f'{{"n": {digits}}}'.encode(), {}).get(parse_extractor("/n")) == digits
    body = b'{"id": "evt_1", "n": ' + b"7" * 5000 + b"}"  # past the standard library's limit
    with pytest.raises(InvalidBody):
        Payload(body, {}).get(parse_extractor("/id"))
    assert Payload(body, {}).body_status() is None


def test_a_body_that_is_not_json_is_invalid_body():
    payload = Payload(b"\xff not json", {})
    with pytest.raises(InvalidBody):
        payload.get(parse_extractor("/id"))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"status": "paid"}', "paid"),
        (b'{"status": 3}', "3"),
        (b'{"status": null}', None),
        (b'{"state": "paid"}', None),
        (b"[1, 2]", None),
        (b"status=paid", None),
        (b"{not json", None),
    ],
)
def test_the_body_status_is_read_when_there_is_one_and_never_refuses(body, expected):
    assert Payload(body, {}).body_status() == expected
