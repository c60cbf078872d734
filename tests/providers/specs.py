"""One description per signing scheme, so every scheme goes through the same attacks."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

NOW = 1_774_589_675.0
# Contains "paid", which the tamper tests change; a JSON object Rafiki can sign too.
BODY = (
    b'{"id": "evt_01J9", "type": "payment.succeeded",\n'
    b' "data": {"status": "paid", "amount": 1.5e-7, "note": "caf\xc3\xa9 \xe2\x9c\x93"}}'
)

Headers = dict[str, str]
Transform = Callable[[Headers], Headers]


def _sub(header: str, pattern: str, replacement: str) -> Transform:
    """Rewrite one header of a genuinely signed request with a regular expression."""

    def change(headers: Headers) -> Headers:
        value, count = re.subn(pattern, replacement, headers[header], count=1)
        assert count == 1, (header, pattern, headers[header])
        return {**headers, header: value}

    return change


def _set(header: str, value: str) -> Transform:
    """Replace one header of a genuinely signed request."""
    return lambda headers: {**headers, header: value}


def _recode(header: str, prefix: str, to: str) -> Transform:
    """Re-encode a genuine digest (hex <-> base64), keeping the prefix: right bytes, wrong form."""

    def change(headers: Headers) -> Headers:
        value = headers[header][len(prefix) :]
        if to == "hex":
            recoded = base64.b64decode(value).hex()
        else:
            recoded = base64.b64encode(bytes.fromhex(value)).decode()
        return {**headers, header: prefix + recoded}

    return change


def _bump(header: str, pattern: str, delta: int = 1) -> Callable[[Headers], Headers]:
    """A function that adds ``delta`` to the timestamp found by ``pattern`` in ``header``."""

    def bump(headers: Headers) -> Headers:
        def add(match: re.Match[str]) -> str:
            return match.group(1) + str(int(match.group(2)) + delta)

        changed, count = re.subn(pattern, add, headers[header], count=1)
        assert count == 1, (header, headers[header])
        return {**headers, header: changed}

    return bump


def _ed25519_pair(seed: int) -> tuple[str, str]:
    key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    private = bytes([seed]) * 32
    return (
        "whsk_" + base64.b64encode(private).decode(),
        "whpk_" + base64.b64encode(public).decode(),
    )


@dataclass(frozen=True)
class Scheme:
    """A provider configuration plus what an attacker can change about its requests."""

    id: str
    provider: str
    secret: str
    old_secret: str
    required: tuple[str, ...]  # headers (as sign() names them) without which verify must fail
    malformed: tuple[tuple[str, Transform], ...]  # (why, change to a genuine request)
    options: Mapping[str, Any] = field(default_factory=dict)
    verify_secret: str | None = None  # public key when signing uses a private key
    old_verify_secret: str | None = None
    bump_timestamp: Callable[[Headers], Headers] | None = None
    signs_body: bool = True

    @property
    def verifier(self) -> str:
        """The secret verify() is given for a request signed with ``secret``."""
        return self.verify_secret or self.secret

    @property
    def old_verifier(self) -> str:
        """The secret verify() is given for a request signed with ``old_secret``."""
        return self.old_verify_secret or self.old_secret


SK, PK = _ed25519_pair(7)
OLD_SK, OLD_PK = _ed25519_pair(9)

SCHEMES = [
    Scheme(
        id="standard-webhooks-v1",
        provider="standard-webhooks",
        secret="whsec_" + base64.b64encode(b"k" * 24).decode(),
        old_secret="whsec_" + base64.b64encode(b"o" * 24).decode(),
        required=("webhook-id", "webhook-timestamp", "webhook-signature"),
        malformed=(
            ("unknown version label", _sub("webhook-signature", "^v1,", "v2,")),
            ("signature not base64", _sub("webhook-signature", "^v1,.", "v1,!")),
            ("empty signature", _set("webhook-signature", "")),
            ("empty id", _set("webhook-id", "")),
            ("timestamp not an integer", _sub("webhook-timestamp", "$", ".0")),
            ("negative timestamp", _sub("webhook-timestamp", "^", "-")),
        ),
        bump_timestamp=_bump("webhook-timestamp", r"()(\d+)"),
    ),
    Scheme(
        id="standard-webhooks-v1a",
        provider="standard-webhooks",
        secret=SK,
        old_secret=OLD_SK,
        verify_secret=PK,
        old_verify_secret=OLD_PK,
        required=("webhook-id", "webhook-timestamp", "webhook-signature"),
        malformed=(
            ("ed25519 signature under the v1 label", _sub("webhook-signature", "^v1a,", "v1,")),
            ("signature truncated", _sub("webhook-signature", "....$", "")),
        ),
        bump_timestamp=_bump("webhook-timestamp", r"()(\d+)"),
    ),
    Scheme(
        id="stripe",
        provider="stripe",
        secret="whsec_test_current",
        old_secret="whsec_test_previous",
        required=("Stripe-Signature",),
        malformed=(
            ("v0 only (ignored scheme)", _sub("Stripe-Signature", "v1=", "v0=")),
            ("no t", _sub("Stripe-Signature", r"^t=\d+,", "")),
            ("t not an integer", _sub("Stripe-Signature", r"^t=(\d+)", r"t=\1.0")),
            ("two t", _sub("Stripe-Signature", r"^(t=\d+)", r"\1,\1")),
            ("digest not hex", _sub("Stripe-Signature", "v1=..", "v1=zz")),
            ("digest truncated", _sub("Stripe-Signature", "..$", "")),
            ("empty", _set("Stripe-Signature", "")),
        ),
        bump_timestamp=_bump("Stripe-Signature", r"(t=)(\d+)"),
    ),
    Scheme(
        id="github",
        provider="github",
        secret="It's a Secret to Everybody",
        old_secret="the previous secret",
        required=("X-Hub-Signature-256",),
        malformed=(
            ("sha1 prefix", _sub("X-Hub-Signature-256", "^sha256=", "sha1=")),
            # Same length as "sha256=", so only the prefix check can refuse it.
            ("sha512 prefix", _sub("X-Hub-Signature-256", "^sha256=", "sha512=")),
            ("no prefix", _sub("X-Hub-Signature-256", "^sha256=", "")),
            ("digest not hex", _sub("X-Hub-Signature-256", ".$", "g")),
            ("digest truncated", _sub("X-Hub-Signature-256", "..$", "")),
            ("digest in base64", _recode("X-Hub-Signature-256", "sha256=", "base64")),
        ),
    ),
    Scheme(
        id="shopify",
        provider="shopify",
        secret="shpss_current",
        old_secret="shpss_previous",
        required=("X-Shopify-Hmac-Sha256",),
        malformed=(
            ("digest in hex", _recode("X-Shopify-Hmac-Sha256", "", "hex")),
            ("not base64", _sub("X-Shopify-Hmac-Sha256", "^.", "!")),
            ("truncated", _sub("X-Shopify-Hmac-Sha256", "....$", "")),
            ("empty", _set("X-Shopify-Hmac-Sha256", "")),
        ),
    ),
    Scheme(
        id="slack",
        provider="slack",
        secret="8f742231b10e8888abcd99yyyzzz85a5",
        old_secret="0123456789abcdef0123456789abcdef",
        required=("X-Slack-Signature", "X-Slack-Request-Timestamp"),
        malformed=(
            ("v1 version", _sub("X-Slack-Signature", "^v0=", "v1=")),
            ("no version", _sub("X-Slack-Signature", "^v0=", "")),
            ("digest not hex", _sub("X-Slack-Signature", ".$", "g")),
            ("timestamp not an integer", _sub("X-Slack-Request-Timestamp", "$", ".0")),
            ("timestamp empty", _set("X-Slack-Request-Timestamp", "")),
        ),
        bump_timestamp=_bump("X-Slack-Request-Timestamp", r"()(\d+)"),
    ),
    Scheme(
        id="rafiki",
        provider="rafiki",
        secret="rafiki-current",
        old_secret="rafiki-previous",
        required=("Rafiki-Signature",),
        malformed=(
            ("no t", _sub("Rafiki-Signature", r"^t=\d+, ", "")),
            ("v2 version", _sub("Rafiki-Signature", "v1=", "v2=")),
            ("t not an integer", _sub("Rafiki-Signature", r"^t=(\d+)", r"t=\1.5")),
            ("digest not hex", _sub("Rafiki-Signature", ".$", "g")),
            ("empty", _set("Rafiki-Signature", "")),
        ),
        bump_timestamp=_bump("Rafiki-Signature", r"(t=)(\d+)"),
    ),
    Scheme(
        id="hmac-defaults",
        provider="hmac",
        options={"header": "X-Signature"},
        secret="partner-current",
        old_secret="partner-previous",
        required=("x-signature",),
        malformed=(
            ("digest not hex", _sub("x-signature", "^.", "z")),
            ("digest in base64", _recode("x-signature", "", "base64")),
            ("unexpected prefix", _sub("x-signature", "^", "sha256=")),
        ),
    ),
    Scheme(
        id="hmac-sha512-base64-timestamp",
        provider="hmac",
        options={
            "header": "X-Signature",
            "algorithm": "sha512",
            "encoding": "base64",
            "prefix": "sha512=",
            "timestamp_header": "X-Timestamp",
            "signed_payload": "{timestamp}.{body}",
        },
        secret="partner-current",
        old_secret="partner-previous",
        required=("x-signature", "x-timestamp"),
        malformed=(
            ("no prefix", _sub("x-signature", "^sha512=", "")),
            ("digest in hex", _recode("x-signature", "sha512=", "hex")),
            ("not base64", _sub("x-signature", "=(.)", "=*")),
            ("timestamp not an integer", _sub("x-timestamp", "$", "s")),
        ),
        bump_timestamp=_bump("x-timestamp", r"()(\d+)"),
    ),
    Scheme(
        id="hmac-template-hex-prefix",
        provider="hmac",
        options={
            "header": "X-Partner-Sig",
            "prefix": "v1=",
            "timestamp_header": "X-Partner-Time",
            "signed_payload": "v1:{timestamp}:{body}:end",
        },
        secret="partner-current",
        old_secret="partner-previous",
        required=("x-partner-sig", "x-partner-time"),
        malformed=(
            ("no prefix", _sub("x-partner-sig", "^v1=", "")),
            ("prefix only", _sub("x-partner-sig", "=.*$", "=")),
        ),
        bump_timestamp=_bump("x-partner-time", r"()(\d+)"),
    ),
    Scheme(
        id="bearer",
        provider="bearer",
        secret="tok_current_9f8e7d",
        old_secret="tok_previous_1a2b3c",
        required=("Authorization",),
        malformed=(
            ("Basic scheme", _sub("Authorization", "^Bearer", "Basic")),
            ("no scheme", _sub("Authorization", "^Bearer ", "")),
            ("scheme only", _set("Authorization", "Bearer")),
            ("scheme glued to token", _sub("Authorization", "^Bearer ", "Bearer")),
            ("token truncated", _sub("Authorization", ".$", "")),
            ("token extended", _sub("Authorization", "$", "x")),
        ),
        signs_body=False,
    ),
    Scheme(
        id="bearer-raw-header",
        provider="bearer",
        options={"header": "X-Api-Key", "scheme": ""},
        secret="tok_current_9f8e7d",
        old_secret="tok_previous_1a2b3c",
        required=("X-Api-Key",),
        malformed=(
            ("with a scheme", _sub("X-Api-Key", "^", "Bearer ")),
            ("token truncated", _sub("X-Api-Key", ".$", "")),
            ("empty", _set("X-Api-Key", "")),
        ),
        signs_body=False,
    ),
]
