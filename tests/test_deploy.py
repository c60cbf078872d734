"""The shipped deployment configs load with the real loader, so they cannot rot unnoticed."""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.config import load_config, load_config_text
from tests.support import ENV

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
REPLICA_ENV = {
    **ENV,
    "REDIS_URL": "redis://redis:6379/0",
    "MARKETPLACE_URL": "http://marketplace:8000/api/webhooks/payments",
}


def test_compose_config_loads():
    config = load_config(DEPLOY / "config.yaml", environ=REPLICA_ENV)
    assert config.store.url.startswith("redis://")
    assert config.server.admin_listen.host == "0.0.0.0"


def test_kubernetes_configmap_config_loads(tmp_path):
    configmap = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())
    text = configmap["data"]["config.yaml"]
    secrets = {
        "payments-webhook-secret": ENV["PAYMENTS_WEBHOOK_SECRET"],
        "marketplace-webhook-secret": ENV["MARKETPLACE_WEBHOOK_SECRET"],
        "admin-token": ENV["GATEWAY_ADMIN_TOKEN"],
    }
    for name, value in secrets.items():
        (tmp_path / name).write_text(value + "\n")  # mounted Secret files end in a newline
    text = text.replace("/var/run/secrets/webhook-gateway", str(tmp_path))
    config = load_config_text(text, environ={"REDIS_URL": "redis://redis:6379/0"})
    assert config.sources["payments"].secrets[0].value == ENV["PAYMENTS_WEBHOOK_SECRET"]
    assert config.admin.token is not None
    assert config.admin.token.value == ENV["GATEWAY_ADMIN_TOKEN"]
