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
from typing import Any, TypeVar

import yaml

from gateway.config.destinations import parse_destination
from gateway.config.model import (
    AdminConfig,
    Config,
    DestinationConfig,
    PluginsConfig,
    ServerConfig,
    SourceConfig,
    StoreConfig,
)
from gateway.config.reader import (
    Reader,
    choice,
    non_negative_int,
    parse_duration,
    parse_host_port,
    parse_network,
    positive_int,
    secret,
)
from gateway.config.sources import parse_sources
from gateway.config.status import parse_status
from gateway.errors import ConfigError
from gateway.providers.registry import ProviderRegistry, load_registry
from gateway.redisio.sentinel import parse_sentinel_url
from gateway.secret import Secret
from gateway.store.crypto import parse_key
from gateway.store.urls import describe_schemes, store_kind

T = TypeVar("T")


def _encryption_key(value: object) -> Secret:
    """A ``store.encryption_keys`` entry: base64 of 32 bytes (design.md 5.4); errors omit it."""
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


REDACTED = "***"
_SECRET_KEYS = re.compile(
    r"^(sources\.[^.]+\.secrets\[\d+\]|destinations\.[^.]+\.signing_secret|admin\.token|"
    r"store\.encryption_keys\[\d+\]|status\.secret|"
    r"sources\.[^.]+\.reconcile\.from\.(secret|api_key|headers\..+))$"
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
        resolved, {"server", "store", "admin", "plugins", "destinations", "sources", "status"}
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
                destination = parse_destination(reader, name, raw_destination)
            if destination is None:
                refused.add(name)
            else:
                destinations[name] = destination
    with reader.at("sources"):
        sources = parse_sources(reader, top.get("sources"), registry, destinations, refused)
    with reader.at("status"):
        status = parse_status(reader, top.get("status"), sources)
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
        status=status,
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
