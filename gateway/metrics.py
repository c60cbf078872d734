"""Prometheus metrics (design.md 5.5), built on a registry passed in so tests own theirs.

With ``server.workers`` above one, the runner points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory before starting the processes; each writes its samples there and ``exposition``
merges them, so ``/metrics`` counts every process, not only the one that answers.

Every labelled series of a configured source or destination exists from start at 0
(``declare``), in every process, so an alert or a dashboard never meets an absent series.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

import gateway
from gateway.payments.states import MARKS
from gateway.store.records import DEPTH_STATES, RECONCILE_RESULTS, ReconcileRun

DELIVERY_RESULTS = ("delivered", "retried", "dead_lettered")
#: Request outcomes a source has from start: what alerts and dashboards divide by.
START_OUTCOMES = (
    "accepted", "duplicate", "unrouted", "invalid_signature", "rate_limited", "unavailable",
)  # fmt: skip
#: Why a buyer's status stream was refused before it started (design.md 5.10): its token
#: (``token_<reason>``), its origin, its source, a malformed upgrade, a cap, the store.
STATUS_REFUSALS = (
    "token_missing", "token_malformed", "token_mismatch", "token_expired", "origin",
    "unknown_source", "bad_upgrade", "max_streams", "per_ip", "unavailable",
)  # fmt: skip
#: Why a status stream ended: its payment is final, its token expired or was revoked by a
#: reload, the page left, read too slowly, the gateway stopped, the store failed.
STATUS_ENDS = ("final", "expired", "revoked", "client", "slow", "stopping", "unavailable")
STATUS_TRANSPORTS = ("websocket", "sse")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_EVENT_BUCKETS = (0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)

_M = TypeVar("_M", Counter, Histogram)


class _Children(dict[Hashable, _M]):
    """A metric's children by label values (a tuple, or one value), made on first use and kept:
    ``labels()`` validates and takes a lock on every call, which the request and delivery paths
    would otherwise pay for every series they touch."""

    def __init__(self, metric: _M) -> None:
        super().__init__()
        self._metric: _M = metric

    def __missing__(self, key: Hashable) -> _M:
        child: _M = self._metric.labels(*(key if isinstance(key, tuple) else (key,)))
        self[key] = child
        return child


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
            # The admin process reads the store at each scrape: its latest reading is the truth
            # (a dead process's gauges go with it, see runner.py).
            multiprocess_mode="livemostrecent",
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
        self.payment_anomalies = Counter(
            "webhook_gateway_payment_anomalies",
            "Payment events marked superseded or conflict (design.md 5.7)",
            ["source", "kind"],
            registry=r,
        )
        self.reconcile_runs = Counter(
            "webhook_gateway_reconcile_runs",
            "Reconciliation runs by result (design.md 5.8)",
            ["source", "result"],
            registry=r,
        )
        self.reconcile_items = Gauge(
            "webhook_gateway_reconcile_items",
            "Items of the last reconciliation run by result",
            ["source", "result"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.reconcile_recovered = Counter(
            "webhook_gateway_reconcile_recovered",
            "Payments reconciliation recovered",
            ["source"],
            registry=r,
        )
        self.reconcile_last_success = Gauge(
            "webhook_gateway_reconcile_last_success_timestamp_seconds",
            "When a reconciliation run of the source last succeeded (Unix seconds)",
            ["source"],
            registry=r,
            multiprocess_mode="max",
        )
        self.status_streams = Gauge(
            "webhook_gateway_status_streams",
            "Buyers' payment status streams open (design.md 5.10)",
            ["transport"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.status_refusals = Counter(
            "webhook_gateway_status_refusals",
            "Status streams refused before they started, by reason",
            ["reason"],
            registry=r,
        )
        self.status_ends = Counter(
            "webhook_gateway_status_stream_ends",
            "Status streams that ended, by reason",
            ["reason"],
            registry=r,
        )
        self.build_info = Gauge(
            "webhook_gateway_build_info",
            "Build information",
            ["version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.build_info.labels(version=gateway.__version__).set(1)
        self._destinations: set[str] = set()
        self._request_counts = _Children(self.requests)
        self._request_durations = _Children(self.request_duration)
        self._delivery_counts = _Children(self.deliveries)
        self._delivery_durations = _Children(self.delivery_duration)
        self._event_latencies = _Children(self.event_latency)

    def declare(
        self,
        sources: Mapping[str, str],
        destinations: Iterable[str],
        payment_sources: Iterable[str] = (),
        reconciled_sources: Iterable[str] = (),
        status: bool = False,
    ) -> None:
        """Create every series of these sources (name -> delivery mode), destinations and
        sources with payments at 0, and the status streams' with ``status``.

        Called at start and after each reload; series of a name dropped since stay (at their
        last value) until the process restarts.
        """
        for source, delivery in sources.items():
            outcomes = (*START_OUTCOMES, "forwarded") if delivery == "sync" else START_OUTCOMES
            for outcome in outcomes:
                self.requests.labels(source, outcome)
            self.request_duration.labels(source)
            self.signature_failures.labels(source)
            self.rate_limit_store_errors.labels(source)
        for destination in destinations:
            for result in DELIVERY_RESULTS:
                self.deliveries.labels(destination, result)
            self.delivery_duration.labels(destination)
            self.event_latency.labels(destination)
        for source in payment_sources:
            for kind in MARKS:
                self.payment_anomalies.labels(source, kind)
        for source in reconciled_sources:
            for result in ("success", "failure"):
                self.reconcile_runs.labels(source, result)
            for item in RECONCILE_RESULTS:
                self.reconcile_items.labels(source, item)
            self.reconcile_recovered.labels(source)
            self.reconcile_last_success.labels(source)
        for result in ("success", "failure"):
            self.config_reloads.labels(result)
        if status:
            for transport in STATUS_TRANSPORTS:
                self.status_streams.labels(transport)
            for reason in STATUS_REFUSALS:
                self.status_refusals.labels(reason)
            for reason in STATUS_ENDS:
                self.status_ends.labels(reason)
        self.set_queue_depth({}, destinations)

    def observe_reconcile(self, run: ReconcileRun) -> None:
        """A run this process finished: its result, what it recovered, and its items."""
        self.reconcile_runs.labels(run.source, "success" if run.ok else "failure").inc()
        if run.ok:
            self.reconcile_recovered.labels(run.source).inc(run.counts.get("recovered", 0))
        self.show_last_run(run)

    def show_last_run(self, run: ReconcileRun) -> None:
        """The source's last successful run, wherever it ran (read back from the store, so
        every process and replica shows it): its items and when it ended. A failed or dry run
        changes nothing here."""
        if not run.ok or run.dry_run:
            return
        for result in RECONCILE_RESULTS:
            self.reconcile_items.labels(run.source, result).set(run.counts.get(result, 0))
        self.reconcile_last_success.labels(run.source).set(run.finished_at or run.started_at)

    def observe_request(self, source: str, outcome: str, seconds: float) -> None:
        """Count one ingress request by outcome and record how long it took."""
        self._request_counts[(source, outcome)].inc()
        self._request_durations[source].observe(seconds)

    def observe_delivery(self, destination: str, seconds: float) -> None:
        """Record how long one delivery attempt to ``destination`` took."""
        self._delivery_durations[destination].observe(seconds)

    def count_delivery(self, destination: str, result: str, latency: float | None = None) -> None:
        """Count one delivery attempt by ``result``; ``latency``, for a delivered event, is
        how long it took from its receipt."""
        self._delivery_counts[(destination, result)].inc()
        if latency is not None:
            self._event_latencies[destination].observe(latency)

    def set_queue_depth(
        self, depth: Mapping[tuple[str, str], int], destinations: Iterable[str] = ()
    ) -> None:
        """Set the queue gauges from a store reading; states absent from it are zero.

        Every destination declared or ever seen gets all three states, so a drained queue
        reads 0 rather than vanishing.
        """
        self._destinations.update(destinations, (destination for destination, _ in depth))
        for destination in self._destinations:
            for state in DEPTH_STATES:
                self.queue_depth.labels(destination, state).set(depth.get((destination, state), 0))

    def exposition(self) -> bytes:
        """The Prometheus text of every process's metrics (merged in multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(merged))
        return bytes(generate_latest(self.registry))
