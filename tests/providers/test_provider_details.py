"""What each provider does beyond the shared attacks: its quirks, defaults and secrets."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from gateway.errors import VerificationError
from gateway.extract import Extractor, Extractors, Payload
from gateway.providers.base import Secret

NOW = 1_774_589_675.0


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


# Stripe


def test_stripe_any_of_several_v1_signatures(make) -> None:
    body, secret = b'{"id":"evt_1"}', "whsec_abc"
    good = _hex_hmac(secret, f"{int(NOW)}.".encode() + body)
    header = f"t={int(NOW)},v1={'0' * 64},v1={good},v0={good}"
    make("stripe").verify(body, {"Stripe-Signature": header}, [Secret(secret)], NOW)


def test_stripe_tolerates_spaces_between_items(make) -> None:
    body, secret = b'{"id":"evt_1"}', "whsec_abc"
    good = _hex_hmac(secret, f"{int(NOW)}.".encode() + body)
    header = f" t={int(NOW)} , v1={good} "
    make("stripe").verify(body, {"stripe-signature": header}, [Secret(secret)], NOW)


def test_stripe_secret_need_not_start_with_whsec(make) -> None:
    provider = make("stripe")
    assert provider.describe_secret(Secret("sk_any_text_long_enough")) is None
    headers = provider.sign(b"{}", Secret("plain-secret"), NOW)
    provider.verify(b"{}", headers, [Secret("plain-secret")], NOW)


# GitHub


def test_github_sign_names_the_delivery_and_event(make) -> None:
    provider = make("github")
    headers = provider.sign(b"{}", Secret("s"), NOW, delivery="d-1", event="push")
    assert headers["X-GitHub-Delivery"] == "d-1"
    assert headers["X-GitHub-Event"] == "push"
    derived = provider.sign(b"{}", Secret("s"), NOW)["X-GitHub-Delivery"]
    assert derived == provider.sign(b"{}", Secret("s"), NOW)["X-GitHub-Delivery"]
    assert derived != provider.sign(b"{}", Secret("s"), NOW + 1)["X-GitHub-Delivery"]


def test_github_upper_case_hex(make) -> None:
    digest = _hex_hmac("s", b"{}").upper()
    make("github").verify(b"{}", {"X-Hub-Signature-256": f"sha256={digest}"}, [Secret("s")], NOW)


# Shopify


def test_shopify_sign_headers(make) -> None:
    headers = make("shopify").sign(b"{}", Secret("s"), NOW, topic="orders/create")
    assert headers["X-Shopify-Topic"] == "orders/create"
    assert headers["X-Shopify-Triggered-At"] == "2026-03-27T05:34:35.000Z"
    assert headers["X-Shopify-Webhook-Id"]


# Slack


def test_slack_signs_the_timestamp_text_as_sent(make) -> None:
    body, secret = b"a=1", "s"
    good = _hex_hmac(secret, f"v0:{int(NOW)}:".encode() + body)
    headers = {"X-Slack-Request-Timestamp": f"0{int(NOW)}", "X-Slack-Signature": f"v0={good}"}
    # The timestamp is fresh, but the text signed was not "0..." : refused.
    with pytest.raises(VerificationError):
        make("slack").verify(body, headers, [Secret(secret)], NOW)


# Rafiki

RAFIKI_EVENT = {"id": "evt-1", "type": "incoming_payment.created", "data": {"amount": "10"}}


def _rafiki_header(document: bytes, secret: str, timestamp_ms: int) -> dict[str, str]:
    digest = _hex_hmac(secret, f"{timestamp_ms}.".encode() + document)
    return {"Rafiki-Signature": f"t={timestamp_ms}, v1={digest}"}


def test_rafiki_layout_does_not_matter(make) -> None:
    provider = make("rafiki")
    headers = provider.sign(json.dumps(RAFIKI_EVENT).encode(), Secret("s"), NOW)
    relaid = (
        b'{ "type" : "incoming_payment.created",\r\n\t"data":{"amount":"1\\u0030"},"id":"evt-1"}'
    )
    provider.verify(relaid, headers, [Secret("s")], NOW)


@pytest.mark.parametrize("unit", [1000, 1], ids=["milliseconds", "seconds"])
def test_rafiki_takes_t_in_milliseconds_and_in_seconds(make, unit: int) -> None:
    # Rafiki's docs say milliseconds; its webhook service has signed Math.round(ms / 1000).
    canonical = b'{"data":{"amount":"10"},"id":"evt-1","type":"incoming_payment.created"}'
    provider = make("rafiki", None, 300.0)
    fresh = _rafiki_header(canonical, "s", int((NOW - 299) * unit))
    provider.verify(canonical, fresh, [Secret("s")], NOW)
    for stale in (NOW - 301, NOW + 301):
        with pytest.raises(VerificationError, match="timestamp"):
            provider.verify(
                canonical, _rafiki_header(canonical, "s", int(stale * unit)), [Secret("s")], NOW
            )


def test_rafiki_refuses_unsigned_top_level_members(make) -> None:
    # A correct signature over {id, type, data}, but the body smuggles in another member that
    # the destination would receive as if it were signed.
    canonical = b'{"data":{"amount":"10"},"id":"evt-1","type":"incoming_payment.created"}'
    headers = _rafiki_header(canonical, "s", int(NOW * 1000))
    provider = make("rafiki")
    provider.verify(canonical, headers, [Secret("s")], NOW)
    smuggled = canonical[:-1] + b',"status":"paid"}'
    with pytest.raises(VerificationError):
        provider.verify(smuggled, headers, [Secret("s")], NOW)
    with pytest.raises(ValueError, match="does not sign"):
        provider.sign(smuggled, Secret("s"), NOW)


def test_rafiki_refuses_duplicate_members(make) -> None:
    # Last-wins parsers verify "incoming_payment.created"; first-wins ones would act on "evil".
    canonical = b'{"data":{"amount":"10"},"id":"evt-1","type":"incoming_payment.created"}'
    headers = _rafiki_header(canonical, "s", int(NOW * 1000))
    doubled = b'{"type":"evil",' + canonical[1:]
    with pytest.raises(VerificationError):
        make("rafiki").verify(doubled, headers, [Secret("s")], NOW)


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"not json", b"\xff\xfe{}", b""], ids=str)
def test_rafiki_refuses_bodies_that_are_not_json_objects(make, body: bytes) -> None:
    headers = _rafiki_header(body, "s", int(NOW * 1000))
    with pytest.raises(VerificationError):
        make("rafiki").verify(body, headers, [Secret("s")], NOW)


def test_rafiki_numbers_are_javascript_doubles(make) -> None:
    # A Node sender holds 12345678901234567890 as a double and canonicalizes it so.
    body = b'{"id":"e","type":"t","data":{"n":12345678901234567890,"x":1.50,"z":-0}}'
    canonical = b'{"data":{"n":12345678901234567000,"x":1.5,"z":0},"id":"e","type":"t"}'
    make("rafiki").verify(body, _rafiki_header(canonical, "s", int(NOW * 1000)), [Secret("s")], NOW)


def test_rafiki_refuses_numbers_beyond_any_double(make) -> None:
    # Python's int() would refuse 5000 digits with a ValueError; it must be a 401, not a crash.
    body = b'{"id":"e","type":"t","data":{"n":' + b"9" * 5000 + b"}}"
    headers = _rafiki_header(body, "s", int(NOW * 1000))
    with pytest.raises(VerificationError):
        make("rafiki").verify(body, headers, [Secret("s")], NOW)


def test_rafiki_millisecond_timestamps_are_checked_to_the_millisecond(make) -> None:
    canonical = b'{"data":{},"id":"e","type":"t"}'
    provider = make("rafiki")
    ahead = _rafiki_header(canonical, "s", int(NOW * 1000) + 299_999)
    provider.verify(canonical, ahead, [Secret("s")], NOW)
    too_far = _rafiki_header(canonical, "s", int(NOW * 1000) + 300_001)
    with pytest.raises(VerificationError):
        provider.verify(canonical, too_far, [Secret("s")], NOW)


# Generic HMAC


def test_hmac_body_stays_bytes(make) -> None:
    provider = make("hmac", {"header": "X-Sig", "timestamp_header": "X-Time"})
    body = b"\xff\xfe\x00{body}{timestamp}"  # not UTF-8, and contains the placeholders
    headers = provider.sign(body, Secret("s"), NOW)
    assert headers["x-sig"] == _hex_hmac("s", f"{int(NOW)}.".encode() + body)
    provider.verify(body, headers, [Secret("s")], NOW)


def test_hmac_timestamp_is_in_seconds(make) -> None:
    provider = make("hmac", {"header": "X-Sig", "timestamp_header": "X-Time"})
    assert provider.sign(b"", Secret("s"), NOW + 0.9)["x-time"] == str(int(NOW))


# Bearer


def test_bearer_scheme_is_case_insensitive(make) -> None:
    provider = make("bearer")
    for value in ("bearer tok", "BEARER tok", "Bearer   tok  "):
        provider.verify(b"", {"authorization": value}, [Secret("tok")], NOW)


def test_bearer_accepts_any_listed_token(make) -> None:
    provider = make("bearer", {"header": "X-Token", "scheme": "Token"})
    tokens = [Secret("one"), Secret("two"), Secret("three")]
    assert provider.sign(b"", Secret("two"), NOW) == {"X-Token": "Token two"}
    provider.verify(b"", {"X-Token": "Token two"}, tokens, NOW)
    with pytest.raises(VerificationError):
        provider.verify(b"", {"X-Token": "Token four"}, tokens, NOW)


# None


def test_none_accepts_everything_and_signs_nothing(registry, make) -> None:
    provider = make("none")
    assert registry.get("none").authenticates is False
    provider.verify(b"anything", {}, [], NOW)
    provider.verify(b"", {"Authorization": "Bearer nonsense"}, [Secret("x")], 0.0)
    assert provider.sign(b"anything", Secret("x"), NOW) == {}


def test_only_none_skips_authentication(registry) -> None:
    assert [n for n in registry.names() if not registry.get(n).authenticates] == ["none"]


# Defaults: where each provider's events keep their id, type, time and dedupe key.

DEFAULTS = {
    "standard-webhooks": ("header:webhook-id", "body:/type", "header:webhook-id"),
    "stripe": ("body:/id", "body:/type", "body:/id"),
    "github": ("header:x-github-delivery", "header:x-github-event", "header:x-github-delivery"),
    "shopify": (
        "header:x-shopify-webhook-id",
        "header:x-shopify-topic",
        "header:x-shopify-webhook-id",
    ),
    "slack": (None, None, "sha256"),
    "rafiki": ("body:/id", "body:/type", "body:/id"),
    "hmac": (None, None, "sha256"),
    "bearer": (None, None, "sha256"),
    "none": (None, None, "sha256"),
}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_default_extractors(registry, name: str) -> None:
    defaults = registry.get(name).defaults
    assert isinstance(defaults, Extractors)
    got = tuple(str(e) if e else None for e in (defaults.id, defaults.type, defaults.dedupe))
    assert got == DEFAULTS[name]


def test_default_time_extractors(registry) -> None:
    assert registry.get("stripe").defaults.time == Extractor("body", "/created")
    assert registry.get("shopify").defaults.time == Extractor("header", "x-shopify-triggered-at")
    assert registry.get("slack").defaults.time == Extractor("header", "x-slack-request-timestamp")


@pytest.mark.parametrize(
    ("name", "options", "kw"),
    [
        ("stripe", {}, {}),
        ("github", {}, {"event": "push"}),
        ("shopify", {}, {"topic": "orders/create"}),
        ("rafiki", {}, {}),
    ],
)
def test_defaults_find_their_values_in_a_signed_request(make, name, options, kw) -> None:
    body = b'{"id": "evt_9", "type": "thing.happened", "created": 1774589600, "data": {}}'
    if name == "rafiki":
        body = b'{"id": "evt_9", "type": "thing.happened", "data": {}}'
    provider = make(name, options)
    headers = {k.lower(): v for k, v in provider.sign(body, Secret("s"), NOW, **kw).items()}
    payload = Payload(body, headers)
    defaults = provider.defaults
    for extractor in (defaults.id, defaults.type, defaults.dedupe):
        assert extractor is not None
        assert payload.get(extractor), extractor
    assert payload.get(defaults.id) == payload.get(defaults.dedupe)


# Secrets

SECRET_PROBLEMS = [
    ("stripe", "", True),
    ("stripe", "whsec_abc\n", True),
    ("stripe", "anything-long-enough", False),
    ("stripe", "abc123", True),
    ("github", " padded", True),
    ("github", "It's a Secret to Everybody", False),
    ("shopify", "", True),
    ("shopify", "shpss_0123456789abcdef", False),
    ("shopify", "shpss_x", True),
    ("slack", "abc\n", True),
    ("slack", "8f742231b10e8888abcd99yyyzzz85a5", False),
    ("rafiki", "", True),
    ("rafiki", "rafiki-secret-0123456789", False),
    ("rafiki", "rafiki-secret", True),
    ("hmac", "\tkey", True),
    ("hmac", "key-of-sixteen-b", False),
    ("hmac", "key", True),
    ("bearer", "two words", True),
    ("bearer", "", True),
    ("bearer", "tok_0123456789abcdef", False),
    ("bearer", "tok_123", True),
    ("none", "", False),
    ("standard-webhooks", "whsec_not base64", True),
    ("standard-webhooks", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", False),
    # 16 bytes of key: a Standard Webhooks key needs 24 or more.
    ("standard-webhooks", "whsec_MDEyMzQ1Njc4OWFiY2RlZg==", True),
    ("standard-webhooks", "whpk_AAAA", True),
]


@pytest.mark.parametrize(("name", "secret", "bad"), SECRET_PROBLEMS)
def test_describe_secret(make, name: str, secret: str, bad: bool) -> None:
    options = {"header": "X-Sig"} if name == "hmac" else {}
    problem = make(name, options).describe_secret(Secret(secret))
    assert (problem is not None) == bad
    if problem:
        assert secret.strip() == "" or secret.strip() not in problem  # never echo the secret
