"""Parse and validate the YAML config into ``gateway.config.model`` objects.

Every problem is collected and reported with its key (``sources.payments.secrets[0]: ...``), so
one run of ``check-config`` shows everything to fix. Unknown keys are errors: a typo must not
silently turn a protection off.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import yaml

from gateway.config.model import (
    AdminConfig,
    Config,
    DedupeConfig,
    DestinationConfig,
    PluginsConfig,
    RateLimitConfig,
    RouteConfig,
    ServerConfig,
    SourceConfig,
    StoreConfig,
)
from gateway.config.reader import (
    NAME,
    Reader,
    boolean,
    choice,
    http_url,
    non_negative_int,
    parse_duration,
    parse_host_port,
    parse_network,
    positive_int,
    secret,
)
from gateway.delivery.forward import gateway_owned
from gateway.delivery.retry import RetryPolicy
from gateway.errors import ConfigError, OptionError
from gateway.extract import Extractor, Extractors, parse_extractor
from gateway.providers.registry import ProviderRegistry, load_registry
from gateway.ratelimit.gcra import Rate, RateRule
from gateway.redisio.sentinel import parse_sentinel_url
from gateway.secret import Secret
from gateway.signing import MIN_HMAC_KEY_BYTES, hmac_key
from gateway.store.crypto import parse_key
from gateway.store.urls import describe_schemes, store_kind

T = TypeVar("T")


def _encryption_key(value: object) -> Secret:
    """A ``store.encryption_keys`` entry: base64 of 32 bytes (DESIGN 5.4); errors omit it."""
    parsed = secret(value)
    parse_key(parsed.value)
    return parsed


def _check_repeated_keys(reader: Reader, raw: object) -> None:
    """Report a ``store.encryption_keys`` entry that repeats an earlier one, by index only.

    ``base64:X`` and ``X`` are the same key. The store refuses a repeat at startup too; here
    ``check-config`` catches it first. The message names indexes, never a key.
    """
    if not isinstance(raw, list):
        return
    seen: dict[bytes, int] = {}
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            continue
        try:
            key = parse_key(item)
        except ValueError:
            continue  # already reported by _encryption_key
        if key in seen:
            reader.problem(
                reader.key("encryption_keys", index),
                f"repeats store.encryption_keys[{seen[key]}] (list each key once)",
            )
        else:
            seen[key] = index


def _store_url(value: object) -> str:
    text = str(value)
    # The messages never quote the URL: it may carry a resolved ${...} password.
    kind = store_kind(text)
    if kind is None:
        raise ValueError(f"store URL must start with one of {describe_schemes()}")
    if kind == "sentinel":
        try:
            parse_sentinel_url(text)
        except ValueError as exc:
            raise ValueError(f"bad Redis Sentinel URL: {exc}") from None
    return text


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


def _retry(reader: Reader, raw: object) -> RetryPolicy:
    default = RetryPolicy()
    with reader.at("retry"):
        data = reader.mapping(
            raw, {"schedule", "max_attempts", "max_age", "jitter", "initial", "factor", "max_delay"}
        )
        schedule = (
            reader.list_of(data, "schedule", parse_duration)
            if "schedule" in data
            else default.schedule
        )
        max_attempts = reader.field(data, "max_attempts", positive_int, None)
        max_age = reader.field(data, "max_age", parse_duration, default.max_age)
        jitter = reader.field(data, "jitter", float, default.jitter)
        if not 0 <= jitter <= 1:
            reader.problem(reader.key("jitter"), "expected a fraction between 0 and 1")
            jitter = default.jitter
        return RetryPolicy(
            schedule=schedule,
            max_attempts=max_attempts,
            max_age=max_age,
            initial=reader.field(data, "initial", parse_duration, default.initial),
            factor=reader.field(data, "factor", float, default.factor),
            max_delay=reader.field(data, "max_delay", parse_duration, default.max_delay),
            jitter=jitter,
        )


_SOURCE_KEYS = {
    "path", "provider", "secrets", "tolerance", "allow_ips", "allow_unsigned", "rate_limit",
    "dedupe", "event", "require", "delivery", "ack_status", "on_unrouted", "routes",
    "forward_headers", "options",
}  # fmt: skip
#: What a source may answer an accepted event with (DESIGN 3): the sender counts one of them
#: as success (Rafiki only 200).
ACK_STATUSES = (200, 202)


def _forward_header(value: object) -> str:
    name = str(value).strip()
    if not name or any(c.isspace() or c == ":" for c in name):
        raise ValueError(f"{name!r} is not a header name")
    if gateway_owned(name):
        raise ValueError(
            f"{name} is written by the gateway (ce-*, webhook-*, X-Request-ID, X-Gateway-Attempt,"
            " Content-Type) or is hop-by-hop: a sender's value must not replace it"
        )
    return name


def _extractor(value: object) -> Extractor:
    """An ``event:`` extractor; YAML may give a number or a list, which is refused by its text
    like ``require`` and ``dedupe.key`` entries, never an ``AttributeError``."""
    return parse_extractor(str(value))


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
            dedupe_key = reader.field(
                dd, "key", lambda v: parse_extractor(str(v), allow_sha256=True), dedupe_key
            )
            window = reader.field(dd, "window", parse_duration, window)
    if verifier.uses_timestamp and window < 2 * tolerance:
        # DESIGN 3: a replay must be refused by the window or by the tolerance, never by neither.
        reader.problem(
            reader.key("dedupe", "window"),
            f"must be at least twice the tolerance ({2 * tolerance:g}s) so a replayed request "
            "is refused by one or the other",
        )
    require = reader.list_of(data, "require", lambda v: parse_extractor(str(v)))

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
        routes=tuple(routes),
        forward_headers=forward_headers,
        options=MappingProxyType(dict(options)),
    )


REDACTED = "***"
_SECRET_KEYS = re.compile(
    r"^(sources\.[^.]+\.secrets\[\d+\]|destinations\.[^.]+\.signing_secret|admin\.token|"
    r"store\.encryption_keys\[\d+\])$"
)


def _redact(node: object, key: str, templated: set[str], raw: object) -> object:
    """The effective config for display: secrets as ***, other references as written."""
    if isinstance(node, dict):
        raw_map = raw if isinstance(raw, dict) else {}
        return {
            k: _redact(v, f"{key}.{k}" if key else str(k), templated, raw_map.get(k))
            for k, v in node.items()
        }
    if isinstance(node, list):
        raw_list = raw if isinstance(raw, list) else []
        return [
            _redact(v, f"{key}[{i}]", templated, raw_list[i] if i < len(raw_list) else None)
            for i, v in enumerate(node)
        ]
    if _SECRET_KEYS.match(key):
        return REDACTED
    if key in templated:
        return raw  # show ${VAR} rather than what it resolved to (a URL may carry a password)
    return node


def _show_answers(redacted: dict[str, Any], sources: Mapping[str, SourceConfig]) -> None:
    """Put each source's delivery mode and ``ack_status`` in the printed config, defaults too:
    what a sender is answered is worth seeing even when the provider chose it."""
    for name, source in sources.items():
        shown = redacted["sources"][name]
        shown.setdefault("delivery", source.delivery)
        shown.setdefault("ack_status", source.ack_status)


_SERVER_KEYS = {
    "listen", "admin_listen", "workers", "trusted_proxies", "max_body_bytes", "header_timeout",
    "body_timeout", "shutdown_timeout", "delivery_concurrency", "delivery_lease",
    "delivery_poll_interval", "log_level",
}  # fmt: skip


def _server(reader: Reader, raw: object) -> ServerConfig:
    s = reader.mapping(raw, _SERVER_KEYS)
    d = ServerConfig()
    return ServerConfig(
        listen=reader.field(s, "listen", parse_host_port, d.listen),
        admin_listen=reader.field(s, "admin_listen", parse_host_port, d.admin_listen),
        workers=reader.field(s, "workers", positive_int, d.workers),
        trusted_proxies=reader.list_of(s, "trusted_proxies", parse_network),
        max_body_bytes=reader.field(s, "max_body_bytes", positive_int, d.max_body_bytes),
        header_timeout=reader.field(s, "header_timeout", parse_duration, d.header_timeout),
        body_timeout=reader.field(s, "body_timeout", parse_duration, d.body_timeout),
        shutdown_timeout=reader.field(s, "shutdown_timeout", parse_duration, d.shutdown_timeout),
        delivery_concurrency=reader.field(
            s, "delivery_concurrency", non_negative_int, d.delivery_concurrency
        ),
        delivery_lease=reader.field(s, "delivery_lease", parse_duration, None),
        delivery_poll_interval=reader.field(
            s, "delivery_poll_interval", parse_duration, d.delivery_poll_interval
        ),
        log_level=reader.field(
            s, "log_level", choice("debug", "info", "warning", "error"), d.log_level
        ),
    )


def _store(reader: Reader, raw: object) -> StoreConfig:
    st = reader.mapping(
        raw,
        {"url", "partitions", "wait_replicas", "wait_timeout", "encryption_keys", "retention"},
    )
    d = StoreConfig()
    store = StoreConfig(
        url=reader.field(st, "url", _store_url, d.url),
        partitions=reader.field(st, "partitions", _partitions, d.partitions),
        wait_replicas=reader.field(st, "wait_replicas", _wait_replicas, d.wait_replicas),
        wait_timeout=reader.field(st, "wait_timeout", parse_duration, d.wait_timeout),
        encryption_keys=reader.list_of(st, "encryption_keys", _encryption_key),
        retention=reader.field(st, "retention", parse_duration, d.retention),
    )
    _check_repeated_keys(reader, st.get("encryption_keys"))
    if store.partitions > 1 and store_kind(store.url) == "sqlite":
        reader.problem(
            reader.key("partitions"), "applies to Redis stores; a SQLite store is one part"
        )
    if store_kind(store.url) == "sqlite":
        for name in ("wait_replicas", "wait_timeout"):
            if name in st:
                reader.problem(
                    reader.key(name), "applies to Redis stores (replicas); SQLite has none"
                )
    if store.wait_timeout <= 0:
        reader.problem(reader.key("wait_timeout"), "must be longer than zero (e.g. 500ms)")
    if store.retention <= 0:
        reader.problem(reader.key("retention"), "must be longer than zero (e.g. 30d)")
    return store


#: More partitions than this only costs every worker's poll a longer read.
MAX_PARTITIONS = 1024


def _partitions(value: object) -> int:
    count = positive_int(value)
    if count > MAX_PARTITIONS:
        raise ValueError(f"at most {MAX_PARTITIONS}")
    return count


#: More replicas than this per master is no deployment anyone runs; a typo, surely.
MAX_WAIT_REPLICAS = 16


def _wait_replicas(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a whole number, 0 or more")
    if value > MAX_WAIT_REPLICAS:
        raise ValueError(f"at most {MAX_WAIT_REPLICAS}")
    return value


def _admin(reader: Reader, raw: object) -> AdminConfig:
    ad = reader.mapping(raw, {"token"})
    return AdminConfig(token=reader.field(ad, "token", _admin_token, None))


#: Fewest characters an admin token may have: it guards replay and redrive of payments.
MIN_ADMIN_TOKEN = 16


def _admin_token(value: object) -> Secret:
    token = secret(value)
    if len(token.value) < MIN_ADMIN_TOKEN:
        raise ValueError(f"must be at least {MIN_ADMIN_TOKEN} characters (a random string)")
    return token


def _plugins(reader: Reader, raw: object, base: Path) -> PluginsConfig:
    pl = reader.mapping(raw, {"paths"})
    return PluginsConfig(paths=reader.list_of(pl, "paths", lambda v: (base / str(v)).resolve()))


def _destination(reader: Reader, name: str, raw: object) -> DestinationConfig | None:
    """One destination, or ``None`` when it has problems (each reported at its key)."""
    before = len(reader.problems)
    if not NAME.match(name):
        reader.problem(reader.key(), "names use letters, digits, _ . -")
    dd = reader.mapping(raw, {"url", "signing_secret", "timeout", "format", "retry"})
    if "url" not in dd:
        reader.problem(reader.key("url"), "required")
    if "signing_secret" not in dd:
        reader.problem(
            reader.key("signing_secret"),
            "required: the destination verifies the gateway's signature with it",
        )
    url = reader.field(dd, "url", http_url, "")
    signing = reader.field(dd, "signing_secret", _signing_secret, None)
    destination = DestinationConfig(
        name=name,
        url=url,
        signing_secret=signing or Secret("-"),
        timeout=reader.field(dd, "timeout", parse_duration, 10.0),
        format=reader.field(dd, "format", choice("binary", "structured"), "binary"),
        retry=_retry(reader, dd.get("retry")),
    )
    return destination if len(reader.problems) == before else None


def _signing_secret(value: object) -> Secret:
    """A destination's ``whsec_`` secret: the gateway signs what it delivers with it."""
    parsed = secret(value)
    key = hmac_key(parsed)  # ValueError when it is not base64 of a key
    if len(key) < MIN_HMAC_KEY_BYTES:
        raise ValueError(f"a whsec_ key must decode to at least {MIN_HMAC_KEY_BYTES} bytes")
    return parsed


