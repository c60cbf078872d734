"""Generic HMAC signatures, for partners with a home-grown scheme.

Options (under the source's ``options:``):

``header``            where the signature is (required)
``algorithm``         ``sha256`` (default) or ``sha512``
``encoding``          ``hex`` (default, either case accepted) or ``base64``
``prefix``            text before the signature in the header, e.g. ``sha256=`` (default none)
``timestamp_header``  header holding a Unix timestamp in seconds; when set, the timestamp must
                      be signed and is checked both ways against the tolerance
``signed_payload``    what is signed: ``{body}`` plus, with a timestamp header, ``{timestamp}``.
                      Defaults to ``{body}``, or ``{timestamp}.{body}`` when ``timestamp_header``
                      is set (the Stripe-style layout most home-grown schemes copy).

The body is signed as raw bytes: the template is split around ``{body}`` and only the text
around it is encoded, so a body that is not UTF-8 is still verified byte for byte. Without a
timestamp header nothing stops a replay but deduplication, so the default dedupe key is the
SHA-256 of the body.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

from gateway.errors import VerificationError
from gateway.extract import Extractor, Extractors
from gateway.providers.base import (
    BaseProvider,
    OptionError,
    Secret,
    check_timestamp,
    lowered,
    parse_int_timestamp,
)
from gateway.providers.encoding import (
    ALGORITHMS,
    Algorithm,
    decode_base64,
    decode_hex,
    hmac_digest,
    require_hmac_match,
)

ENCODINGS = ("hex", "base64")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _text_option(options: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = options.get(key, default)
    if value is not None and not isinstance(value, str):
        raise OptionError(key, "must be a string")
    return value


def _choice(options: Mapping[str, Any], key: str, choices: Sequence[str]) -> str:
    value = options.get(key, choices[0])
    if value not in choices:
        raise OptionError(key, f"must be one of {', '.join(choices)} (got {value!r})")
    return cast(str, value)


class GenericHmac(BaseProvider):
    """HMAC-SHA256/512 of a body template, hex or base64, in a configurable header."""

    name = "hmac"
    option_names = frozenset(
        {"header", "algorithm", "encoding", "prefix", "timestamp_header", "signed_payload"}
    )
    defaults = Extractors(dedupe=Extractor("sha256"))

    header: str
    algorithm: Algorithm
    encoding: str
    prefix: str
    timestamp_header: str | None
    template: tuple[str, str]

    def configure(self, options: Mapping[str, Any]) -> None:
        """Validate the options; the template must sign the body, and the timestamp if any."""
        header = _text_option(options, "header", None)
        if not header or not header.strip():
            raise OptionError("header", "is required: the header that carries the signature")
        self.header = header.strip().lower()
        self.algorithm = cast(Algorithm, _choice(options, "algorithm", ALGORITHMS))
        self.encoding = _choice(options, "encoding", ENCODINGS)
        self.prefix = _text_option(options, "prefix", "") or ""
        timestamp_header = _text_option(options, "timestamp_header", None)
        if timestamp_header is not None and not timestamp_header.strip():
            raise OptionError("timestamp_header", "must name a header")
        self.timestamp_header = timestamp_header.strip().lower() if timestamp_header else None
        # Tolerance (and the window >= 2 x tolerance rule) applies only with a timestamp.
        self.uses_timestamp = self.timestamp_header is not None
        self.reads = frozenset(filter(None, (self.header, self.timestamp_header)))
        default = "{timestamp}.{body}" if self.timestamp_header else "{body}"
        template = _text_option(options, "signed_payload", default) or ""
        self.template = self._split_template(template)

    def _split_template(self, template: str) -> tuple[str, str]:
        key = "signed_payload"
        for placeholder in _PLACEHOLDER.findall(template):
            if placeholder not in ("{body}", "{timestamp}"):
                raise OptionError(
                    key, f"unknown placeholder {placeholder} (use {{body}}, {{timestamp}})"
                )
        if template.count("{body}") != 1:
            raise OptionError(key, "must contain {body} exactly once")
        if self.timestamp_header and "{timestamp}" not in template:
            # An unsigned timestamp could be refreshed by anyone replaying the request.
            raise OptionError(key, "must contain {timestamp} when timestamp_header is set")
        if not self.timestamp_header and "{timestamp}" in template:
            raise OptionError(key, "uses {timestamp} but no timestamp_header is set")
        before, _, after = template.partition("{body}")
        leftover = _PLACEHOLDER.sub("", before + after)
        if "{" in leftover or "}" in leftover:
            raise OptionError(key, "has an unbalanced { or }")
        return before, after

    def _message(self, body: bytes, timestamp: str) -> bytes:
        before, after = self.template
        before = before.replace("{timestamp}", timestamp)
        after = after.replace("{timestamp}", timestamp)
        return (
            before.encode("utf-8", "surrogateescape")
            + body
            + after.encode("utf-8", "surrogateescape")
        )

    def _encode(self, digest: bytes) -> str:
        return digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode()

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[Secret], now: float
    ) -> None:
        """Check the timestamp (if configured), then the signature against each secret."""
        h = lowered(headers)
        timestamp = ""
        if self.timestamp_header:
            text = h.get(self.timestamp_header)
            check_timestamp(parse_int_timestamp(text), now, self.tolerance)
            assert text is not None  # parse_int_timestamp refused a missing header
            timestamp = text.strip()
        header = h.get(self.header)
        if header is None:
            raise VerificationError("signature header is missing")
        header = header.strip()
        if not header.startswith(self.prefix):
            raise VerificationError("signature header does not start with the expected prefix")
        value = header[len(self.prefix) :]
        digest = decode_hex(value) if self.encoding == "hex" else decode_base64(value)
        if digest is None:
            raise VerificationError(f"signature is not {self.encoding}")
        message = self._message(body, timestamp)
        require_hmac_match(message, secrets, [digest], self.algorithm)

    def sign(self, body: bytes, secret: Secret, now: float, **kw: Any) -> dict[str, str]:
        """The signature header (and the timestamp header, if configured) for ``body``."""
        headers: dict[str, str] = {}
        timestamp = ""
        if self.timestamp_header:
            timestamp = str(int(now))
            headers[self.timestamp_header] = timestamp
        digest = hmac_digest(secret.encode(), self._message(body, timestamp), self.algorithm)
        headers[self.header] = self.prefix + self._encode(digest)
        return headers


PROVIDERS = (GenericHmac,)
