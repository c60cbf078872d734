"""The admin API and its CLI: events with attempts, replay, dead letters, redrive (design.md 5.5)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from gateway.app import create_admin_app, create_app
from tests.support import (
    ADMIN_TOKEN,
    AUTH,
    ENV,
    build_config,
    config_dict,
    payment_body,
    sign_payment,
    sqlite_url,
    wait_status,
)


@pytest.fixture
def with_admin(make_gateway, aiohttp_client):
    async def factory(**overrides):
        client, _ = await make_gateway(**overrides)
        admin = await aiohttp_client(create_admin_app(client.server.app))
        return client, admin

    return factory


async def _accept(client, msg_id: str) -> bytes:
    body = payment_body()
    response = await client.post(
        "/hooks/payments", data=body, headers=sign_payment(body, msg_id=msg_id)
    )
    assert response.status == 202
    return body


async def test_the_token_is_required(with_admin):
    _, admin = await with_admin()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}):
        response = await admin.get("/admin/events", headers=headers)
        assert response.status == 401
        payload = await response.json()
        assert payload["error"] == "unauthorized"
        assert payload["request_id"] == response.headers["X-Request-ID"]
    # Health and metrics stay open to probes and Prometheus.
    assert (await admin.get("/healthz")).status == 200


async def test_without_a_token_the_admin_api_is_off(make_gateway, aiohttp_client, tmp_path):
    data = config_dict("http://127.0.0.1:9/x", store_url=sqlite_url(tmp_path))
    del data["admin"]
    app = create_app(build_config(data), workers=False)
    await aiohttp_client(app)
    admin = await aiohttp_client(create_admin_app(app))
    response = await admin.get("/admin/events", headers=AUTH)
    assert response.status == 404
    assert (await response.json())["error"] == "admin_disabled"


async def test_event_with_its_attempts(with_admin, marketplace):
    client, admin = await with_admin()
    body = await _accept(client, "msg_admin_1")
    data = await wait_status(admin, "msg_admin_1", "delivered")
    assert data["source"] == "payments"
    assert data["type"] == "payment.completed"
    assert data["body"] == body.decode()
    [delivery] = data["deliveries"]
    assert delivery["destination"] == "marketplace"
    assert delivery["state"] == "delivered"
    [attempt] = delivery["attempts"]
    assert attempt["status"] == 200
    assert attempt["latency_ms"] >= 0
    assert attempt["response_excerpt"] == '{"ok":true}'
    listing = await (await admin.get("/admin/events?source=payments", headers=AUTH)).json()
    assert [e["id"] for e in listing["events"]] == ["msg_admin_1"]
    missing = await admin.get("/admin/events/nope", headers=AUTH)
    assert missing.status == 404


async def test_replay_delivers_again_despite_dedupe(with_admin, marketplace):
    market, _ = marketplace
    client, admin = await with_admin()
    await _accept(client, "msg_replay")
    await market.wait_for(1)
    response = await admin.post("/admin/events/msg_replay/replay", headers=AUTH)
    assert response.status == 202
    assert len((await response.json())["deliveries"]) == 1
    await market.wait_for(2)
    assert [r.headers["webhook-id"] for r in market.received] == ["msg_replay", "msg_replay"]
    assert all(r.verified for r in market.received)


async def test_dead_letters_and_redrive(with_admin, marketplace):
    market, _ = marketplace
    market.status, market.answer = 400, b'{"error":"bad input"}'
    client, admin = await with_admin()
    await _accept(client, "msg_dead")
    await wait_status(admin, "msg_dead", "dead_lettered")
    page = await (await admin.get("/admin/dead-letters", headers=AUTH)).json()
    [dead] = page["dead_letters"]
    assert dead["event_id"] == "msg_dead"
    assert dead["last_attempt"]["status"] == 400
    assert dead["last_attempt"]["response_excerpt"] == '{"error":"bad input"}'
    market.status, market.answer = 200, b"{}"
    response = await admin.post(
        "/admin/dead-letters/redrive", headers=AUTH, json={"ids": [dead["delivery_id"]]}
    )
    assert (await response.json()) == {"redriven": 1, "unmatched": []}
    await wait_status(admin, "msg_dead", "delivered")


async def test_redrive_takes_event_ids_and_names_what_matched_nothing(with_admin, marketplace):
    market, _ = marketplace
    market.status = 400
    client, admin = await with_admin()
    await _accept(client, "msg_dead_a")
    await wait_status(admin, "msg_dead_a", "dead_lettered")
    market.status = 200
    response = await admin.post(
        "/admin/dead-letters/redrive", headers=AUTH, json={"ids": ["msg_dead_a", "nope"]}
    )
    assert (await response.json()) == {"redriven": 1, "unmatched": ["nope"]}
    await wait_status(admin, "msg_dead_a", "delivered")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/admin/events?limit=0", None),
        ("GET", "/admin/events?status=lost", None),
        ("GET", "/admin/events?cursor=garbage", None),
        ("POST", "/admin/dead-letters/redrive", {"ids": []}),
        ("POST", "/admin/events/x/replay", {"destinations": ["nowhere"]}),
    ],
)
async def test_bad_requests_are_400(with_admin, method, path, body):
    _, admin = await with_admin()
    response = await admin.request(method, path, headers=AUTH, json=body)
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_request"


async def test_openapi_document(with_admin):
    _, admin = await with_admin()
    document = await (await admin.get("/admin/openapi.json", headers=AUTH)).json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/admin/events",
        "/admin/events/{event_id}",
        "/admin/events/{event_id}/replay",
        "/admin/dead-letters",
        "/admin/dead-letters/redrive",
        "/admin/destinations/{name}/retry-now",
        "/admin/payments",
        "/admin/payments/{source}/{key}",
        "/admin/stats",
        "/admin/stream",
        "/admin/reconciliation",
        "/admin/reconciliation/runs/{run_id}",
        "/admin/reconciliation/{source}/run",
        "/admin/analytics",
        "/admin/analytics.csv",
    }


async def _cli(admin_url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        "--admin",
        admin_url,
        env={**os.environ, **ENV},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_talks_to_the_admin_api(with_admin, marketplace):
    market, _ = marketplace
    market.status = 400
    client, admin = await with_admin()
    url = str(admin.make_url("")).rstrip("/")
    await _accept(client, "msg_cli")
    await wait_status(admin, "msg_cli", "dead_lettered")

    code, out, _ = await _cli(url, "events", "--status", "dead_lettered")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == [
        "ID", "SOURCE", "TYPE", "SUBJECT", "STATUS", "ATTEMPTS", "RECEIVED_AT",
    ]  # fmt: skip
    assert row.split()[:6] == [
        "msg_cli", "payments", "payment.completed", "offer-42", "dead_lettered", "1",
    ]  # fmt: skip
    for query in (["--type", "payment.completed"], ["--q", "offer-4"], ["--q", "msg_c"]):
        code, out, _ = await _cli(url, "events", *query)
        assert (code, "msg_cli" in out) == (0, True), query
    code, out, _ = await _cli(url, "events", "--type", "refund.created")
    assert (code, "msg_cli" in out) == (0, False)
    code, out, _ = await _cli(url, "events", "show", "msg_cli")
    assert code == 0
    assert "id:          msg_cli" in out
    assert "dead: HTTP 400 is not retried" in out
    assert '  "pendingId": "' in out  # the body, as text
    code, out, _ = await _cli(url, "events", "show", "msg_cli", "--json")
    assert code == 0
    assert json.loads(out)["deliveries"][0]["state"] == "dead"
    code, out, _ = await _cli(url, "dead-letters")
    assert code == 0
    assert "msg_cli" in out
    code, out, _ = await _cli(url, "dead-letters", "--json")
    assert code == 0
    assert [d["event_id"] for d in json.loads(out)["dead_letters"]] == ["msg_cli"]
    market.status = 200
    code, out, err = await _cli(url, "redrive", "msg_cli", "no-such-event")
    assert (code, out.strip()) == (1, "redriven: 1 delivery due again now")
    assert "no dead letter for 'no-such-event'" in err
    await wait_status(admin, "msg_cli", "delivered")
    code, out, err = await _cli(url, "redrive", "msg_cli")  # delivered now: nothing is dead
    assert (code, out.strip()) == (1, "redriven: 0 deliveries due again now")
    assert "no dead letter for 'msg_cli'" in err
    code, out, _ = await _cli(url, "redrive", "--all")
    assert (code, out.strip()) == (0, "redriven: 0 deliveries due again now")
    code, out, _ = await _cli(url, "retry-now", "marketplace")
    assert (code, out.strip()) == (0, "marketplace: 0 deliveries waiting out a backoff now due")
    code, _, err = await _cli(url, "retry-now", "nowhere")
    assert code == 1
    assert "no destination named 'nowhere'" in err
    code, out, _ = await _cli(url, "replay", "msg_cli")
    assert code == 0
    assert out.startswith("replayed msg_cli: 1 delivery, new and due now\n")
    code, _, err = await _cli(url, "events", "show", "no-such-event")
    assert code == 1
    assert "404" in err
    code, _, _ = await _cli(url, "redrive")
    assert code == 2


async def test_cli_names_the_token_on_401(with_admin):
    _, admin = await with_admin()
    url = str(admin.make_url("")).rstrip("/")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "events", "--admin", url,
        env={**os.environ, **ENV, "GATEWAY_ADMIN_TOKEN": "not-the-admin-token"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert "401" in err.decode()
    assert "GATEWAY_ADMIN_TOKEN" in err.decode()


async def test_cli_lists_as_json_and_pages_with_the_cursor(with_admin):
    client, admin = await with_admin()
    url = str(admin.make_url("")).rstrip("/")
    for n in range(3):
        await _accept(client, f"msg_page_{n}")
    code, out, err = await _cli(url, "events", "--json", "--limit", "2")
    assert code == 0, err
    first = json.loads(out)  # one JSON document, nothing else on stdout
    assert [e["id"] for e in first["events"]] == ["msg_page_2", "msg_page_1"]
    code, out, err = await _cli(url, "events", "--limit", "2", "--cursor", first["next_cursor"])
    assert code == 0, err
    assert "msg_page_0" in out and "msg_page_1" not in out
    for usage in (["events", "--limit", "0"], ["events", "--status", "lost"], ["events", "x"]):
        code, _, err = await _cli(url, *usage)
        assert code == 2, (usage, err)


async def test_cli_lists_and_shows_payments(with_admin, marketplace):
    market, _ = marketplace
    client, admin = await with_admin()
    url = str(admin.make_url("")).rstrip("/")
    for msg_id, pending in (("msg_p1", "pend-1"), ("msg_p2", "pend-2")):
        body = payment_body(pendingId=pending, offerId="offer-7")
        response = await client.post(
            "/hooks/payments", data=body, headers=sign_payment(body, msg_id=msg_id)
        )
        assert response.status == 202
    await market.wait_for(2)
    await wait_status(admin, "msg_p2", "delivered")
    code, out, err = await _cli(url, "payments")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split()[:5] == ["SOURCE", "KEY", "REFERENCE", "STATE", "AMOUNT"]
    assert [row.split()[:4] for row in rows] == [
        ["payments", "pend-2", "offer-7", "completed"],
        ["payments", "pend-1", "offer-7", "completed"],
    ]
    code, out, _ = await _cli(url, "payments", "--q", "pend-1", "--json")
    assert [p["key"] for p in json.loads(out)["payments"]] == ["pend-1"]
    code, out, _ = await _cli(url, "payments", "show", "payments", "pend-2")
    assert code == 0
    assert "key:         pend-2" in out and "confirmed:   True" in out
    assert "msg_p2" in out and "webhook" in out
    code, _, err = await _cli(url, "payments", "show", "payments", "nobody")
    assert (code, "404" in err) == (1, True)
    code, _, _ = await _cli(url, "payments", "show", "payments")
    assert code == 2
    code, _, _ = await _cli(url, "payments", "--state", "lost")
    assert code == 2
