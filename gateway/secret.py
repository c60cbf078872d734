"""A configured secret: an HMAC key, a public key, a token. Its repr never shows the value."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Secret:
    """A configured secret (or public key, or token); its repr never shows the value."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    def encode(self) -> bytes:
        """The secret's UTF-8 bytes, as most HMAC schemes key with them."""
        return self.value.encode()
