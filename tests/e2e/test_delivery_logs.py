"""Every delivery attempt logs one JSON line (design.md 5.5): an operator can follow an event
through refused connections, a retry and a dead letter from the logs alone."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.e2e.gateway_process import GatewayProcess, e2e_config, send_event
from tests.waiting import eventually


def attempts_of(gateway: GatewayProcess, event_id: str) -> list[dict[str, Any]]:
    return [
        r
        for r in gateway.log_records()
        if r.get("msg") == "delivery attempt" and r.get("event_id") == event_id
    ]


async def wait_attempts(gateway: GatewayProcess, event_id: str, count: int) -> list[dict[str, Any]]:
    return await eventually(
        lambda: attempts_of(gateway, event_id),
        f"{count} attempts of {event_id} logged",
        until=lambda lines: len(lines) >= count,
        timeout=20,
        why=gateway.log_tail,
    )


async def test_delivered_retried_and_dead_lettered_attempts_each_log_a_line(
    tmp_path, gateways, destinations
):
    market = destinations()  # not started yet: connections are refused
    config = e2e_config(
        store_url=f"sqlite:///{tmp_path / 'gateway.db'}", destinations={"marketplace": market.url}
    )
    gateway = gateways(config)
    await gateway.start()
    async with aiohttp.ClientSession() as session:
        status, _, doomed, _ = await send_event(session, gateway.url())
        assert status == 202
        refused = await wait_attempts(gateway, doomed, 2)
        # The marketplace comes up, but does not know this offer: a 404 is not retried.
        market.market.status = 404
        await market.start()
        lines = await wait_attempts(gateway, doomed, 3)
        market.market.status = 200
        status, _, fine, _ = await send_event(session, gateway.url())
        assert status == 202
        (delivered,) = await wait_attempts(gateway, fine, 1)

    ingress = {
        r["event_id"]: r["request_id"]
        for r in gateway.log_records()
        if r.get("msg") == "request" and r.get("event_id")
    }
    for number, line in enumerate(refused, start=1):
        assert line["result"] == "retried", line
        assert line["level"] == "warning"
        assert line["attempt"] == number
        assert line["status"] is None
        assert "Connect" in line["error"], line  # the refused connection, named
        assert line["next_attempt_at"].endswith("Z")
        assert "reason" not in line
    dead = lines[2]
    assert dead["result"] == "dead_lettered", dead
    assert dead["level"] == "error"
    assert (dead["attempt"], dead["status"]) == (3, 404)
    assert dead["reason"] == "HTTP 404 is not retried"
    assert "next_attempt_at" not in dead
    assert delivered["result"] == "delivered", delivered
    assert delivered["level"] == "info"
    assert (delivered["attempt"], delivered["status"]) == (1, 200)
    for line in (*lines, delivered):
        assert line["destination"] == "marketplace"
        assert line["source"] == "payments"
        assert isinstance(line["latency_ms"], int | float) and line["latency_ms"] >= 0
        # The same request id as the ingress line: one grep follows the event end to end.
        assert line["request_id"] == ingress[line["event_id"]]
        assert "body" not in line
