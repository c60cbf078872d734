"""The ``none`` provider: accepts every request, authenticating nothing.

For senders that cannot sign (the payments service before it signed). The config loader
refuses it unless the source also sets ``allow_unsigned: true`` and a non-empty ``allow_ips``
(design.md 5.1), which is what ``authenticates = False`` tells it. With nothing signed, the
default dedupe key is the SHA-256 of the body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.extract import Extractor, Extractors
from gateway.providers.base import BaseProvider, Secret


class Unsigned(BaseProvider):
    """No verification at all; only an IP allow-list protects such a source."""

    name = "none"
    authenticates = False
    defaults = Extractors(dedupe=Extractor("sha256"))

    def describe_secret(self, secret: Secret) -> str | None:
        """Secrets are ignored, so any value is acceptable."""
        return None

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[Secret], now: float
    ) -> None:
        """Accept everything."""

    def sign(self, body: bytes, secret: Secret, now: float, **kw: Any) -> dict[str, str]:
        """Nothing to add."""
        return {}


PROVIDERS = (Unsigned,)
