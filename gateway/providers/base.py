"""The provider interface and the small helpers every scheme shares.

A provider knows one signature scheme and where its events keep their id, type and time. It is
pure: bytes, headers, secrets and a clock in; ``None`` or ``VerificationError`` out. It can sign
as well as verify, so tests and the CLI never hand-roll signatures.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.errors import OptionError, VerificationError
from gateway.extract import Extractor, Extractors
from gateway.payments.rules import PaymentRules
from gateway.providers.encoding import describe_text_secret, digest_matches
from gateway.secret import Secret

__all__ = [
    "BaseProvider",
    "OptionError",
    "Provider",
    "Secret",
    "check_timestamp",
    "digest_matches",
    "lowered",
    "parse_int_timestamp",
]


@runtime_checkable
class Provider(Protocol):
    """What the gateway needs from a signature scheme (design.md 5.1)."""

    name: ClassVar[str]
    defaults: ClassVar[Extractors]

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[Secret], now: float
    ) -> None:
        """Return if the request is authentic and fresh; raise ``VerificationError`` otherwise."""

    def sign(self, body: bytes, secret: Secret, now: float, **kw: Any) -> dict[str, str]:
        """Return the headers this scheme would put on ``body`` when signed at ``now``."""


class BaseProvider:
    """Convenience base: holds tolerance and options, declares defaults and needs.

    Subclasses set ``name`` and ``defaults``, override ``verify``/``sign``, and read their
    options in ``configure`` (raising ``OptionError`` for a bad one).
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[Extractors] = Extractors()
    #: False for schemes that authenticate nothing (``none``); the loader then demands
    #: ``allow_unsigned: true`` and a non-empty ``allow_ips``.
    authenticates: ClassVar[bool] = True
    #: Whether the scheme signs a timestamp, so ``tolerance`` means something for it. A class
    #: default; a provider whose options decide it (``hmac``) sets it per instance.
    uses_timestamp: bool = False
    #: The (lower-case) headers ``verify`` reads. The ingress refuses a request in which one of
    #: them occurs more than once or is not UTF-8 text (401), so verification and everything
    #: after it read one and the same value. A provider whose options name headers sets it
    #: per instance in ``configure``.
    reads: frozenset[str] = frozenset()
    #: Option names this provider accepts under the source's ``options:``.
    option_names: ClassVar[frozenset[str]] = frozenset()
    #: The status a queued event is acknowledged with (design.md 3 ``ack_status``): what this
    #: scheme's senders count as success. A source may set its own (200 or 202).
    ack_status: ClassVar[int] = 202
    #: What this scheme's events say of payments by default (design.md 5.7): a source of it
    #: has payments unless it says ``payment: false``. ``None``: only with a ``payment:`` block.
    payments: ClassVar[PaymentRules | None] = None

    def __init__(self, *, tolerance: float = 300.0, options: Mapping[str, Any] | None = None):
        self.tolerance = tolerance
        options = dict(options or {})
        unknown = sorted(set(options) - self.option_names)
        if unknown:
            allowed = ", ".join(sorted(self.option_names)) or "none"
            raise OptionError(unknown[0], f"unknown option (this provider accepts: {allowed})")
        self.configure(options)

    def configure(self, options: Mapping[str, Any]) -> None:
        """Read provider-specific options; the default accepts none."""

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[Secret], now: float
    ) -> None:
        """Verify ``body`` and ``headers`` against any of ``secrets`` at time ``now``."""
        raise NotImplementedError

    def sign(self, body: bytes, secret: Secret, now: float, **kw: Any) -> dict[str, str]:
        """Sign ``body`` with ``secret`` at time ``now``; return the headers to send."""
        raise NotImplementedError

    def sample_body(self, payment: Mapping[str, object], event_id: str) -> bytes:
        """A test event carrying ``payment`` as this scheme's senders send it (``send``, ``sign``).

        The default sends the payment as it is, with ``event_id`` at ``/id`` when this
        provider reads the id from there; a scheme with an envelope of its own overrides it.
        """
        event = dict(payment)
        if self.defaults.id == Extractor("body", "/id"):
            event = {"id": event_id, **event}
        return json.dumps(event, separators=(",", ":")).encode()

    def describe_secret(self, secret: Secret) -> str | None:
        """Return a problem with a configured secret (wrong format), or ``None`` if usable.

        The default suits schemes keyed with the secret's text (HMAC keys, tokens).
        """
        return describe_text_secret(secret.value)


def lowered(headers: Mapping[str, str]) -> Mapping[str, str]:
    """Headers read by lower-case name, so plain dicts and multidicts read the same. A request's
    own headers (a case-insensitive multidict) already do and are returned as they are: stage
    5 has checked that each header a verifier reads occurs once."""
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        return headers
    return {k.lower(): v for k, v in headers.items()}


def check_timestamp(timestamp: float, now: float, tolerance: float) -> None:
    """Refuse a signed timestamp older or further in the future than ``tolerance`` seconds."""
    if timestamp < now - tolerance:
        raise VerificationError("timestamp is too old")
    if timestamp > now + tolerance:
        raise VerificationError("timestamp is too far in the future")


def parse_int_timestamp(text: str | None) -> int:
    """A header's decimal integer timestamp, or ``VerificationError`` if absent or malformed."""
    if text is None:
        raise VerificationError("timestamp header is missing")
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 16:
        raise VerificationError("timestamp is not an integer")
    return int(text)
