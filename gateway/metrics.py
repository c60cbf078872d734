"""Prometheus metrics (DESIGN 5.5), built on a registry passed in so tests own theirs.

With ``server.workers`` above one, the runner points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory before starting the processes; each writes its samples there and ``exposition``
merges them, so ``/metrics`` counts every process, not only the one that answers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

import gateway

QUEUE_STATES = ("due", "leased", "dead")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_EVENT_BUCKETS = (0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)


class Metrics:
    """Every metric the gateway exports, registered on one ``CollectorRegistry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "webhook_gateway_requests",
            "Ingress requests by outcome",
            ["source", "outcome"],
            registry=r,
        )
        self.request_duration = Histogram(
            "webhook_gateway_request_duration_seconds",
            "Ingress request handling time",
            ["source"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.deliveries = Counter(
            "webhook_gateway_deliveries",
            "Delivery attempts by result",
            ["destination", "result"],
            registry=r,
        )
        self.delivery_duration = Histogram(
            "webhook_gateway_delivery_duration_seconds",
            "Delivery attempt time",
            ["destination"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.event_latency = Histogram(
            "webhook_gateway_event_delivery_latency_seconds",
            "Time from an event's arrival to its delivery",
            ["destination"],
            buckets=_EVENT_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "webhook_gateway_queue_depth",
            "Deliveries by state",
            ["destination", "state"],
            registry=r,
            multiprocess_mode="max",
        )
        self.signature_failures = Counter(
            "webhook_gateway_signature_failures",
            "Requests refused by verification",
            ["source"],
            registry=r,
        )
        self.config_reloads = Counter(
            "webhook_gateway_config_reloads",
            "Config reloads by result",
            ["result"],
            registry=r,
        )
        self.rate_limit_store_errors = Counter(
            "webhook_gateway_rate_limit_store_errors",
            "Rate-limit checks that could not reach the store",
            ["source"],
            registry=r,
        )
        self.build_info = Gauge(
            "webhook_gateway_build_info",
            "Build information",
            ["version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.build_info.labels(version=gateway.__version__).set(1)
        self._seen_destinations: set[str] = set()
        # The children of the per-request metrics, kept once made: ``labels()`` validates and
        # takes a lock on every call, which the ingress would otherwise pay twice a request.
        self._request_counts: dict[tuple[str, str], Counter] = {}
        self._request_durations: dict[str, Histogram] = {}

    def observe_request(self, source: str, outcome: str, seconds: float) -> None:
        """Count one ingress request by outcome and record how long it took."""
        count = self._request_counts.get((source, outcome))
        if count is None:
            count = self._request_counts[(source, outcome)] = self.requests.labels(source, outcome)
        count.inc()
        duration = self._request_durations.get(source)
        if duration is None:
            duration = self._request_durations[source] = self.request_duration.labels(source)
        duration.observe(seconds)

    def set_queue_depth(self, depth: Mapping[tuple[str, str], int]) -> None:
        """Set the queue gauges from a store reading; states absent from it are zero."""
        destinations = {destination for destination, _ in depth} | self._seen_destinations
        self._seen_destinations = destinations
        for destination in destinations:
            for state in QUEUE_STATES:
                self.queue_depth.labels(destination, state).set(depth.get((destination, state), 0))

    def exposition(self) -> bytes:
        """The Prometheus text of every process's metrics (merged in multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(merged))
        return bytes(generate_latest(self.registry))
