"""Dashboard sessions: a signed cookie whose key is derived from ``admin.token``.

Pure: no I/O, no framework. The cookie value is ``<expiry>.<nonce>.<mac>``, the MAC an
HMAC-SHA256 over ``<expiry>.<nonce>`` under a key derived from the admin token (HMAC with a
fixed label), so every process and replica that shares the token accepts the cookie, and
rotating the token ends every session at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence

from gateway.ingress.clientip import IPNetwork, in_networks, parse_address

COOKIE = "wg_session"
#: How long a session lasts (seconds): 12 h.
SESSION_SECONDS = 12 * 3600
_LABEL = b"webhook-gateway dashboard session v1"


def session_key(admin_token: str) -> bytes:
    """The signing key of sessions, derived from the admin token."""
    return hmac.new(admin_token.encode(), _LABEL, hashlib.sha256).digest()


def _mac(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(admin_token: str, now: float) -> str:
    """A new session cookie value, valid for ``SESSION_SECONDS`` from ``now``."""
    text = f"{int(now) + SESSION_SECONDS}.{secrets.token_urlsafe(12)}"
    return f"{text}.{_mac(session_key(admin_token), text)}"


def valid(value: str, admin_token: str, now: float) -> bool:
    """Whether a cookie value was issued under this token and has not expired."""
    text, _, mac = value.rpartition(".")
    expiry, _, _ = text.partition(".")
    # Every value issued is short ASCII: anything else (undecodable bytes too) is not one.
    if not value.isascii() or not expiry.isdigit() or len(value) > 200:
        return False
    expected = _mac(session_key(admin_token), text)
    return hmac.compare_digest(mac.encode(), expected.encode()) and now < int(expiry)


def public_origin(
    scheme: str,
    host: str,
    peer: str | None,
    headers: Mapping[str, str],
    trusted_proxies: Sequence[IPNetwork],
) -> str:
    """The origin (``scheme://host``) the browser used: the request's own, or, when the peer
    is a trusted proxy, the one it reports in ``X-Forwarded-Proto`` and ``X-Forwarded-Host``
    (the first hop's, as the proxy nearest the browser wrote it)."""
    address = parse_address(peer)
    if address is not None and trusted_proxies and in_networks(address, trusted_proxies):
        forwarded_proto = headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        forwarded_host = headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        if forwarded_proto in ("http", "https"):
            scheme = forwarded_proto
        if forwarded_host:
            host = forwarded_host
    return f"{scheme}://{host}"
