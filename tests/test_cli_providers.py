"""`sign` works for every built-in provider: its headers pass that provider's own verify."""

from __future__ import annotations

import time

import pytest
import yaml

from gateway.cli import main
from gateway.config import load_config
from tests.support import ENV, config_dict

SOURCES = {
    "stripe": {"provider": "stripe", "secrets": ["whsec_test_stripe_secret_0123456789"]},
    "github": {"provider": "github", "secrets": ["gh-secret-0123456789abcdef"]},
    "shopify": {"provider": "shopify", "secrets": ["shpss_secret0123456789"]},
    "slack": {"provider": "slack", "secrets": ["8f742231b10e8888abcd99yyyzzz85a5"]},
    "rafiki": {"provider": "rafiki", "secrets": ["rafiki-secret-0123456789"]},
    "standard": {"provider": "standard-webhooks", "secrets": ["${PAYMENTS_WEBHOOK_SECRET}"]},
    "partner": {
        "provider": "hmac",
        "secrets": ["partner-secret-0123456789"],
        "options": {
            "header": "X-Signature",
            "algorithm": "sha512",
            "encoding": "hex",
            "prefix": "sha512=",
            "timestamp_header": "X-Timestamp",
            "signed_payload": "{timestamp}.{body}",
        },
    },
    "ops": {
        "provider": "bearer",
        "secrets": ["ops-token-0123456789abcdef"],
        "options": {"header": "Authorization", "scheme": "Bearer"},
    },
}


@pytest.fixture
def config_path(tmp_path, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    sources = {
        name: {**spec, "path": f"/hooks/{name}", "routes": [{"destination": "marketplace"}]}
        for name, spec in SOURCES.items()
    }
    data = config_dict("http://127.0.0.1:9/x", store_url="sqlite:///x.db", sources=sources)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_sign_output_verifies(config_path, capsys, name):
    assert main(["sign", name, "--config", str(config_path)]) == 0
    captured = capsys.readouterr()
    headers = dict(line.split(": ", 1) for line in captured.out.splitlines() if ": " in line)
    body = captured.err.strip().splitlines()[-1].encode()  # the sample body goes to stderr
    source = load_config(config_path).sources[name]
    source.verifier.verify(body, headers, source.secrets, time.time())
