"""`sign` works for every built-in provider: its headers pass that provider's own verify."""

from __future__ import annotations

import subprocess
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


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_sign_curl_arguments_survive_a_shell(config_path, capsys, name):
    # A real shell reads the line (a Rafiki signature holds a space, "t=..., v1=..."): each
    # header must come back as one argument after -H, and still verify.
    assert main(["sign", name, "--curl", "--config", str(config_path)]) == 0
    captured = capsys.readouterr()
    [line] = captured.out.splitlines()
    shell = subprocess.run(
        ["bash", "-c", f'eval "set -- {line}"; printf \'%s\\n\' "$@"'],
        capture_output=True,
        text=True,
        check=True,
    )
    words = shell.stdout.splitlines()
    assert words[0::2] == ["-H"] * (len(words) // 2)
    headers = dict(word.split(": ", 1) for word in words[1::2])
    body = captured.err.strip().splitlines()[-1].encode()
    source = load_config(config_path).sources[name]
    source.verifier.verify(body, headers, source.secrets, time.time())
