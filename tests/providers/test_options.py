"""Provider options are validated when the source is built, each error naming its key."""

from __future__ import annotations

import pytest

from gateway.providers.base import OptionError, Secret

NOW = 1_774_589_675.0


@pytest.mark.parametrize(
    "name", ["standard-webhooks", "stripe", "github", "shopify", "slack", "rafiki", "none"]
)
def test_providers_without_options_refuse_any(make, name: str) -> None:
    with pytest.raises(OptionError) as info:
        make(name, {"header": "X-Sig"})
    assert info.value.key == "header"
    assert "unknown option" in info.value.message


@pytest.mark.parametrize("name", ["hmac", "bearer"])
def test_unknown_option_is_named(make, name: str) -> None:
    with pytest.raises(OptionError) as info:
        make(name, {"header": "X-Sig", "algorithim": "sha256"})
    assert info.value.key == "algorithim"
    assert "header" in info.value.message  # lists what is accepted


HMAC_ERRORS = [
    ({}, "header", "required"),
    ({"header": ""}, "header", "required"),
    ({"header": 5}, "header", "string"),
    ({"header": "X", "algorithm": "md5"}, "algorithm", "sha256, sha512"),
    ({"header": "X", "algorithm": "SHA256"}, "algorithm", "sha256, sha512"),
    ({"header": "X", "algorithm": "sha1"}, "algorithm", "sha256, sha512"),
    ({"header": "X", "encoding": "base32"}, "encoding", "hex, base64"),
    ({"header": "X", "prefix": 1}, "prefix", "string"),
    ({"header": "X", "timestamp_header": " "}, "timestamp_header", "header"),
    ({"header": "X", "signed_payload": "body"}, "signed_payload", "{body}"),
    ({"header": "X", "signed_payload": "{body}{body}"}, "signed_payload", "exactly once"),
    ({"header": "X", "signed_payload": "{ts}.{body}"}, "signed_payload", "{ts}"),
    ({"header": "X", "signed_payload": "{timestamp}.{body}"}, "signed_payload", "timestamp_header"),
    (
        {"header": "X", "timestamp_header": "T", "signed_payload": "{body}"},
        "signed_payload",
        "{timestamp}",
    ),
    ({"header": "X", "signed_payload": "{body}}"}, "signed_payload", "unbalanced"),
    ({"header": "X", "signed_payload": ["{body}"]}, "signed_payload", "string"),
]


@pytest.mark.parametrize(("options", "key", "words"), HMAC_ERRORS, ids=lambda v: str(v))
def test_hmac_option_errors(make, options, key: str, words: str) -> None:
    with pytest.raises(OptionError) as info:
        make("hmac", options)
    assert info.value.key == key
    assert words in info.value.message


def test_hmac_accepts_every_documented_option(make) -> None:
    provider = make(
        "hmac",
        {
            "header": "X-Signature",
            "algorithm": "sha512",
            "encoding": "hex",
            "prefix": "sha512=",
            "timestamp_header": "X-Timestamp",
            "signed_payload": "{timestamp}.{body}",
        },
    )
    headers = provider.sign(b"{}", Secret("s"), NOW)
    assert headers["x-signature"].startswith("sha512=")
    assert len(headers["x-signature"]) == len("sha512=") + 128
    assert headers["x-timestamp"] == str(int(NOW))


BEARER_ERRORS = [
    ({"header": ""}, "header"),
    ({"header": None}, "header"),
    ({"scheme": "Bearer Token"}, "scheme"),
    ({"scheme": " "}, "scheme"),
    ({"scheme": 3}, "scheme"),
]


@pytest.mark.parametrize(("options", "key"), BEARER_ERRORS, ids=lambda v: str(v))
def test_bearer_option_errors(make, options, key: str) -> None:
    with pytest.raises(OptionError) as info:
        make("bearer", options)
    assert info.value.key == key


def test_bearer_defaults(make) -> None:
    assert make("bearer").sign(b"", Secret("tok"), NOW) == {"Authorization": "Bearer tok"}
    raw = make("bearer", {"header": "X-Api-Key", "scheme": ""})
    assert raw.sign(b"", Secret("tok"), NOW) == {"X-Api-Key": "tok"}
