"""The metrics a delivery attempt records, through the children ``Metrics`` keeps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gateway.metrics import Metrics


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, f"no {name}{labels}"
    return value


def test_delivery_attempts_are_counted_per_destination_and_result():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.declare({}, ["marketplace", "ledger"])
    metrics.observe_delivery("marketplace", 0.25)
    metrics.observe_delivery("marketplace", 0.5)
    metrics.count_delivery("marketplace", "delivered", 1.5)
    metrics.count_delivery("marketplace", "retried")
    metrics.count_delivery("marketplace", "delivered", 2.5)
    metrics.count_delivery("ledger", "dead_lettered")

    duration = "webhook_gateway_delivery_duration_seconds"
    assert sample(registry, f"{duration}_count", destination="marketplace") == 2
    assert sample(registry, f"{duration}_sum", destination="marketplace") == 0.75
    assert sample(registry, f"{duration}_count", destination="ledger") == 0
    total = "webhook_gateway_deliveries_total"
    assert sample(registry, total, destination="marketplace", result="delivered") == 2
    assert sample(registry, total, destination="marketplace", result="retried") == 1
    assert sample(registry, total, destination="ledger", result="dead_lettered") == 1
    assert sample(registry, total, destination="ledger", result="delivered") == 0
    latency = "webhook_gateway_event_delivery_latency_seconds"
    # Only delivered attempts say how long the event took from its receipt.
    assert sample(registry, f"{latency}_count", destination="marketplace") == 2
    assert sample(registry, f"{latency}_sum", destination="marketplace") == 4.0
    assert sample(registry, f"{latency}_count", destination="ledger") == 0


def test_a_destination_first_seen_after_start_gets_its_series():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.count_delivery("added-by-reload", "delivered", 0.1)
    metrics.observe_delivery("added-by-reload", 0.1)
    total = "webhook_gateway_deliveries_total"
    assert sample(registry, total, destination="added-by-reload", result="delivered") == 1
    duration = "webhook_gateway_delivery_duration_seconds_count"
    assert sample(registry, duration, destination="added-by-reload") == 1
