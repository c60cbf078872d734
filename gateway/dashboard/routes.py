"""The dashboard's routes on the admin listener: the page, its files, sign-in and sign-out.

Every view URL (``/dashboard``, ``/dashboard/payments/<source>/<key>``, ``/dashboard/events``,
``/dashboard/events/<id>``, ``/dashboard/dead-letters``, ``/dashboard/reconciliation``,
``/dashboard/analytics``) answers the same page, which draws the view its path names, so each is
a deep link that works on reload; without a session it answers the sign-in form instead. A
payment key may hold slashes (a Rafiki payment id is a URL), escaped or not; a first-version
link to ``/dashboard/payments/<subject>`` opens the payments found by that text. The files are
read from the package (``static/``), so an installed wheel serves them from any working
directory, with no network.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

from gateway.admin import auth
from gateway.appkeys import CONFIG, GATEWAY, RUNTIME
from gateway.http.clientip import client_ip
from gateway.ratelimit.gcra import RateRule
from gateway.ratelimit.memory import MemoryLimiter

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Headers on every dashboard answer: no inline script or style, no framing, no sniffing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: The files under ``static/`` the page may load, and their types.
FILES = {
    "app.js": "text/javascript",
    "views.js": "text/javascript",
    "api.js": "text/javascript",
    "dom.js": "text/javascript",
    "reconcile.js": "text/javascript",
    "analytics.js": "text/javascript",
    "chart.js": "text/javascript",
    "style.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
#: Sign-in attempts per client IP: a burst of 10, then one every 6 seconds.
LOGIN_RULE = RateRule.parse("10/m", 10)
LIMITER = web.AppKey("dashboard_login_limiter", MemoryLimiter)
_ERROR_SLOT = "<!--error-->"


def _file(name: str) -> bytes:
    return resources.files("gateway.dashboard").joinpath("static", name).read_bytes()


def _html(name: str, status: int = 200, error: str | None = None) -> web.Response:
    text = _file(name).decode()
    if error is not None:  # fixed text of ours, never anything a client sent
        text = text.replace(_ERROR_SLOT, f'<p class="error" role="alert">{error}</p>')
    return web.Response(status=status, text=text, content_type="text/html", charset="utf-8")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Put ``SECURITY_HEADERS`` on every answer under ``/dashboard``."""
    if not request.path.startswith("/dashboard"):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


def _token(request: web.Request) -> str | None:
    token = request.app[GATEWAY][RUNTIME].config.admin.token
    return None if token is None else token.value


def signed_in(request: web.Request) -> bool:
    """Whether the request carries a valid session cookie."""
    token = _token(request)
    cookie = request.cookies.get(auth.COOKIE)
    return token is not None and cookie is not None and auth.valid(cookie, token, time.time())


async def page(request: web.Request) -> web.Response:
    """Any view: the page when signed in, the sign-in form otherwise."""
    if _token(request) is None:
        return _html("login.html", 404, "The dashboard is off: set admin.token.")
    return _html("index.html" if signed_in(request) else "login.html")


async def static(request: web.Request) -> web.Response:
    """One of the page's files."""
    name = request.match_info["name"]
    if name not in FILES:
        raise web.HTTPNotFound()
    return web.Response(body=_file(name), content_type=FILES[name])


async def login(request: web.Request) -> web.Response:
    """``POST /dashboard/login`` with ``token``: a session cookie and 303 to the dashboard."""
    token = _token(request)
    if token is None:
        return _html("login.html", 404, "The dashboard is off: set admin.token.")
    config = request.app[GATEWAY][CONFIG]
    ip = client_ip(
        request.remote, request.headers.getall("X-Forwarded-For", []), config.server.trusted_proxies
    )
    decision = await request.app[LIMITER].hit(f"login:{ip}", LOGIN_RULE, time.monotonic())
    if not decision.allowed:
        response = _html("login.html", 429, "Too many attempts; wait a minute and try again.")
        response.headers["Retry-After"] = str(max(1, round(decision.retry_after)))
        return response
    form = await request.post()
    given = form.get("token")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
        return _html("login.html", 401, "That is not the admin token.")
    origin = auth.public_origin(
        request.scheme,
        request.host,
        request.remote,
        request.headers,
        config.server.trusted_proxies,
    )
    response = web.HTTPSeeOther("/dashboard")
    response.set_cookie(
        auth.COOKIE,
        auth.issue(token, time.time()),
        max_age=auth.SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=origin.startswith("https://"),
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    """``POST /dashboard/logout``: drop the cookie and go back to the sign-in form."""
    response = web.HTTPSeeOther("/dashboard")
    response.del_cookie(auth.COOKIE, path="/")
    raise response


def add_routes(app: web.Application) -> None:
    """Register the dashboard on the admin application."""
    app[LIMITER] = MemoryLimiter(max_keys=10_000)
    app.middlewares.append(security_headers)
    for path in (
        "/dashboard",
        "/dashboard/",
        "/dashboard/events",
        "/dashboard/events/{event_id}",
        "/dashboard/payments/{payment:.+}",
        "/dashboard/dead-letters",
        "/dashboard/reconciliation",
        "/dashboard/analytics",
    ):
        app.router.add_get(path, page)
    app.router.add_get("/dashboard/static/{name}", static)
    app.router.add_post("/dashboard/login", login)
    app.router.add_post("/dashboard/logout", logout)
