"""The ``status:`` block (design.md 5.10): off without it, every problem named by its key,
the secret redacted and never short."""

from __future__ import annotations

import pytest
import yaml

from gateway.config.status import parse_origin
from gateway.errors import ConfigError
from tests.support import build_config, config_dict, payments_source

SECRET = "status-secret-for-tests-0123456789abcdef"


def _config(status: object, **kw) -> dict:
    data = config_dict(
        "http://127.0.0.1:8000/api/webhooks/payments", store_url="sqlite:///x.db", **kw
    )
    data["status"] = status
    return data


def _problems(data: dict, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_config(data, env)
    return [str(p) for p in info.value.problems]


def test_off_unless_configured():
    config = build_config(_config(None))
    assert config.status is None


def test_a_full_block_with_its_defaults():
    config = build_config(
        _config(
            {
                "secret": "${STATUS_TOKEN_SECRET}",
                "allow_origins": ["https://Market.Example", "http://localhost:8000/"],
            }
        ),
        {"STATUS_TOKEN_SECRET": SECRET},
    )
    status = config.status
    assert status is not None
    assert status.secret.value == SECRET
    assert status.allow_origins == {"https://market.example", "http://localhost:8000"}
    assert (status.max_streams, status.max_streams_per_ip) == (1000, 32)
    shown = yaml.safe_dump(dict(config.redacted))
    assert SECRET not in shown
    assert config.redacted["status"]["secret"] == "***"
    assert SECRET not in repr(config)


def test_caps_are_read():
    config = build_config(
        _config(
            {
                "secret": SECRET,
                "allow_origins": ["https://market.example"],
                "max_streams": 5,
                "max_streams_per_ip": 2,
            }
        )
    )
    assert config.status is not None
    assert (config.status.max_streams, config.status.max_streams_per_ip) == (5, 2)


def test_every_problem_is_named_by_its_key():
    problems = _problems(
        _config(
            {
                "secret": "short",
                "allow_origins": ["*", "ftp://x", "https://market.example/pay", 7],
                "max_streams": 0,
                "max_streams_per_ip": "many",
                "colour": "blue",
            }
        )
    )
    assert any(p.startswith("status.colour: unknown key") for p in problems), problems
    assert any(p.startswith("status.secret: must be at least 32 bytes") for p in problems)
    assert any(p.startswith("status.allow_origins[0]: a wildcard") for p in problems)
    assert any(p.startswith("status.allow_origins[1]: ") for p in problems)
    assert any(p.startswith("status.allow_origins[2]: ") for p in problems)
    assert any(p.startswith("status.allow_origins[3]: ") for p in problems)
    assert "status.max_streams: expected a positive integer" in problems
    assert "status.max_streams_per_ip: expected a positive integer" in problems
    # A problem names its key and never quotes the secret.
    assert not any("short" in p for p in problems)


def test_secret_and_origins_are_required():
    problems = _problems(_config({"max_streams": 10}))
    assert any(p.startswith("status.secret: required") for p in problems), problems
    assert any(p.startswith("status.allow_origins: required") for p in problems), problems
    assert _problems(_config(["a list"])) == ["status: expected a mapping, got list"]


def test_a_missing_secret_variable_is_reported_once():
    # A name the test environment does not set (it sets STATUS_TOKEN_SECRET for config.yaml).
    problems = _problems(
        _config({"secret": "${STATUS_SECRET_UNSET}", "allow_origins": ["https://m.example"]})
    )
    assert problems == ["status.secret: environment variable STATUS_SECRET_UNSET is not set"]


def test_a_secret_counts_bytes_not_characters():
    # 16 characters of two bytes each: 32 bytes, enough.
    config = build_config(_config({"secret": "é" * 16, "allow_origins": ["https://m.example"]}))
    assert config.status is not None


def test_needs_a_source_that_keeps_payments():
    source = payments_source()
    del source["payment"]
    problems = _problems(
        _config(
            {"secret": SECRET, "allow_origins": ["https://m.example"]},
            sources={"payments": source},
        )
    )
    assert problems == [
        "status: no source keeps payments (a source's payment: block), so there is no status"
        " to show"
    ]


def test_refuses_source_names_one_token_could_fit_both():
    sources = {
        "pay": payments_source(),
        "pay.eu": payments_source(path="/hooks/eu"),
    }
    problems = _problems(
        _config({"secret": SECRET, "allow_origins": ["https://m.example"]}, sources=sources)
    )
    assert len(problems) == 1 and problems[0].startswith("status: sources pay and pay.eu:")
    # The same names without status are fine: no token is ever read.
    assert build_config(_config(None, sources=sources)).status is None


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://market.example", "https://market.example"),
        ("HTTPS://MARKET.example:443", "https://market.example"),
        ("http://market.example:80/", "http://market.example"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_origins_are_written_as_browsers_send_them(given, origin):
    assert parse_origin(given) == origin


@pytest.mark.parametrize(
    "bad",
    [
        "market.example",
        "https://",
        "https://market.example?x=1",
        "https://user@market.example",
        "https://market.example:99999",
        "null",
    ],
)
def test_bad_origins(bad):
    with pytest.raises(ValueError, match="origin"):
        parse_origin(bad)
