"""The typed, frozen config objects the rest of the gateway reads. No raw dicts past the loader."""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from gateway.delivery.forward import Destination
from gateway.delivery.retry import RetryPolicy
from gateway.extract import Extractor, Extractors
from gateway.payments.rules import PaymentRules
from gateway.payments.states import State
from gateway.providers.base import BaseProvider
from gateway.ratelimit.gcra import RateRule
from gateway.secret import Secret

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class HostPort:
    """A listen address: host and port (``0.0.0.0:8080``, ``[::]:8080``)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServerConfig:
    """Listeners, processes, proxies and request limits."""

    listen: HostPort = HostPort("0.0.0.0", 8080)  # noqa: S104 - a gateway listens for the world
    admin_listen: HostPort = HostPort("127.0.0.1", 9090)
    workers: int = 1
    trusted_proxies: tuple[IPNetwork, ...] = ()
    max_body_bytes: int = 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    shutdown_timeout: float = 30.0
    #: Deliveries in flight per process; 0: this process delivers nothing (ingress only), the
    #: processes or replicas sharing its store deliver what it accepts.
    delivery_concurrency: int = 16
    #: How long a worker holds a delivery; ``None``: the longest destination timeout + 30 s.
    delivery_lease: float | None = None
    #: How often idle workers look for due deliveries (ingress wakes its own at once).
    delivery_poll_interval: float = 1.0
    log_level: str = "info"


@dataclass(frozen=True)
class StoreConfig:
    """Where events, dedupe keys, queues and rate limits live."""

    url: str = "sqlite:///./data/gateway.db"
    #: Redis: parts the store is split into, by a hash of (source, dedupe key); fixed for the
    #: store's life (design.md 5.4). 16 or more on a Redis Cluster, so writes spread over masters.
    partitions: int = 1
    #: Redis: replicas that must confirm an accepted event before the sender gets its 2xx
    #: (Redis ``WAIT``), so a failover cannot lose it; 0 trusts asynchronous replication.
    wait_replicas: int = 0
    #: Seconds to wait for those confirmations; short of them the sender gets a 503.
    wait_timeout: float = 1.0
    encryption_keys: tuple[Secret, ...] = ()
    #: Seconds a finished event (delivered or unrouted) is kept; then it is pruned.
    retention: float = 30 * 86400.0

    def __repr__(self) -> str:
        return (
            f"StoreConfig(url={redact_url(self.url)!r}, partitions={self.partitions!r},"
            f" wait_replicas={self.wait_replicas!r}, wait_timeout={self.wait_timeout!r},"
            f" encryption_keys={self.encryption_keys!r},"
            f" retention={self.retention!r})"
        )


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and reprs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class AdminConfig:
    """The admin API's bearer token (``None``: admin API disabled, health and metrics stay)."""

    token: Secret | None = None


@dataclass(frozen=True)
class PluginsConfig:
    """Extra directories to load provider plugins from."""

    paths: tuple[Path, ...] = ()


@dataclass(frozen=True)
class DestinationConfig(Destination):
    """A backend that receives events: how one delivery reaches it, and its retry policy."""

    retry: RetryPolicy = RetryPolicy()


@dataclass(frozen=True)
class RateLimitConfig:
    """Per-IP (before the body) and per-source (after authentication) limits."""

    per_ip: RateRule | None = None
    per_source: RateRule | None = None
    on_store_error: Literal["allow", "deny"] = "allow"


@dataclass(frozen=True)
class DedupeConfig:
    """What makes two requests the same event, and for how long it is remembered."""

    key: Extractor
    window: float = 72 * 3600.0


@dataclass(frozen=True)
class RouteConfig:
    """Events whose type matches one of ``types`` (glob patterns) go to ``destination``."""

    destination: str
    types: tuple[str, ...] = ("*",)

    def matches(self, event_type: str | None) -> bool:
        """Whether an event of this type takes this route (an untyped event matches ``*`` only)."""
        if event_type is None:
            return "*" in self.types
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.types)


@dataclass(frozen=True)
class HttpListFrom:
    """``reconcile.from`` of kind ``http-list``: any JSON listing of payments (design.md 5.8)."""

    url: str
    headers: tuple[tuple[str, Secret], ...] = ()
    timeout: float = 30.0
    items: Extractor = Extractor("body", "")
    key: Extractor = Extractor("body", "/id")
    state: Extractor = Extractor("body", "/status")
    #: the listing's own state names -> the gateway's
    state_map: Mapping[str, State] = field(default_factory=dict)
    #: the webhook body the provider would have sent for an item in each (gateway) state
    events: Mapping[State, Mapping[str, Any]] = field(default_factory=dict)
    kind: Literal["http-list"] = "http-list"


