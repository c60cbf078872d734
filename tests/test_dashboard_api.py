"""What the dashboard reads and how it signs in (design.md 5.6): payments, stats, filters, the
session cookie and its origin check, the live stream and its limits."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from gateway.admin import auth as session
from gateway.admin.stream import BUFFER, FEED, Subscriber
from gateway.app import create_admin_app
from gateway.store.records import Change
from tests.support import ADMIN_TOKEN, AUTH, payment_body, sign_payment, wait_admin
from tests.waiting import eventually

STATIC = Path(__file__).resolve().parents[1] / "gateway" / "dashboard" / "static"


@pytest.fixture
def with_admin(make_gateway, aiohttp_client):
    async def factory(max_streams: int = 32, **overrides):
        client, _ = await make_gateway(**overrides)
        admin = await aiohttp_client(create_admin_app(client.server.app, max_streams=max_streams))
        return client, admin

    return factory


async def _accept(client, msg_id: str, **fields) -> None:
    body = payment_body(**fields)
    response = await client.post(
        "/hooks/payments", data=body, headers=sign_payment(body, msg_id=msg_id)
    )
    assert response.status == 202, await response.text()


async def _sign_in(admin) -> str:
    response = await admin.post(
        "/dashboard/login", data={"token": ADMIN_TOKEN}, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/dashboard"
    return response.headers["Set-Cookie"]


def _origin(admin) -> str:
    return str(admin.make_url("/")).rstrip("/")


# -- what the views read -------------------------------------------------------------------------


async def test_payments_timeline_filters_and_stats(with_admin):
    client, admin = await with_admin()
    await _accept(
        client, "msg_a1", offerId="offer-1", pendingId="pend-a", status="pending",
        type="payment.pending",
    )  # fmt: skip
    await _accept(client, "msg_b1", offerId="offer-2", pendingId="pend-b")
    await _accept(client, "msg_a2", offerId="offer-1", pendingId="pend-a", status="paid")
    await wait_admin(
        admin,
        "/admin/events?status=delivered",
        lambda d: len(d["events"]) == 3,
        "three events delivered",
    )

    payments = (await (await admin.get("/admin/payments", headers=AUTH)).json())["payments"]
    assert [(p["key"], p["reference"], p["state"], p["events"]) for p in payments] == [
        ("pend-a", "offer-1", "completed", 2),
        ("pend-b", "offer-2", "completed", 1),
    ]
    assert (payments[0]["delivered"], payments[0]["attention"]) == (True, None)
    assert payments[0]["amount"] is None  # the payments service sends no amount
    timeline = await (await admin.get("/admin/payments/payments/pend-a", headers=AUTH)).json()
    assert timeline["payment"]["key"] == "pend-a"
    assert [(e["id"], e["origin"], e["mark"]) for e in timeline["events"]] == [
        ("msg_a1", "webhook", None),
        ("msg_a2", "webhook", None),
    ]
    assert timeline["events"][0]["deliveries"][0]["attempts"][0]["status"] == 200
    assert (await admin.get("/admin/payments/payments/pend-z", headers=AUTH)).status == 404
    by_reference = await (await admin.get("/admin/payments?q=offer-2", headers=AUTH)).json()
    assert [p["key"] for p in by_reference["payments"]] == ["pend-b"]

    typed = await (await admin.get("/admin/events?type=payment.pending", headers=AUTH)).json()
    assert [e["id"] for e in typed["events"]] == ["msg_a1"]
    found = await (await admin.get("/admin/events?q=offer-2", headers=AUTH)).json()
    assert [(e["id"], e["attempts"]) for e in found["events"]] == [("msg_b1", 1)]
    by_id = await (await admin.get("/admin/events?q=msg_a", headers=AUTH)).json()
    assert [e["id"] for e in by_id["events"]] == ["msg_a2", "msg_a1"]

    stats = await (await admin.get("/admin/stats", headers=AUTH)).json()
    assert stats["store_reachable"] is True
    hour = stats["last_hour"]
    assert (hour["accepted"], hour["delivered"], hour["dead_lettered"]) == (3, 3, 0)
    assert hour["success_ratio"] == 1.0
    assert hour["latency_p50_ms"] > 0 and hour["latency_p99_ms"] >= hour["latency_p50_ms"]
    assert len(stats["per_minute"]["accepted"]) == 60
    assert sum(stats["per_minute"]["accepted"]) == 3
    assert stats["queue_depth"] == {"marketplace": {"due": 0, "leased": 0, "dead": 0}}


@pytest.mark.parametrize(
    "path",
    [
        # Filters are checked like every admin parameter (gateway.admin.api._text): 1 to
        # 512 characters of valid text; control characters pass, as a subject may hold one.
        "/admin/events?type=" + "x" * 513,
        "/admin/events?q=",
        "/admin/payments?limit=0",
        "/admin/payments?limit=ten",
        "/admin/payments?cursor=garbage",
        "/admin/dead-letters?destination=" + "d" * 513,
        "/admin/payments/payments/" + "s" * 513,
        "/admin/payments?state=lost",
        "/admin/payments?attention=sometimes",
    ],
)
async def test_bad_parameters_are_400(with_admin, path):
    _, admin = await with_admin()
    response = await admin.get(path, headers=AUTH)
    assert response.status == 400
    payload = await response.json()
    assert payload["error"] == "invalid_request"
    assert payload["message"]


async def test_openapi_documents_the_dashboard_routes(with_admin):
    _, admin = await with_admin()
    document = await (await admin.get("/admin/openapi.json", headers=AUTH)).json()
    for path in (
        "/admin/payments",
        "/admin/payments/{source}/{key}",
        "/admin/stats",
        "/admin/stream",
    ):
        assert path in document["paths"], path
    names = {p["name"] for p in document["paths"]["/admin/events"]["get"]["parameters"]}
    assert {"type", "q"} <= names


# -- sign-in and the session cookie --------------------------------------------------------------


async def test_without_a_session_every_view_shows_the_sign_in_form(with_admin):
    _, admin = await with_admin()
    payment_paths = (
        "/dashboard/payments/o",  # a first-version link, to a subject
        "/dashboard/payments/payments/pend-1",
        # A key that holds slashes (a Rafiki payment id is a URL), escaped or not.
        "/dashboard/payments/rafiki/https%3A%2F%2Fwallet.example%2Fincoming-payments%2F1",
        "/dashboard/payments/rafiki/https://wallet.example/incoming-payments/1",
    )
    views = ("/dashboard", "/dashboard/events", "/dashboard/events/x", "/dashboard/dead-letters")
    for path in (*views, "/dashboard/reconciliation", "/dashboard/analytics", *payment_paths):
        response = await admin.get(path)
        assert response.status == 200
        page = await response.text()
        assert '<input id="token" name="token" type="password"' in page
        assert response.headers["Content-Security-Policy"] == (
            "default-src 'self'; frame-ancestors 'none'"
        )
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert (await admin.get("/admin/events")).status == 401


async def test_a_wrong_token_is_refused_and_sets_no_cookie(with_admin):
    _, admin = await with_admin()
    response = await admin.post("/dashboard/login", data={"token": "wrong"}, allow_redirects=False)
    assert response.status == 401
    assert "Set-Cookie" not in response.headers
    page = await response.text()
    assert 'role="alert"' in page and 'name="token"' in page
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert not admin.session.cookie_jar.filter_cookies(admin.make_url("/"))


async def test_wrong_tokens_are_rate_limited_per_client(with_admin):
    _, admin = await with_admin()
    statuses = [
        (await admin.post("/dashboard/login", data={"token": f"guess{i}"})).status
        for i in range(12)
    ]
    assert statuses[:10] == [401] * 10
    assert statuses[-1] == 429
    # Even the right token waits: guessing must not go on at full speed.
    refused = await admin.post("/dashboard/login", data={"token": ADMIN_TOKEN})
    assert refused.status == 429


async def test_the_right_token_sets_a_strict_http_only_cookie(with_admin):
    _, admin = await with_admin()
    cookie = await _sign_in(admin)
    assert cookie.startswith(f"{session.COOKIE}=")
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "max-age", "path"} <= flags
    assert "SameSite=Strict" in cookie
    assert "Max-Age=43200" in cookie
    assert "secure" not in flags  # plain HTTP here; set when the request came over TLS
    page = await admin.get("/dashboard/dead-letters")
    assert "/dashboard/static/app.js" in await page.text()
    assert (await admin.get("/admin/events")).status == 200
    logout = await admin.post("/dashboard/logout", allow_redirects=False)
    assert logout.status == 303
    assert (await admin.get("/admin/events")).status == 401


async def test_a_cookie_post_needs_the_dashboards_own_origin(with_admin):
    client, admin = await with_admin()
    await _accept(client, "msg_origin")
    await _sign_in(admin)
    for headers in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"}):
        response = await admin.post("/admin/events/msg_origin/replay", headers=headers)
        assert response.status == 403, headers
        assert (await response.json())["error"] == "forbidden"
        response = await admin.post(
            "/admin/dead-letters/redrive", headers=headers, json={"all": True}
        )
        assert response.status == 403
    same = await admin.post("/admin/events/msg_origin/replay", headers={"Origin": _origin(admin)})
    assert same.status == 202
    # The bearer token is not a browser's ambient credential: no Origin needed.
    admin.session.cookie_jar.clear()
    assert (await admin.post("/admin/events/msg_origin/replay", headers=AUTH)).status == 202


def test_rotating_the_admin_token_ends_every_session():
    value = session.issue("old-token", 1000.0)
    assert session.valid(value, "old-token", 1001.0)
    assert not session.valid(value, "new-token", 1001.0)
    assert not session.valid(value, "old-token", 1000.0 + session.SESSION_SECONDS)
    forged = value.rsplit(".", 1)[0] + ".AAAA"
    assert not session.valid(forged, "old-token", 1001.0)
    assert not session.valid("garbage", "old-token", 1001.0)


def test_the_page_never_inserts_markup():
    pattern = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(")
    for path in STATIC.iterdir():
        if path.suffix in {".js", ".html"}:
            assert not pattern.search(path.read_text()), path.name
        if path.suffix == ".html":
            assert "<script>" not in path.read_text()  # no inline script (CSP)
            assert "style=" not in path.read_text()


# -- the live stream -----------------------------------------------------------------------------


async def _messages(response, count: int) -> list[tuple[str, str, dict]]:
    """Read ``count`` SSE messages (id, event, data), bounded."""
    out: list[tuple[str, str, dict]] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(15):
        while len(out) < count:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line == "":
                if "data" in fields:
                    out.append((fields["id"], fields["event"], json.loads(fields["data"])))
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
    return out


async def test_the_stream_sends_accepts_and_outcomes_and_resumes(with_admin):
    client, admin = await with_admin()
    stream = await admin.get("/admin/stream", headers=AUTH)
    assert stream.status == 200
    assert stream.headers["Content-Type"] == "text/event-stream"
    # The stream starts after the log's latest entry as of its answer: what follows is sent.
    await _accept(client, "msg_live", offerId="offer-7", status="paid")
    [(first_id, kind, data), (_, kind2, data2)] = await _messages(stream, 2)
    assert (kind, data["event_id"], data["subject"], data["status"]) == (
        "accepted",
        "msg_live",
        "offer-7",
        "paid",
    )
    assert data["source"] == "payments" and data["type"] == "payment.completed"
    assert (kind2, data2["result"], data2["destination"], data2["attempt"]) == (
        "delivery",
        "delivered",
        "marketplace",
        1,
    )
    stream.close()
    resumed = await admin.get("/admin/stream", headers={**AUTH, "Last-Event-ID": first_id})
    [(_, kind, data)] = await _messages(resumed, 1)
    assert (kind, data["event_id"], data["result"]) == ("delivery", "msg_live", "delivered")
    resumed.close()
    # With no stream open the feed stops reading; the next stream still gets what follows.
    feed = admin.server.app[FEED]
    await eventually(
        lambda: not (feed.open_streams or feed.started.is_set()), "the feed to stop reading"
    )
    again = await admin.get("/admin/stream", headers=AUTH)
    await _accept(client, "msg_after_idle")
    [(_, kind, data)] = await _messages(again, 1)
    assert (kind, data["event_id"]) == ("accepted", "msg_after_idle")
    again.close()


async def test_streams_are_capped_and_need_auth(with_admin):
    _, admin = await with_admin(max_streams=1)
    assert (await admin.get("/admin/stream")).status == 401
    first = await admin.get("/admin/stream", headers=AUTH)
    assert first.status == 200
    second = await admin.get("/admin/stream", headers=AUTH)
    assert second.status == 503
    assert (await second.json())["error"] == "unavailable"
    first.close()

    async def a_slot() -> bool:  # it frees once the server sees the client gone
        again = await admin.get("/admin/stream", headers=AUTH)
        again.close()
        return again.status == 200

    await eventually(a_slot, "the closed stream's slot to free", interval=0.1)


async def test_a_slow_stream_is_dropped_not_buffered():
    subscriber = Subscriber()
    for n in range(BUFFER + 50):
        subscriber.offer(Change(str(n), "accepted", {}))
    assert subscriber.dropped
    assert subscriber.queue.qsize() <= BUFFER


async def test_behind_a_trusted_proxy_the_forwarded_origin_counts(with_admin):
    client, admin = await with_admin(server={"trusted_proxies": ["127.0.0.1/32"]})
    await _accept(client, "msg_proxied")
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "ops.example"}
    response = await admin.post(
        "/dashboard/login",
        data={"token": ADMIN_TOKEN},
        headers=forwarded,
        allow_redirects=False,
    )
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie  # the browser came over TLS to the proxy
    value = cookie.split(";")[0].split("=", 1)[1]
    headers = {"Cookie": f"{session.COOKIE}={value}", **forwarded}
    own = await admin.post(
        "/admin/events/msg_proxied/replay", headers={**headers, "Origin": "https://ops.example"}
    )
    assert own.status == 202
    direct = await admin.post(
        "/admin/events/msg_proxied/replay", headers={**headers, "Origin": _origin(admin)}
    )
    assert direct.status == 403


def test_forwarded_origin_is_believed_from_trusted_proxies_only():
    import ipaddress

    trusted = [ipaddress.ip_network("10.0.0.0/8")]
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "ops.example"}
    assert (
        session.public_origin("http", "gw:9090", "10.1.2.3", forwarded, trusted)
        == "https://ops.example"
    )
    assert (
        session.public_origin("http", "gw:9090", "192.0.2.7", forwarded, trusted)
        == "http://gw:9090"
    )
