"""The config loader, fed random YAML-ish mappings, random text and valid configs with one value
changed at random: it returns a ``Config`` or raises ``ConfigError``, never anything else (a
reload must not take the process down, and ``check-config`` must name the key)."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import load_config_text
from gateway.errors import ConfigError
from gateway.providers.registry import load_registry
from tests.fuzz.settings import fuzz
from tests.support import ENV, config_dict, payments_source

# Names the loader knows, so random mappings reach its sections rather than stop at "unknown key".
WORDS = [
    "server", "store", "admin", "plugins", "destinations", "sources", "listen", "admin_listen",
    "workers", "trusted_proxies", "url", "token", "path", "provider", "secrets", "tolerance",
    "allow_ips", "dedupe", "key", "window", "event", "id", "type", "subject", "time", "require",
    "delivery", "routes", "destination", "types", "signing_secret", "timeout", "retry",
    "schedule", "max_attempts", "max_age", "jitter", "format", "rate_limit", "options",
    "forward_headers", "ack_status", "max_body_bytes", "header_timeout", "body_timeout",
    "partitions", "encryption_keys", "delivery_lease", "delivery_poll_interval", "paths",
    "allow_unsigned", "marketplace", "payments", "standard-webhooks", "stripe", "hmac", "none",
    "sqlite:///x.db", "redis://127.0.0.1:1/0", "queued", "sync", "structured", "binary",
    "${PAYMENTS_WEBHOOK_SECRET}", "${MISSING}", "${file:/nonexistent}", "${", "5s", "72h",
    "300ms", "-1s", "0", "1e309", "127.0.0.1:8080", "[::1]:0", "10.0.0.0/8", "::/0",
    "header:webhook-id", "body:/id", "/id", "sha256", "payment.*",
]  # fmt: skip

SCALARS = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=20),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=25,
)

# Loaded once: the loader would otherwise scan the built-ins and entry points on every example.
REGISTRY = load_registry(use_entry_points=False)


def load(text: str) -> None:
    problems: tuple[object, ...] = ("loaded",)
    try:
        load_config_text(text, environ=ENV, registry=REGISTRY)
    except ConfigError as exc:
        problems = exc.problems
    assert problems, "a refusal names at least one problem"


@fuzz(150)
@given(st.dictionaries(st.sampled_from(WORDS), VALUES, max_size=6))
def test_random_mappings(data: dict[str, Any]) -> None:
    load(yaml.safe_dump(data))


@fuzz(100)
@given(st.text(max_size=200))
def test_random_text(text: str) -> None:
    load(text)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a nested mapping/list."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


VALID = config_dict(
    "http://127.0.0.1:1/api/webhooks/payments",
    store_url="sqlite:///gateway.db",
    sources={
        "payments": payments_source(forward_headers=["X-Trace"]),
        "stripe": {
            "path": "/hooks/stripe",
            "provider": "stripe",
            "secrets": ["whsec_test_current"],
            "routes": [{"destination": "marketplace"}],
        },
    },
)
VALID_PATHS = paths(VALID)


@fuzz(150)
@given(where=st.sampled_from(VALID_PATHS), value=VALUES, drop=st.booleans())
def test_valid_config_with_one_value_changed(where: tuple[Any, ...], value: Any, drop: bool):
    data = copy.deepcopy(VALID)
    parent = data
    for step in where[:-1]:
        parent = parent[step]
    if drop:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    load(yaml.safe_dump(data))
