"""Our signatures against the providers' own libraries, in both directions.

Where a provider publishes no library (GitHub, Shopify, Rafiki, generic HMAC), the reference is
the provider's documented construction written out here with ``hmac`` and, for Rafiki, the
``rfc8785`` library: code that shares nothing with the plugins under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
import standardwebhooks
import stripe
from slack_sdk.signature import Clock, SignatureVerifier

from gateway.errors import VerificationError
from gateway.providers.base import Secret

NOW = 1_774_589_675.0

BODIES = [
    b'{"id":"evt_1","object":"event","type":"payment_intent.succeeded","created":1774589672}',
    '{"note": "café ✓ 0 \\u2028", "n": 1.5e-7}'.encode(),
    b"token=x&team_id=T208630&command=%2Fweather&text=94070",
    b"",
]
body_ids = ["json", "unicode", "form", "empty"]
each_body = pytest.mark.parametrize("body", BODIES, ids=body_ids)


class FixedClock(Clock):
    """slack_sdk's clock, pinned."""

    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


# Stripe: stripe-python's WebhookSignature (it decodes the payload as UTF-8 text).

STRIPE_SECRET = "whsec_g4jv1vkoh1q4of39y2hqrqps5nze58kl"


@each_body
def test_stripe_library_accepts_our_signature(make, body: bytes) -> None:
    now = time.time()  # stripe-python reads the real clock for its tolerance check
    headers = make("stripe").sign(body, Secret(STRIPE_SECRET), now)
    header = headers["Stripe-Signature"]
    assert stripe.WebhookSignature.verify_header(body.decode(), header, STRIPE_SECRET, 300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body.decode(), header, STRIPE_SECRET + "x", 300)


@each_body
def test_we_accept_stripe_library_signature(make, body: bytes) -> None:
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), STRIPE_SECRET, timestamp=int(NOW)
    )
    provider = make("stripe")
    provider.verify(body, {"Stripe-Signature": header}, [Secret(STRIPE_SECRET)], NOW)
    with pytest.raises(VerificationError):
        provider.verify(body + b" ", {"Stripe-Signature": header}, [Secret(STRIPE_SECRET)], NOW)


def test_stripe_library_and_we_produce_the_same_header(make) -> None:
    ours = make("stripe").sign(BODIES[0], Secret(STRIPE_SECRET), NOW)["Stripe-Signature"]
    theirs = stripe.WebhookSignature.generate_signature_header(
        BODIES[0].decode(), STRIPE_SECRET, timestamp=int(NOW)
    )
    assert ours == theirs


# Standard Webhooks: the standardwebhooks package (HMAC v1).

SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@each_body
def test_standardwebhooks_library_accepts_our_signature(make, body: bytes) -> None:
    headers = make("standard-webhooks").sign(body, Secret(SW_SECRET), time.time())
    standardwebhooks.Webhook(SW_SECRET).verify(body, headers, json_parse=False)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SW_SECRET).verify(body + b"x", headers, json_parse=False)


@each_body
def test_we_accept_standardwebhooks_library_signature(make, body: bytes) -> None:
    wh = standardwebhooks.Webhook(SW_SECRET)
    signature = wh.sign(
        "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", datetime.fromtimestamp(NOW, UTC), body.decode()
    )
    headers = {
        "webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        "webhook-timestamp": str(int(NOW)),
        "webhook-signature": signature,
    }
    provider = make("standard-webhooks")
    provider.verify(body, headers, [Secret(SW_SECRET)], NOW)
    with pytest.raises(VerificationError):
        provider.verify(body, {**headers, "webhook-id": "msg_other"}, [Secret(SW_SECRET)], NOW)


# Slack: slack_sdk's SignatureVerifier, with its clock pinned.

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@each_body
def test_slack_sdk_accepts_our_signature(make, body: bytes) -> None:
    headers = make("slack").sign(body, Secret(SLACK_SECRET), NOW)
    verifier = SignatureVerifier(SLACK_SECRET, clock=FixedClock(NOW))
    assert verifier.is_valid_request(body, headers)
    assert verifier.is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )
    assert not SignatureVerifier(SLACK_SECRET + "x", clock=FixedClock(NOW)).is_valid_request(
        body, headers
    )


@each_body
def test_we_accept_slack_sdk_signature(make, body: bytes) -> None:
    timestamp = str(int(NOW) - 10)
    verifier = SignatureVerifier(SLACK_SECRET, clock=FixedClock(NOW))
    signature = verifier.generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}
    provider = make("slack")
    provider.verify(body, headers, [Secret(SLACK_SECRET)], NOW)
    with pytest.raises(VerificationError):
        provider.verify(body + b"&x=1", headers, [Secret(SLACK_SECRET)], NOW)


# GitHub and Shopify: the documented HMAC constructions.

GITHUB_SECRET = "It's a Secret to Everybody"


def test_github_documented_example(make) -> None:
    # https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    headers = make("github").sign(b"Hello, World!", Secret(GITHUB_SECRET), NOW)
    assert headers["X-Hub-Signature-256"] == expected


@each_body
def test_github_both_directions(make, body: bytes) -> None:
    reference = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    provider = make("github")
    assert provider.sign(body, Secret(GITHUB_SECRET), NOW)["X-Hub-Signature-256"] == reference
    provider.verify(body, {"X-Hub-Signature-256": reference}, [Secret(GITHUB_SECRET)], NOW)