def _sources(
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


def _cross_checks(
    reader: Reader,
    server: ServerConfig,
    store: StoreConfig,
    destinations: Mapping[str, DestinationConfig],
    sources: Mapping[str, SourceConfig],
) -> None:
    """What no single section can check alone."""
    if server.delivery_lease is not None:
        for name, dest in destinations.items():
            if dest.timeout >= server.delivery_lease:
                # A lease shorter than the POST lets a second worker send the same delivery.
                reader.problem(
                    "server.delivery_lease",
                    f"must be longer than destinations.{name}.timeout ({dest.timeout:g}s)",
                )
    longest = max(sources.values(), key=lambda src: src.dedupe.window, default=None)
    if longest is not None and 0 < store.retention < longest.dedupe.window:
        # An operator looking into a "duplicate" answer must still find the event it repeats.
        reader.problem(
            "store.retention",
            f"must be at least the longest dedupe window (sources.{longest.name}.dedupe.window,"
            f" {longest.dedupe.window:g}s): the event a duplicate repeats must still be stored",
        )


def _parse_yaml(text: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        hint = ""
        if "::" in str(exc):
            hint = ' (quote IPv6 addresses inside [...] lists, e.g. ["::1/128"])'
        raise ConfigError.at("", f"config is not valid YAML{hint}: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError.at("", "config must be a YAML mapping at the top")
    return raw


def load_config_text(
    text: str,
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    registry: ProviderRegistry | None = None,
    source_path: Path | None = None,
) -> Config:
    """Parse config YAML; raise ``ConfigError`` listing every problem, each by its key."""
    raw = _parse_yaml(text)
    reader = Reader(os.environ if environ is None else environ)
    templated: set[str] = set()
    resolved = reader.resolve_tree(raw, "", templated)
    assert isinstance(resolved, dict)
    top = reader.mapping(
        resolved, {"server", "store", "admin", "plugins", "destinations", "sources"}
    )
    with reader.at("server"):
        server = _server(reader, top.get("server"))
    with reader.at("store"):
        store = _store(reader, top.get("store"))
    with reader.at("admin"):
        admin = _admin(reader, top.get("admin"))
    with reader.at("plugins"):
        plugins = _plugins(reader, top.get("plugins"), base_dir or Path.cwd())
    if registry is None:
        try:
            registry = load_registry(plugins.paths)
        except ConfigError as exc:
            reader.problems.extend(exc.problems)
            registry = load_registry((), use_entry_points=True)
    destinations: dict[str, DestinationConfig] = {}
    refused: set[str] = set()
    with reader.at("destinations"):
        raw_destinations = top.get("destinations") or {}
        # Any name is allowed here; a value that is not a mapping at all is reported by
        # mapping() (set() of an int or a string would raise, or allow its characters).
        names = set(map(str, raw_destinations)) if isinstance(raw_destinations, dict) else set()
        for name, raw_destination in reader.mapping(raw_destinations, names).items():
            with reader.at(name):
                destination = _destination(reader, name, raw_destination)
            if destination is None:
                refused.add(name)
            else:
                destinations[name] = destination
    with reader.at("sources"):
        sources = _sources(reader, top.get("sources"), registry, destinations, refused)
    _cross_checks(reader, server, store, destinations, sources)
    if reader.problems:
        raise ConfigError(reader.problems)
    redacted = _redact(resolved, "", templated, raw)
    assert isinstance(redacted, dict)
    _show_answers(redacted, sources)
    return Config(
        server=server,
        store=store,
        admin=admin,
        plugins=plugins,
        destinations=MappingProxyType(destinations),
        sources=MappingProxyType(sources),
        redacted=redacted,
        source_path=source_path,
    )


def load_config(path: Path | str, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError.at("", f"cannot read config {path}: {exc.strerror}") from exc
    return load_config_text(
        text, environ=environ, base_dir=path.resolve().parent, source_path=path.resolve()
    )
