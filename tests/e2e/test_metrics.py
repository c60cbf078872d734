"""Metrics with ``server.workers: 2``: every series of a configured source or destination is
there from start at 0, and queue depth stays present once the queue has drained (design.md 5.5)."""

from __future__ import annotations

import aiohttp

from tests.e2e.gateway_process import e2e_config, send_event, wait_drained
from tests.support import payments_source


def expected_series(sources: dict[str, str], destinations: list[str]) -> set[tuple[str, frozenset]]:
    """(metric, labels) of every series an operator's alerts and dashboards read."""

    def s(name: str, **labels: str) -> tuple[str, frozenset]:
        return (name, frozenset(labels.items()))

    wanted = set()
    for source, mode in sources.items():
        outcomes = ["accepted", "duplicate", "unrouted", "invalid_signature", "rate_limited"]
        outcomes.append("unavailable")
        if mode == "sync":
            outcomes.append("forwarded")
        for outcome in outcomes:
            wanted.add(s("webhook_gateway_requests_total", source=source, outcome=outcome))
        wanted.add(s("webhook_gateway_request_duration_seconds_count", source=source))
        wanted.add(s("webhook_gateway_signature_failures_total", source=source))
    for destination in destinations:
        for result in ("delivered", "retried", "dead_lettered"):
            wanted.add(
                s("webhook_gateway_deliveries_total", destination=destination, result=result)
            )
        for state in ("due", "leased", "dead"):
            wanted.add(s("webhook_gateway_queue_depth", destination=destination, state=state))
        wanted.add(s("webhook_gateway_delivery_duration_seconds_count", destination=destination))
        wanted.add(
            s("webhook_gateway_event_delivery_latency_seconds_count", destination=destination)
        )
    for result in ("success", "failure"):
        wanted.add(s("webhook_gateway_config_reloads_total", result=result))
    return wanted


async def test_every_series_exists_at_zero_before_traffic_with_two_workers(
    store_url, gateways, destinations
):
    market, ledger = destinations(), destinations()
    await market.start()
    routes = [
        {"destination": "marketplace", "types": ["payment.*"]},
        {"destination": "ledger", "types": ["ledger.*"]},
    ]
    sync = payments_source(
        path="/hooks/sync", delivery="sync", routes=[{"destination": "marketplace"}]
    )
    config = e2e_config(
        store_url=store_url,
        destinations={"marketplace": market.url, "ledger": ledger.url},
        sources={"payments": payments_source(routes=routes), "direct": sync},
        server={"workers": 2},
    )
    gateway = gateways(config)
    await gateway.start()
    wanted = expected_series({"payments": "queued", "direct": "sync"}, ["marketplace", "ledger"])

    before = await gateway.series()
    missing = sorted(wanted - before.keys())
    assert not missing, f"absent before any traffic: {missing}\n{gateway.log_tail()}"
    assert all(before[key] == 0 for key in wanted), {k: before[k] for k in wanted if before[k]}

    async with aiohttp.ClientSession() as session:
        ids = []
        for _ in range(6):
            status, _, msg_id, _ = await send_event(session, gateway.url())
            assert status == 202
            ids.append(msg_id)
    await market.wait_for_ids(ids, why=f"\n{gateway.log_tail()}")
    await wait_drained(store_url, logs=gateway.log_tail())

    after = await gateway.series()
    missing = sorted(wanted - after.keys())
    assert not missing, f"absent after the queue drained: {missing}"
    depth = {k: after[k] for k in wanted if k[0] == "webhook_gateway_queue_depth"}
    assert set(depth.values()) == {0.0}, depth
    accepted = (
        "webhook_gateway_requests_total",
        frozenset({("source", "payments"), ("outcome", "accepted")}),
    )
    assert after[accepted] == 6
    delivered = (
        "webhook_gateway_deliveries_total",
        frozenset({("destination", "marketplace"), ("result", "delivered")}),
    )
    assert after[delivered] == 6