@each_body
def test_shopify_both_directions(make, body: bytes) -> None:
    secret = "shpss_92343846ca0c4907ac92c854"
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    reference = base64.b64encode(digest).decode()
    provider = make("shopify")
    assert provider.sign(body, Secret(secret), NOW)["X-Shopify-Hmac-Sha256"] == reference
    provider.verify(body, {"X-Shopify-Hmac-Sha256": reference}, [Secret(secret)], NOW)


# Rafiki: the sender's construction, with the rfc8785 library as the canonicalizer.

RAFIKI_SECRET = "rafiki-c94a54a941ba8c04"
RAFIKI_EVENTS = [
    {
        "id": "38a67137-00ce-f7fe-825b-85868e1a8d50",
        "type": "incoming_payment.completed",
        "data": {
            "id": "https://wallet.example/incoming-payments/1b1208f3",
            "receivedAmount": {"value": "760636048", "assetCode": "USD", "assetScale": 2},
            "metadata": {"description": "Café ✓", "n": 1.5e-7, "big": 1e21, "ratio": 0.1},
            "completed": True,
            "expiresAt": None,
            "\u20ac": [1, 2.5, -0.0, "\u0000\n\u001f"],
        },
    },
    {"id": "evt-2", "type": "wallet_address.not_found", "data": {"walletAddressUrl": "x"}},
    {"type": "asset.liquidity_low", "data": {}, "id": "evt-3"},
]


def _rafiki_reference_signature(event: dict[str, Any], timestamp_ms: int, secret: str) -> str:
    payload = f"{timestamp_ms}.".encode() + rfc8785.dumps(event)
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("event", RAFIKI_EVENTS, ids=["payment", "not-found", "empty-data"])
@pytest.mark.parametrize("indent", [None, 2, 4], ids=["compact", "indent2", "indent4"])
def test_we_accept_rafiki_reference_signature(
    make, event: dict[str, Any], indent: int | None
) -> None:
    timestamp_ms = int(NOW * 1000) - 4321
    digest = _rafiki_reference_signature(event, timestamp_ms, RAFIKI_SECRET)
    header = f"t={timestamp_ms}, v1={digest}"
    # The sender's JSON layout is its own business: pretty-printed, unsorted, escaped or not.
    for ensure_ascii in (True, False):
        body = json.dumps(event, indent=indent, ensure_ascii=ensure_ascii).encode()
        make("rafiki").verify(body, {"Rafiki-Signature": header}, [Secret(RAFIKI_SECRET)], NOW)


@pytest.mark.parametrize("event", RAFIKI_EVENTS, ids=["payment", "not-found", "empty-data"])
def test_rafiki_reference_accepts_our_signature(make, event: dict[str, Any]) -> None:
    body = json.dumps(event, indent=2).encode()
    header = make("rafiki").sign(body, Secret(RAFIKI_SECRET), NOW)["Rafiki-Signature"]
    timestamp_text, digest_text = header.split(", ")
    timestamp_ms = int(timestamp_text.removeprefix("t="))
    assert timestamp_ms == int(NOW * 1000)
    expected = _rafiki_reference_signature(json.loads(body), timestamp_ms, RAFIKI_SECRET)
    assert hmac.compare_digest(digest_text.removeprefix("v1="), expected)


# Generic HMAC: a partner's construction written out by hand.


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_generic_hmac_both_directions(make, algorithm: str, encoding: str) -> None:
    secret = "partner-secret"
    body = b'{"amount": 12}\xff\x00 not utf-8'  # raw bytes: never decoded
    timestamp = str(int(NOW))
    message = b"ts=" + timestamp.encode() + b"|" + body + b"|"
    digest = hmac.new(secret.encode(), message, algorithm).digest()
    value = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    options = {
        "header": "X-Sig",
        "algorithm": algorithm,
        "encoding": encoding,
        "prefix": f"{algorithm}=",
        "timestamp_header": "X-Sig-Time",
        "signed_payload": "ts={timestamp}|{body}|",
    }
    provider = make("hmac", options)
    reference = {"X-Sig": f"{algorithm}={value}", "X-Sig-Time": timestamp}
    assert {k.lower(): v for k, v in provider.sign(body, Secret(secret), NOW).items()} == {
        k.lower(): v for k, v in reference.items()
    }
    provider.verify(body, reference, [Secret(secret)], NOW)


def test_generic_hmac_default_template_with_timestamp_is_stripe_style(make) -> None:
    secret, body = "partner-secret", b'{"a":1}'
    provider = make("hmac", {"header": "X-Sig", "timestamp_header": "X-Time"})
    digest = hmac.new(secret.encode(), f"{int(NOW)}.".encode() + body, "sha256").hexdigest()
    provider.verify(body, {"X-Sig": digest, "X-Time": str(int(NOW))}, [Secret(secret)], NOW)


def test_generic_hmac_default_template_is_the_body(make) -> None:
    secret, body = "partner-secret", b'{"a":1}'
    digest = hmac.new(secret.encode(), body, "sha256").hexdigest().upper()
    make("hmac", {"header": "X-Sig"}).verify(body, {"X-Sig": digest}, [Secret(secret)], NOW)
