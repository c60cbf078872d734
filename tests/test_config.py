"""Config loading: typed values, every error named by its key, secrets redacted (design.md 6)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from gateway.config import load_config, load_config_text
from gateway.config.reader import parse_duration, parse_host_port, parse_network
from gateway.errors import ConfigError
from tests.support import ENV, build_config, config_dict, payments_source

REPO = Path(__file__).resolve().parents[1]


def _problems(data: dict, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_config(data, env)
    return [str(p) for p in info.value.problems]


def _base(**kw) -> dict:
    return config_dict(
        "http://127.0.0.1:8000/api/webhooks/payments", store_url="sqlite:///x.db", **kw
    )


def test_the_shipped_config_loads_with_the_design_values():
    config = load_config(REPO / "config.yaml", environ=ENV)
    source = config.sources["payments"]
    assert source.path == "/hooks/payments"
    assert source.provider == "standard-webhooks"
    assert source.tolerance == 300
    assert source.dedupe.window == 72 * 3600
    assert str(source.dedupe.key) == "[/type, /pendingId]"
    assert source.payment is not None and source.payment.key.spelled == "/pendingId"
    assert source.rate_limit.per_ip is not None and source.rate_limit.per_ip.burst == 200
    assert source.delivery == "queued"
    assert source.destinations_for("payment.completed") == ("marketplace",)
    assert source.destinations_for("refund.created") == ()
    assert ipaddress.ip_network("::1/128") in source.allow_ips
    destination = config.destinations["marketplace"]
    assert destination.timeout == 10
    assert destination.retry.schedule[:3] == (5, 30, 120)
    assert destination.retry.max_age == 72 * 3600
    assert config.server.admin_listen.host == "127.0.0.1"
    assert config.server.admin_listen.port == 9090


def test_missing_environment_variable_is_named_by_key():
    env = {k: v for k, v in ENV.items() if k != "PAYMENTS_WEBHOOK_SECRET"}
    with pytest.raises(ConfigError) as info:
        load_config_text(yaml.safe_dump(_base()), environ=env)
    assert (
        "sources.payments.secrets[0]: environment variable PAYMENTS_WEBHOOK_SECRET is not set"
        in str(info.value)
    )


def test_secret_from_a_file(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(ENV["PAYMENTS_WEBHOOK_SECRET"] + "\n")
    data = _base(sources={"payments": payments_source(secrets=[f"${{file:{secret_file}}}"])})
    config = build_config(data)
    assert config.sources["payments"].secrets[0].value == ENV["PAYMENTS_WEBHOOK_SECRET"]
    missing = _base(sources={"payments": payments_source(secrets=["${file:/nonexistent/x}"])})
    assert any(
        p.startswith("sources.payments.secrets[0]: cannot read secret file")
        for p in _problems(missing)
    )


def test_unknown_keys_are_errors_not_ignored():
    data = _base(server={"listne": "0.0.0.0:8080"})
    data["sources"]["payments"]["alow_ips"] = []
    problems = _problems(data)
    assert any(p.startswith("server.listne: unknown key") for p in problems)
    assert any(p.startswith("sources.payments.alow_ips: unknown key") for p in problems)


def test_every_problem_is_reported_at_once():
    data = _base(server={"max_body_bytes": -1, "listen": "nowhere"})
    data["destinations"]["marketplace"]["timeout"] = "ten seconds"
    data["sources"]["payments"]["provider"] = "carrier-pigeon"
    problems = _problems(data)
    assert any(p.startswith("server.max_body_bytes:") for p in problems)
    assert any(p.startswith("server.listen:") for p in problems)
    assert any(p.startswith("destinations.marketplace.timeout:") for p in problems)
    assert any(
        p.startswith("sources.payments.provider: unknown provider 'carrier-pigeon'")
        for p in problems
    )


def test_values_are_validated():
    data = _base()
    source = data["sources"]["payments"]
    source["allow_ips"] = ["10.0.0.0/33"]
    source["rate_limit"] = {"per_ip": {"rate": "fast", "burst": 0}}
    source["event"] = {"type": "type"}
    problems = _problems(data)
    assert any(p.startswith("sources.payments.allow_ips[0]:") for p in problems)
    assert any(p.startswith("sources.payments.rate_limit.per_ip.rate:") for p in problems)
    assert any(p.startswith("sources.payments.rate_limit.per_ip.burst:") for p in problems)
    assert any(p.startswith("sources.payments.event.type:") for p in problems)


def test_values_of_the_wrong_yaml_type_are_problems_not_crashes():
    # Found by tests/fuzz/test_config.py: a scalar under destinations raised TypeError, and a
    # number or a list as an event extractor raised AttributeError.
    data = _base()
    data["destinations"] = 1
    assert "destinations: expected a mapping, got int" in _problems(data)
    data = _base()
    data["sources"]["payments"]["event"] = {"type": 5, "time": []}
    problems = _problems(data)
    assert any(
        p.startswith("sources.payments.event.type: '5' is not an extractor") for p in problems
    )
    assert any(
        p.startswith("sources.payments.event.time: '[]' is not an extractor") for p in problems
    )


def test_dedupe_window_shorter_than_twice_the_tolerance_is_refused():
    data = _base(sources={"payments": payments_source(tolerance="5m", dedupe={"window": "9m"})})
    assert any(
        p.startswith("sources.payments.dedupe.window: must be at least twice")
        for p in _problems(data)
    )
    ok = _base(sources={"payments": payments_source(tolerance="5m", dedupe={"window": "10m"})})
    assert build_config(ok).sources["payments"].dedupe.window == 600


def test_sync_delivery_must_name_exactly_one_destination():
    data = _base()
    data["destinations"]["audit"] = dict(data["destinations"]["marketplace"])
    data["sources"]["payments"]["delivery"] = "sync"
    data["sources"]["payments"]["routes"] = [
        {"destination": "marketplace", "types": ["payment.*"]},
        {"destination": "audit", "types": ["*"]},
    ]
    assert any(p.startswith("sources.payments.routes: delivery: sync") for p in _problems(data))
    data["sources"]["payments"]["delivery"] = "queued"
    assert build_config(data).sources["payments"].destinations_for("payment.x") == (
        "marketplace",
        "audit",
    )


RAFIKI_SOURCE = {
    "path": "/hooks/rafiki",
    "provider": "rafiki",
    "secrets": ["rafiki-test-secret-0123456789"],
    "routes": [{"destination": "marketplace"}],
}


def test_ack_status_comes_from_the_provider_unless_the_source_sets_it():
    sources = {"payments": payments_source(), "rafiki": dict(RAFIKI_SOURCE)}
    config = build_config(_base(sources=sources))
    # Rafiki counts only 200 as delivered (validateStatus: status === 200).
    assert config.sources["rafiki"].ack_status == 200
    assert config.sources["payments"].ack_status == 202
    # check-config shows the answer each source gives, chosen or defaulted.
    assert config.redacted["sources"]["rafiki"]["ack_status"] == 200
    assert config.redacted["sources"]["payments"]["ack_status"] == 202
    sources["payments"] = payments_source(ack_status=200)
    sources["rafiki"] = {**RAFIKI_SOURCE, "ack_status": 202}
    config = build_config(_base(sources=sources))
    assert config.sources["payments"].ack_status == 200
    assert config.sources["rafiki"].ack_status == 202


@pytest.mark.parametrize("bad", [201, 204, "200", True, None, [200]], ids=repr)
def test_ack_status_is_200_or_202(bad):
    data = _base(sources={"payments": payments_source(ack_status=bad)})
    if bad is None:  # an empty value means the default
        assert build_config(data).sources["payments"].ack_status == 202
        return
    assert any(
        p.startswith("sources.payments.ack_status: expected 200 or 202") for p in _problems(data)
    )


def test_route_to_an_unknown_destination_is_refused():
    data = _base(sources={"payments": payments_source(routes=[{"destination": "nowhere"}])})
    assert any(
        p.startswith("sources.payments.routes[0].destination: unknown destination")
        for p in _problems(data)
    )


def test_provider_none_needs_allow_unsigned_and_allow_ips():
    source = {"path": "/hooks/open", "provider": "none", "routes": [{"destination": "marketplace"}]}
    problems = _problems(_base(sources={"open": source}))
    assert any(p.startswith("sources.open.provider: provider none") for p in problems)
    source.update(allow_unsigned=True, allow_ips=["10.1.0.0/16"])
    config = build_config(_base(sources={"open": source}))
    assert not config.sources["open"].verifier.authenticates


def test_destination_signing_secret_must_be_a_standard_webhooks_secret():
    data = _base()
    data["destinations"]["marketplace"]["signing_secret"] = "whsec_not*base64"
    assert any(p.startswith("destinations.marketplace.signing_secret:") for p in _problems(data))


def test_duplicate_source_paths_are_refused():
    data = _base(sources={"a": payments_source(), "b": payments_source()})
    assert any(p.startswith("sources.b.path: /hooks/payments is already") for p in _problems(data))


def test_redacted_view_hides_secrets_and_keeps_references():
    data = _base()
    data["store"]["url"] = "redis://:${REDIS_PASSWORD}@localhost:6379/0"
    config = build_config(data, {"REDIS_PASSWORD": "hunter2"})
    text = yaml.safe_dump(dict(config.redacted))
    assert "hunter2" not in text
    for value in ENV.values():
        assert value not in text
    assert config.redacted["sources"]["payments"]["secrets"] == ["***"]
    assert config.redacted["store"]["url"] == "redis://:${REDIS_PASSWORD}@localhost:6379/0"
    assert config.store.url == "redis://:hunter2@localhost:6379/0"
    assert "hunter2" not in repr(config)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300ms", 0.3), ("5s", 5), ("10m", 600), ("72h", 259200), ("1d", 86400), (30, 30)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["5", "five seconds", "-1s", "1w", True])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_listen_addresses_and_networks():
    assert parse_host_port("[::]:8080").host == "::"
    assert parse_host_port("0.0.0.0:9090").port == 9090
    with pytest.raises(ValueError):
        parse_host_port("8080")
    # IPv4-mapped IPv6 networks become their IPv4 form, so either spelling matches.
    assert parse_network("::ffff:10.0.0.0/104") == ipaddress.ip_network("10.0.0.0/8")
    assert parse_network("192.0.2.5") == ipaddress.ip_network("192.0.2.5/32")


def test_a_missing_variable_is_reported_once_at_its_cause():
    # Not again as an empty secret, an URL that is not one, or a route to a destination that
    # "does not exist" because its own values were refused.
    data = _base()
    data["destinations"]["marketplace"]["url"] = "${MARKETPLACE_URL}"
    env = {k: v for k, v in ENV.items() if k not in ("PAYMENTS_WEBHOOK_SECRET",)}
    env.pop("MARKETPLACE_WEBHOOK_SECRET")
    with pytest.raises(ConfigError) as info:
        load_config_text(yaml.safe_dump(data), environ=env)
    assert sorted(str(p) for p in info.value.problems) == [
        "destinations.marketplace.signing_secret: environment variable"
        " MARKETPLACE_WEBHOOK_SECRET is not set",
        "destinations.marketplace.url: environment variable MARKETPLACE_URL is not set",
        "sources.payments.secrets[0]: environment variable PAYMENTS_WEBHOOK_SECRET is not set",
    ]


def test_a_refused_destination_silences_only_routes_to_it():
    data = _base()
    data["destinations"]["marketplace"]["timeout"] = "soon"
    data["sources"]["payments"]["routes"].append({"destination": "nowhere"})
    problems = _problems(data)
    assert problems[0].startswith("destinations.marketplace.timeout:")
    # The route to the refused destination is quiet; a name defined nowhere is still named.
    assert problems[1:] == [
        "sources.payments.routes[1].destination: unknown destination 'nowhere' (known: none defined)"
    ]


def test_secret_problems_are_reported_at_their_own_index():
    data = _base(sources={"payments": payments_source(secrets=["${NOT_SET}", "whsec_not*base64"])})
    problems = _problems(data)
    assert problems[0] == "sources.payments.secrets[0]: environment variable NOT_SET is not set"
    assert problems[1].startswith("sources.payments.secrets[1]:")
    assert len(problems) == 2


@pytest.mark.parametrize(
    ("key", "source", "env"),
    [
        ("sources.payments.secrets[0]", {"secrets": ["whsec_AQ=="]}, {}),
        ("sources.gh.secrets[0]", {"provider": "github", "secrets": ["x"]}, {}),
        ("sources.st.secrets[0]", {"provider": "stripe", "secrets": ["whsec_1"]}, {}),
        ("admin.token", None, {"GATEWAY_ADMIN_TOKEN": "x"}),
        (
            "destinations.marketplace.signing_secret",
            None,
            {"MARKETPLACE_WEBHOOK_SECRET": "whsec_AQ=="},
        ),
    ],
    ids=["whsec-1-byte", "github-1-char", "stripe-1-char", "admin-token", "signing-secret"],
)
def test_weak_secrets_are_refused_by_key(key, source, env):
    sources = {"payments": payments_source()}
    if source is not None:
        name = key.split(".")[1]
        sources[name] = payments_source(path=f"/hooks/{name}", **source)
    problems = _problems(_base(sources=sources), env)
    assert any(p.startswith(f"{key}:") for p in problems), problems


@pytest.mark.parametrize(
    "name",
    ["ce-id", "Webhook-Signature", "X-Request-ID", "x-gateway-attempt", "Connection", "Host"],
)
def test_forward_headers_cannot_name_what_the_gateway_writes(name):
    data = _base(sources={"payments": payments_source(forward_headers=["X-GitHub-Event", name])})
    assert any(p.startswith("sources.payments.forward_headers[1]:") for p in _problems(data))


def test_store_partitions():
    data = _base()
    data["store"] = {"url": "redis+cluster://redis:6379", "partitions": 16}
    assert build_config(data).store.partitions == 16
    for bad in (0, -1, "many", 5000):
        data["store"]["partitions"] = bad
        assert any(p.startswith("store.partitions:") for p in _problems(data)), bad
    data["store"] = {"url": "sqlite:///x.db", "partitions": 4}
    assert any(p.startswith("store.partitions: applies to Redis") for p in _problems(data))


def test_store_wait_replicas():
    data = _base()
    data["store"] = {"url": "redis://redis:6379", "wait_replicas": 1, "wait_timeout": "250ms"}
    store = build_config(data).store
    assert (store.wait_replicas, store.wait_timeout) == (1, 0.25)
    assert build_config(_base()).store.wait_replicas == 0  # asynchronous replication trusted
    for bad in (-1, 1.5, "one", True, 17):
        data["store"]["wait_replicas"] = bad
        assert any(p.startswith("store.wait_replicas:") for p in _problems(data)), bad
    data["store"] = {"url": "redis://redis:6379", "wait_timeout": "0s"}
    assert any(p.startswith("store.wait_timeout:") for p in _problems(data))
    data["store"] = {"url": "sqlite:///x.db", "wait_replicas": 1}
    assert any(p.startswith("store.wait_replicas: applies to Redis") for p in _problems(data))


def test_delivery_concurrency_zero_makes_an_ingress_only_process():
    data = _base(server={"delivery_concurrency": 0})
    assert build_config(data).server.delivery_concurrency == 0
    assert build_config(_base()).server.delivery_concurrency == 16
    for bad in (-1, 1.5, "many", True):
        data["server"]["delivery_concurrency"] = bad
        assert any(p.startswith("server.delivery_concurrency:") for p in _problems(data)), bad
