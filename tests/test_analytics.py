"""Analytics through the admin API and the CLI (design.md 5.9): signed webhooks in, the report
out, as JSON and CSV, read from the store's rollups."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
import time
from typing import Any

from gateway.analytics.report import CSV_COLUMNS
from gateway.app import create_admin_app
from tests.support import ADMIN_TOKEN, AUTH, payment_body, payments_source, sign_payment

PAYMENT = {
    "key": "/pendingId",
    "reference": "/offerId",
    "amount": {"value": "/amount/value", "currency": "/amount/currency"},
    "states": {"payment.completed": "completed", "payment.failed": "failed"},
}


def _iso(t: float) -> str:
    from gateway.times import rfc3339

    return rfc3339(t)


async def _gateway(make_gateway: Any, aiohttp_client: Any) -> tuple[Any, Any]:
    client, _ = await make_gateway(
        sources={
            "payments": payments_source(payment=PAYMENT),
            "other": payments_source(path="/hooks/other", payment=PAYMENT),
        }
    )
    admin = await aiohttp_client(create_admin_app(client.server.app))
    return client, admin


async def _send(client: Any, path: str = "/hooks/payments", **fields: Any) -> None:
    body = payment_body(**fields)
    response = await client.post(path, data=body, headers=sign_payment(body))
    assert response.status == 202, await response.text()


async def _payments(client: Any, market: Any) -> None:
    await _send(client, pendingId="p1", amount={"value": "19.99", "currency": "EUR"})
    await _send(client, pendingId="p2", amount={"value": 5.01, "currency": "EUR"})
    await _send(client, pendingId="p3", type="payment.failed", status="failed")
    await _send(client, pendingId="p4", amount={"value": "12.5", "currency": "USD"})
    await _send(client, "/hooks/other", pendingId="o1", amount={"value": "1", "currency": "EUR"})
    await market.wait_for(5)


async def test_the_report_counts_payments_money_and_deliveries(
    make_gateway, marketplace, aiohttp_client
):
    market, _ = marketplace
    client, admin = await _gateway(make_gateway, aiohttp_client)
    await _payments(client, market)
    now = time.time()
    query = f"?from={_iso(now - 3600)}&to={_iso(now + 60)}&bucket=hour&source=payments"

    async def document() -> dict[str, Any]:
        response = await admin.get("/admin/analytics" + query.replace("+", "%2B"), headers=AUTH)
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
        return data

    # Deliveries are counted when they finish: wait for the fifth.
    from tests.waiting import eventually

    data = await eventually(
        document,
        "every delivery counted",
        until=lambda d: d["totals"]["deliveries"]["delivered"] == 4,
    )
    assert (data["source"], data["bucket"]) == ("payments", "hour")
    totals = data["totals"]
    assert totals["payments"] == {
        "first_seen": 4, "completed": 3, "failed": 1, "expired": 0, "cancelled": 0
    }  # fmt: skip
    assert totals["completed_amounts"] == {"EUR": "25.00", "USD": "12.5"}
    assert totals["success_ratio"] == 0.75
    assert totals["time_to_completion"]["p50"] is not None
    assert totals["deliveries"]["dead_lettered"] == 0
    assert totals["deliveries"]["latency"]["p99"] >= totals["deliveries"]["latency"]["p50"] > 0
    # An hour ago to a minute ahead: two hourly buckets, three when that minute crosses an hour.
    hours = range(int((now - 3600) // 3600) * 3600, int(now + 60), 3600)
    assert len(data["buckets"]) == len(hours)
    assert data["buckets"][0]["start"].endswith(":00:00.000Z")
    assert sum(b["payments"]["first_seen"] for b in data["buckets"]) == 4

    everything = await (await admin.get("/admin/analytics", headers=AUTH)).json()
    assert everything["source"] is None and everything["bucket"] == "day"
    assert len(everything["buckets"]) in (7, 8)  # the last 7 days, aligned to days
    assert everything["totals"]["completed_amounts"] == {"EUR": "26.00", "USD": "12.5"}

    response = await admin.get("/admin/analytics.csv" + query.replace("+", "%2B"), headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert list(rows[0]) == list(CSV_COLUMNS)
    with_money = [r for r in rows if r["currency"]]
    assert sorted((r["currency"], r["completed_amount"]) for r in with_money) == [
        ("EUR", "25.00"), ("USD", "12.5")
    ]  # fmt: skip
    assert {r["first_seen"] for r in with_money} == {"4"}
    assert all(r["currency"] == "" for r in rows if r not in with_money)


async def test_bad_parameters_are_400_naming_what_to_fix(make_gateway, aiohttp_client):
    _, admin = await _gateway(make_gateway, aiohttp_client)
    for query, status, said in (
        ("?from=yesterday", 400, "from must be an RFC 3339 time"),
        ("?to=2026-12-01", 400, "to must be an RFC 3339 time"),
        ("?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", 400, "before"),
        ("?bucket=month", 400, "bucket must be one of: hour, day, week"),
        ("?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", 400, "at most 400 days"),
        ("?from=2026-01-01T00:00:00Z&to=2026-04-01T00:00:00Z&bucket=hour", 400, "buckets"),
        ("?source=nope", 404, "no source named 'nope'"),
    ):
        for path in ("/admin/analytics", "/admin/analytics.csv"):
            response = await admin.get(path + query, headers=AUTH)
            payload = await response.json()
            assert (response.status, said in payload["message"]) == (status, True), (
                path,
                query,
                payload,
            )
    assert (await admin.get("/admin/analytics")).status == 401


async def _cli(admin: Any, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "analytics",
        *args,
        "--admin",
        str(admin.make_url("")).rstrip("/"),
        env={**os.environ, "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_prints_the_table_csv_and_json(make_gateway, marketplace, aiohttp_client):
    market, _ = marketplace
    client, admin = await _gateway(make_gateway, aiohttp_client)
    await _payments(client, market)
    code, out, err = await _cli(admin, "--from", "2h", "--bucket", "hour")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("all sources, ") and lines[0].endswith("by hour")
    assert lines[1].split()[:3] == ["START", "FIRST_SEEN", "COMPLETED"]
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[1:4] == ["5", "4", "1"]
    assert "26.00 EUR, 12.5 USD" in total and "80.0%" in total

    code, out, err = await _cli(admin, "--from", "1d", "--source", "other", "--csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["currency"], r["completed_amount"]) for r in rows if r["currency"]] == [("EUR", "1")]

    code, out, err = await _cli(admin, "--json", "--source", "payments")
    assert code == 0, err
    assert json.loads(out)["totals"]["payments"]["first_seen"] == 4

    for args, wanted, said in (
        (("--from", "soon"), 2, "--from/--to"),
        (("--json", "--csv"), 2, "usage"),
        (("--bucket", "month"), 2, "invalid choice"),
        (("--source", "nope"), 1, "no source named"),
    ):
        code, out, err = await _cli(admin, *args)
        assert (code, said in err) == (wanted, True), (args, out, err)