@dataclass(frozen=True)
class RafikiFrom:
    """``reconcile.from`` of kind ``rafiki``: a Rafiki backend's Admin GraphQL API."""

    url: str
    secret: Secret
    tenant_id: str
    timeout: float = 30.0
    kind: Literal["rafiki"] = "rafiki"


@dataclass(frozen=True)
class StripeFrom:
    """``reconcile.from`` of kind ``stripe``: Stripe's ``GET /v1/events``."""

    api_key: Secret
    url: str = "https://api.stripe.com"
    timeout: float = 30.0
    kind: Literal["stripe"] = "stripe"


ProviderFrom = HttpListFrom | RafikiFrom | StripeFrom


@dataclass(frozen=True)
class ReconcileConfig:
    """A source's ``reconcile:`` block: what the provider knows, asked how often (design.md
    5.8)."""

    provider: ProviderFrom
    #: Seconds between scheduled runs; ``None``: on demand only.
    every: float | None = 300.0
    #: An item counts as missing only after this long in its state (its webhook may be on
    #: its way).
    grace: float = 120.0
    recover: bool = True
    #: How far back a run looks (default: the source's dedupe window; Stripe: 30 days at most).
    lookback: float = 72 * 3600.0


@dataclass(frozen=True)
class SourceConfig:
    """One sender: its path, provider, secrets, limits, extraction and routes."""

    name: str
    path: str
    provider: str
    verifier: BaseProvider = field(repr=False, compare=False)
    secrets: tuple[Secret, ...] = ()
    tolerance: float = 300.0
    allow_ips: tuple[IPNetwork, ...] = ()
    allow_unsigned: bool = False
    rate_limit: RateLimitConfig = RateLimitConfig()
    dedupe: DedupeConfig = DedupeConfig(Extractor("sha256"))
    event: Extractors = Extractors()
    require: tuple[Extractor, ...] = ()
    delivery: Literal["queued", "sync"] = "queued"
    #: The status a queued event is answered with: 200 or 202 (the provider's default).
    ack_status: int = 202
    #: An event whose type no route takes: ``store`` it as ``unrouted`` (answered with the
    #: ``ack_status``) or ``reject`` it with 422 ``unrouted``, storing nothing.
    on_unrouted: Literal["store", "reject"] = "store"
    #: How its events name a payment and what they say of it (design.md 5.7); ``None``: its
    #: events stay plain events.
    payment: PaymentRules | None = None
    #: Asking the provider what it knows and recovering what never arrived (design.md 5.8).
    reconcile: ReconcileConfig | None = None
    routes: tuple[RouteConfig, ...] = ()
    forward_headers: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def destinations_for(self, event_type: str | None) -> tuple[str, ...]:
        """The destinations an event of this type goes to, each once, in route order."""
        seen: dict[str, None] = {}
        for route in self.routes:
            if route.matches(event_type):
                seen.setdefault(route.destination, None)
        return tuple(seen)


@dataclass(frozen=True)
class StatusConfig:
    """The buyer's live payment status (design.md 5.10): the secret its tokens are signed
    with, the pages that may listen, and how many streams a process holds."""

    secret: Secret
    #: Origins (``https://market.example``, lower case, no default port) whose pages may
    #: open a stream; CORS answers these only.
    allow_origins: frozenset[str]
    #: Streams open at once in one process; one more is answered 503.
    max_streams: int = 1000
    #: Streams open at once from one client address in one process (a buyer's page holds
    #: one; a few share an address behind a NAT).
    max_streams_per_ip: int = 32


@dataclass(frozen=True)
class Config:
    """The whole gateway config."""

    server: ServerConfig
    store: StoreConfig
    admin: AdminConfig
    plugins: PluginsConfig
    destinations: Mapping[str, DestinationConfig]
    sources: Mapping[str, SourceConfig]
    #: ``None``: no ``status:`` block, the status streams are off.
    status: StatusConfig | None = None
    #: The effective config as plain data with secrets redacted, for ``check-config``.
    redacted: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    source_path: Path | None = None
