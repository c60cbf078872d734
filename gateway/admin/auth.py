"""Who may use the admin API: the bearer token, or a dashboard session with its origin check.

``admin_guard`` is the one middleware in front of ``/admin``. Sessions are a signed cookie
whose key is derived from ``admin.token``: the cookie value is ``<expiry>.<nonce>.<mac>``, the
MAC an HMAC-SHA256 over ``<expiry>.<nonce>`` under a key derived from the admin token (HMAC
with a fixed label), so every process and replica that shares the token accepts the cookie,
and rotating the token ends every session at once. The session functions are pure; the
guard is the only part that sees a request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiohttp import web

from gateway.appkeys import CONFIG, GATEWAY, RUNTIME
from gateway.errors import (
    AdminDisabled,
    Forbidden,
    InvalidCursor,
    InvalidRequest,
    RequestError,
    StoreError,
    Unauthorized,
    Unavailable,
)
from gateway.http.answers import error_response, request_id_of
from gateway.http.clientip import IPNetwork, in_networks, parse_address

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

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


@web.middleware
async def admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer-token or session check for ``/admin``, and one place that turns errors into JSON."""
    request_id = request_id_of(request.headers.get("X-Request-ID"))
    if not request.path.startswith("/admin"):
        return await handler(request)
    try:
        token = request.app[GATEWAY][RUNTIME].config.admin.token
        if token is None:
            raise AdminDisabled()
        _authorize(request, token.value)
        response = await handler(request)
    except RequestError as exc:
        return error_response(exc, request_id)
    except InvalidCursor:
        return error_response(InvalidRequest("invalid cursor"), request_id)
    except StoreError:
        return error_response(Unavailable("the store is unreachable"), request_id)
    if not response.prepared:  # a stream already sent its headers
        response.headers["X-Request-ID"] = request_id
    return response


def _authorize(request: web.Request, token: str) -> None:
    """Let a request with the bearer token through, or one with a session cookie (then a
    state-changing one only from the request's own origin); raise otherwise."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Bytes that are not UTF-8 arrive as surrogates: compare them as the bytes they were.
    if scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), token.encode()
    ):
        return
    cookie = request.cookies.get(COOKIE)
    if cookie is None or not valid(cookie, token, time.time()):
        raise Unauthorized()
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("Origin")
        if origin is None or origin != own_origin(request):
            raise Forbidden()


def own_origin(request: web.Request) -> str:
    """The origin (scheme://host) the browser used to reach this request, as seen through
    ``server.trusted_proxies``."""
    trusted = request.app[GATEWAY][CONFIG].server.trusted_proxies
    return public_origin(request.scheme, request.host, request.remote, request.headers, trusted)
