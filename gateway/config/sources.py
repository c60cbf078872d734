"""The ``sources`` section: each sender's path, provider, secrets, limits, extraction, delivery
and routes, checked key by key (every problem named by its key, as the loader reports it)."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, TypeVar

from gateway.config.model import (
    DedupeConfig,
    DestinationConfig,
    RateLimitConfig,
    RouteConfig,
    SourceConfig,
)
from gateway.config.payments import parse_payment
from gateway.config.reader import (
    NAME,
    Reader,
    boolean,
    choice,
    parse_duration,
    parse_network,
    positive_int,
    secret,
)
from gateway.config.reconcile import parse_reconcile
from gateway.delivery.forward import gateway_owned
from gateway.errors import OptionError
from gateway.extract import Extractor, Extractors, list_extractor, parse_extractor
from gateway.providers.registry import ProviderRegistry
from gateway.ratelimit.gcra import Rate, RateRule
from gateway.secret import Secret

T = TypeVar("T")


def _source_path(value: object) -> str:
    text = str(value)
    if not text.startswith("/") or "?" in text or "#" in text or "{" in text:
        raise ValueError(f"{text!r}: a source path is an absolute path like /hooks/payments")
    return text.rstrip("/") or "/"


def _rate_rule(reader: Reader, raw: object, key: str) -> RateRule | None:
    if raw is None:
        return None
    with reader.at(key):
        data = reader.mapping(raw, {"rate", "burst"})
        if "rate" not in data:
            reader.problem(reader.key("rate"), "required (e.g. 100/s)")
            return None
        rate = reader.field(data, "rate", Rate.parse, None)
        burst = reader.field(data, "burst", positive_int, None)
        if rate is None or (burst is None and "burst" in data):
            return None
        try:
            return RateRule(rate=rate, burst=burst or 1)
        except ValueError as exc:
            reader.problem(reader.key("burst"), str(exc))
            return None


_SOURCE_KEYS = {
    "path", "provider", "secrets", "tolerance", "allow_ips", "allow_unsigned", "rate_limit",
    "dedupe", "event", "require", "delivery", "ack_status", "on_unrouted", "payment", "reconcile",
    "routes",
    "forward_headers", "options",
}  # fmt: skip
#: What a source may answer an accepted event with (design.md 3): the sender counts one of them
#: as success (Rafiki only 200).
ACK_STATUSES = (200, 202)


def _forward_header(value: object) -> str:
    name = str(value).strip()
    if not name or any(c.isspace() or c == ":" for c in name):
        raise ValueError(f"{name!r} is not a header name")
    if gateway_owned(name):
        raise ValueError(
            f"{name} is written by the gateway (ce-*, webhook-*, X-Request-ID, X-Gateway-Attempt,"
            " X-Gateway-Origin, Content-Type) or is hop-by-hop: a sender's value must not"
            " replace it"
        )
    return name


def _extractor(value: object) -> Extractor:
    """An ``event:`` extractor; YAML may give a number or a list, which is refused by its text
    like ``require`` and ``dedupe.key`` entries, never an ``AttributeError``."""
    return parse_extractor(str(value))


def _dedupe_key(value: object) -> Extractor:
    """``dedupe.key``: an extractor, ``sha256``, or a list of extractors joined with ``:``."""
    if isinstance(value, list):
        return list_extractor([parse_extractor(str(part)) for part in value])
    return parse_extractor(str(value), allow_sha256=True)


def _ack_status(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value in ACK_STATUSES:
        return value
    raise ValueError("expected 200 or 202 (the status the sender counts as success)")


def _source(
    reader: Reader,
    name: str,
    raw: object,
    registry: ProviderRegistry,
    destinations: Mapping[str, DestinationConfig],
    refused: set[str],
) -> SourceConfig | None:
    data = reader.mapping(raw, _SOURCE_KEYS)
    before = len(reader.problems)
    path = reader.field(data, "path", _source_path, "")
    if "path" not in data:
        reader.problem(reader.key("path"), "required (e.g. /hooks/payments)")
    provider_name = str(data.get("provider", ""))
    if not provider_name:
        reader.problem(reader.key("provider"), f"required (one of: {', '.join(registry.names())})")
        return None
    if provider_name not in registry:
        reader.problem(
            reader.key("provider"),
            f"unknown provider {provider_name!r} (known: {', '.join(registry.names())})",
        )
        return None
    tolerance = reader.field(data, "tolerance", parse_duration, 300.0)
    options = data.get("options") or {}
    if not isinstance(options, dict):
        reader.problem(reader.key("options"), "expected a mapping")
        options = {}
    try:
        verifier = registry.get(provider_name)(tolerance=tolerance, options=options)
    except OptionError as exc:
        reader.problem(reader.key("options", exc.key), exc.message)
        return None

    def provider_secret(value: object) -> Secret:
        parsed = secret(value)
        problem = verifier.describe_secret(parsed)
        if problem:
            raise ValueError(problem)
        return parsed

    secrets = reader.list_of(data, "secrets", provider_secret)
    allow_ips = reader.list_of(data, "allow_ips", parse_network)
    allow_unsigned = reader.field(data, "allow_unsigned", boolean, False)
    if verifier.authenticates:
        if not secrets and "secrets" in data and not reader.reported(reader.key("secrets")):
            reader.problem(reader.key("secrets"), "at least one secret is required")
        elif "secrets" not in data:
            reader.problem(
                reader.key("secrets"), f"required: provider {provider_name} needs secrets"
            )
    elif not (allow_unsigned and allow_ips):
        reader.problem(
            reader.key("provider"),
            "provider none accepts unsigned requests: it needs allow_unsigned: true and a "
            "non-empty allow_ips",
        )

    # Rate limits.
    rate_limit = RateLimitConfig()
    if data.get("rate_limit") is not None:
        with reader.at("rate_limit"):
            rl = reader.mapping(data["rate_limit"], {"per_ip", "per_source", "on_store_error"})
            rate_limit = RateLimitConfig(
                per_ip=_rate_rule(reader, rl.get("per_ip"), "per_ip"),
                per_source=_rate_rule(reader, rl.get("per_source"), "per_source"),
                on_store_error=reader.field(rl, "on_store_error", choice("allow", "deny"), "allow"),
            )

    # Event extraction: the source's own, falling back to the provider's defaults.
    defaults = verifier.defaults
    event = defaults
    if data.get("event") is not None:
        with reader.at("event"):
            ev = reader.mapping(data["event"], {"id", "type", "subject", "time"})
            event = Extractors(
                id=reader.field(ev, "id", _extractor, defaults.id),
                type=reader.field(ev, "type", _extractor, defaults.type),
                subject=reader.field(ev, "subject", _extractor, defaults.subject),
                time=reader.field(ev, "time", _extractor, defaults.time),
                dedupe=defaults.dedupe,
            )
    dedupe_key = defaults.dedupe or Extractor("sha256")
    window = 72 * 3600.0
    if data.get("dedupe") is not None:
        with reader.at("dedupe"):
            dd = reader.mapping(data["dedupe"], {"key", "window"})
            dedupe_key = reader.field(dd, "key", _dedupe_key, dedupe_key)
            window = reader.field(dd, "window", parse_duration, window)
    if verifier.uses_timestamp and window < 2 * tolerance:
        # design.md 3: a replay must be refused by the window or by the tolerance, never by neither.
        reader.problem(
            reader.key("dedupe", "window"),
            f"must be at least twice the tolerance ({2 * tolerance:g}s) so a replayed request "
            "is refused by one or the other",
        )
    require = reader.list_of(data, "require", lambda v: parse_extractor(str(v)))
    payment = parse_payment(reader, data.get("payment"), verifier.payments, provider_name)
    reconcile = parse_reconcile(
        reader, data.get("reconcile"), dedupe_key=dedupe_key, window=window, payment=payment
    )

    delivery: Literal["queued", "sync"] = reader.field(
        data, "delivery", choice("queued", "sync"), "queued"
    )
    ack_status = reader.field(data, "ack_status", _ack_status, verifier.ack_status)
    on_unrouted: Literal["store", "reject"] = reader.field(
        data, "on_unrouted", choice("store", "reject"), "store"
    )
    routes: list[RouteConfig] = []
    raw_routes = data.get("routes")
    if not isinstance(raw_routes, list) or not raw_routes:
        reader.problem(reader.key("routes"), "at least one route is required")
        raw_routes = []
    for index, raw_route in enumerate(raw_routes):
        with reader.at("routes", index):
            rd = reader.mapping(raw_route, {"destination", "types"})
            dest = str(rd.get("destination", ""))
            if dest in refused:
                continue  # that destination's own problems were reported at its keys
            if dest not in destinations:
                known = ", ".join(sorted(destinations)) or "none defined"
                reader.problem(
                    reader.key("destination"), f"unknown destination {dest!r} (known: {known})"
                )
                continue
            types = reader.list_of(rd, "types", str) if "types" in rd else ("*",)
            routes.append(RouteConfig(destination=dest, types=types or ("*",)))
    if delivery == "sync" and len({r.destination for r in routes}) > 1:
        reader.problem(
            reader.key("routes"),
            "delivery: sync forwards to exactly one destination and returns its answer; "
            "these routes name several (use delivery: queued for fan-out)",
        )
    forward_headers = reader.list_of(data, "forward_headers", _forward_header)
    if len(reader.problems) > before:
        return None
    return SourceConfig(
        name=name,
        path=path,
        provider=provider_name,
        verifier=verifier,
        secrets=secrets,
        tolerance=tolerance,
        allow_ips=allow_ips,
        allow_unsigned=allow_unsigned,
        rate_limit=rate_limit,
        dedupe=DedupeConfig(key=dedupe_key, window=window),
        event=Extractors(event.id, event.type, event.subject, event.time, dedupe_key),
        require=require,
        delivery=delivery,
        ack_status=ack_status,
        on_unrouted=on_unrouted,
        payment=payment,
        reconcile=reconcile,
        routes=tuple(routes),
        forward_headers=forward_headers,
        options=MappingProxyType(dict(options)),
    )


def parse_sources(
    reader: Reader,
    raw: object,
    registry: ProviderRegistry,
    destinations: Mapping[str, DestinationConfig],
    refused: set[str],
) -> dict[str, SourceConfig]:
    """Every source; a route to a destination in ``refused`` (reported at its own key
    already) is skipped without a second message."""
    sources: dict[str, SourceConfig] = {}
    paths: dict[str, str] = {}
    if not isinstance(raw, dict) or not raw:
        reader.problem(reader.key(), "at least one source is required")
        return sources
    for name, raw_source in raw.items():
        name = str(name)
        with reader.at(name):
            if not NAME.match(name):
                reader.problem(reader.key(), "names use letters, digits, _ . -")
                continue
            source = _source(reader, name, raw_source, registry, destinations, refused)
        if source is None:
            continue
        if source.path in paths:
            reader.problem(
                f"sources.{name}.path",
                f"{source.path} is already the path of source {paths[source.path]}",
            )
            continue
        paths[source.path] = name
        sources[name] = source
    return sources
