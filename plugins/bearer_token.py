"""Static bearer tokens: the request carries one of the source's secrets in a header.

Options: ``header`` (default ``Authorization``) and ``scheme`` (default ``Bearer``; an empty
scheme means the header value is the token itself). The scheme name is matched without regard
to case (RFC 9110 section 11.1). A token proves only that the sender knows it: nothing is
signed, so there is no timestamp and the default dedupe key is the SHA-256 of the body.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.errors import VerificationError
from gateway.extract import Extractor, Extractors
from gateway.providers.base import BaseProvider, OptionError, Secret, lowered
from gateway.providers.encoding import describe_text_secret


def _fingerprint(token: bytes) -> bytes:
    # Comparing fixed-length digests keeps the comparison from revealing the token's length.
    return hashlib.sha256(token).digest()


class Bearer(BaseProvider):
    """A static token in a header (``Authorization: Bearer <token>`` by default)."""

    name = "bearer"
    option_names = frozenset({"header", "scheme"})
    defaults = Extractors(dedupe=Extractor("sha256"))

    header: str
    header_name: str
    scheme: str

    def configure(self, options: Mapping[str, Any]) -> None:
        """Read ``header`` and ``scheme``."""
        header = options.get("header", "Authorization")
        if not isinstance(header, str) or not header.strip():
            raise OptionError("header", "must name a header")
        scheme = options.get("scheme", "Bearer")
        if not isinstance(scheme, str) or (scheme and not scheme.strip()):
            raise OptionError("scheme", "must be a word such as Bearer, or empty for none")
        if any(c.isspace() for c in scheme.strip()):
            raise OptionError("scheme", "must be a single word")
        self.header_name = header.strip()
        self.header = self.header_name.lower()
        self.reads = frozenset({self.header})
        self.scheme = scheme.strip()

    def describe_secret(self, secret: Secret) -> str | None:
        """A non-empty token without whitespace (it could not be sent after the scheme)."""
        problem = describe_text_secret(secret.value)
        if problem is None and any(c.isspace() for c in secret.value):
            return "token contains whitespace"
        return problem

    def _token(self, headers: Mapping[str, str]) -> str:
        value = lowered(headers).get(self.header)
        if value is None:
            raise VerificationError("authorization header is missing")
        value = value.strip()
        if self.scheme:
            scheme, _, value = value.partition(" ")
            if scheme.lower() != self.scheme.lower():
                raise VerificationError(f"expected the {self.scheme} scheme")
            value = value.strip()
        if not value:
            raise VerificationError("token is empty")
        return value

    def verify(
        self, body: bytes, headers: Mapping[str, str], secrets: Sequence[Secret], now: float
    ) -> None:
        """Accept if the token equals any secret; every secret is compared (constant time)."""
        presented = _fingerprint(self._token(headers).encode("utf-8", "surrogateescape"))
        found = False
        for secret in secrets:
            found |= hmac.compare_digest(presented, _fingerprint(secret.encode()))
        if not found:
            raise VerificationError()

    def sign(self, body: bytes, secret: Secret, now: float, **kw: Any) -> dict[str, str]:
        """The header that presents ``secret`` as the token."""
        value = f"{self.scheme} {secret.value}" if self.scheme else secret.value
        return {self.header_name: value}


PROVIDERS = (Bearer,)
