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


def test_sha256_is_the_digest_of_the_raw_body():
    assert _get("sha256") == hashlib.sha256(BODY).hexdigest()


@pytest.mark.parametrize("spec", ["id", "header:", "/a~2b", "sha256x"])
def test_bad_extractors_are_refused(spec):
    with pytest.raises(ValueError):
        parse_extractor(spec)


def test_sha256_only_where_allowed():
    with pytest.raises(ValueError):
        parse_extractor("sha256")
    assert parse_extractor("sha256", allow_sha256=True) == Extractor("sha256")


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
