"""What the request path needs of each source, decided once when the config loads.

A ``SourcePlan`` is frozen and slotted: the stages of ``gateway.ingress.handler`` look things
up in it and compute nothing that depends on the config alone (which headers stage 7 reads and
keeps, whether the body must be parsed, where the per-source limit is decided, the limiter's
store-error policy). It is rebuilt with the ``Ingress`` on every reload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.config.model import SourceConfig
from gateway.errors import StoreError
from gateway.extract import Extractor
from gateway.http.clientip import IPAddress, in_networks
from gateway.ratelimit.limiter import Limiter
from gateway.ratelimit.policy import StoreErrorPolicy
from gateway.store.records import AcceptLimit

#: Event types whose routes a plan remembers (the type is the sender's to choose).
ROUTE_CACHE_SIZE = 1024
#: Client addresses whose verdict a plan remembers (a provider posts from a few).
PEER_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """One source as the request path reads it."""

    source: SourceConfig
    #: The fail-open or fail-closed policy around the shared limiter (design.md 5.3).
    limits: StoreErrorPolicy
    #: Stage 7's headers: those an extractor reads (once, as text) and those kept with the
    #: event (as text). ``read_headers`` leaves out the verifier's own, which stage 5 has
    #: checked the same way just before.
    read_headers: frozenset[str]
    kept_headers: tuple[str, ...]
    #: Whether stage 7 parses the body as JSON (an extractor or a required field reads it).
    needs_json: bool
    #: The per-source limit as stage 8's store call decides it, where the store keeps the
    #: limits too (one round trip instead of two: stage 6 moves into 8); ``None`` otherwise.
    accept_limit: AcceptLimit | None
    #: The limiter key of the per-source limit, for stage 6 when it is not in ``accept_limit``.
    limit_key: str
    #: Whether stage 8's store call may decide the per-IP limit too, before the per-source
    #: one (queued mode, limits kept by the store), for a request whose body had arrived
    #: whole by stage 3: one round trip instead of two (see ``Ingress._process``).
    ip_limit_in_accept: bool
    #: event type -> destinations, filled as types are seen.
    _routes: dict[str | None, tuple[str, ...]] = field(default_factory=dict, repr=False)
    #: client address -> (whether the allow-list lets it in, its per-IP limiter key).
    _peers: dict[IPAddress | None, tuple[bool, str]] = field(default_factory=dict, repr=False)

    def peer(self, address: IPAddress | None) -> tuple[bool, str]:
        """Whether the source's ``allow_ips`` let ``address`` in (any address when it has
        none; no address when it has some), and the key of its per-IP limit. Worked out once
        per address seen: the allow-list walk and the address's text were each a few
        microseconds of every request. Past ``PEER_CACHE_SIZE`` addresses, each is worked out
        afresh."""
        known = self._peers.get(address)
        if known is None:
            allow = self.source.allow_ips
            allowed = not allow or (address is not None and in_networks(address, allow))
            known = (allowed, f"ip:{self.source.name}:{address}")
            if len(self._peers) < PEER_CACHE_SIZE:
                self._peers[address] = known
        return known

    def destinations_for(self, event_type: str | None) -> tuple[str, ...]:
        """The source's routes for this event type, matched once per type seen (the types a
        sender uses are few; past ``ROUTE_CACHE_SIZE`` of them, each is matched afresh)."""
        destinations = self._routes.get(event_type)
        if destinations is None:
            destinations = self.source.destinations_for(event_type)
            if len(self._routes) < ROUTE_CACHE_SIZE:
                self._routes[event_type] = destinations
        return destinations


def plan_source(
    source: SourceConfig,
    limiter: Limiter,
    *,
    limits_in_store: bool,
    on_limiter_failure: Callable[[StoreError], None],
) -> SourcePlan:
    """The plan of ``source``; ``limits_in_store``: the store decides its per-source limit
    in the same call as the accept or the claim (``IngressStore.decides_limits``)."""
    read = (*extractors_of(source), *source.require)
    key = f"source:{source.name}"
    rule = source.rate_limit.per_source
    return SourcePlan(
        source=source,
        limits=StoreErrorPolicy(
            limiter, source.rate_limit.on_store_error, on_failure=on_limiter_failure
        ),
        read_headers=frozenset(
            name for e in read if e is not None for name in e.header_names()
        ).difference(source.verifier.reads),
        kept_headers=("content-type", *source.forward_headers),
        needs_json=any(e is not None and e.needs_json for e in read),
        accept_limit=AcceptLimit(key, rule) if limits_in_store and rule is not None else None,
        limit_key=key,
        ip_limit_in_accept=limits_in_store
        and source.rate_limit.per_ip is not None
        and source.delivery == "queued",
    )


def extractors_of(source: SourceConfig) -> tuple[Extractor | None, ...]:
    """Every extractor a source reads for an event (for deciding whether to parse JSON)."""
    e = source.event
    return (e.id, e.type, e.subject, e.time, source.dedupe.key)
