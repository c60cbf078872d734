"""deploy/prometheus and deploy/grafana: the rules and the Prometheus config pass promtool, the
alert unit tests in alerts.test.yml pass, and every metric they or the dashboard name is one the
gateway exports (so a renamed metric cannot leave an alert that never fires)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from prometheus_client import generate_latest

from gateway.metrics import Metrics
from tests.deploy.files import GRAFANA, PROMETHEUS, tool

METRIC = re.compile(r"\b(webhook_gateway_[a-z0-9_]+)")
DASHBOARD = GRAFANA / "webhook-gateway.json"
#: Grafana's variables, replaced by values Prometheus accepts before promtool parses a query.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__range": "1h",
    "$source": ".*",
    "$destination": ".*",
}


def _promtool(*args: str, cwd=PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def _exported_metrics() -> set[str]:
    metrics = Metrics()
    metrics.declare(
        {"payments": "queued", "partner": "sync"}, ["marketplace"], ["payments"], ["payments"]
    )
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}


def _rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [
        v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    ]
    return queries


def test_promtool_accepts_the_rules_and_the_prometheus_config():
    rules = _promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = _promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_unit_tests_pass():
    result = _promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_the_runbook_fields():
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    tested = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]
    }
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts == tested, "each alert is shown firing at least once in alerts.test.yml"
    for rule in _rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_the_alerts_cover_what_operators_must_hear_about():
    exprs = " ".join(rule["expr"] for rule in _rules())
    for needle in (
        'result="dead_lettered"',  # dead letters growing
        'result=~"retried|dead_lettered"',  # delivery failure ratio
        'state="due"',  # the due queue growing (no oldest-due-age metric exists)
        "webhook_gateway_signature_failures_total",  # signature-failure spike
        'outcome="unavailable"',  # store unreachable
        'outcome="unrouted"',  # events no route takes
        'up{job="webhook-gateway"}',  # gateway down
        'outcome=~"accepted|forwarded|duplicate"',  # a source gone quiet
        'webhook_gateway_reconcile_runs_total{result="failure"}',  # reconciliation failing
        "webhook_gateway_reconcile_last_success_timestamp_seconds",  # reconciliation stale
        'result=~"missing|mismatch"',  # payments a reconciliation left behind
    ):
        assert needle in exprs, needle


def test_a_broken_rule_fails_promtool(tmp_path):
    broken = tmp_path / "alerts.yml"
    broken.write_text((PROMETHEUS / "alerts.yml").read_text().replace("[5m])) > 0", "[5m]) > 0", 1))
    assert _promtool("check", "rules", str(broken), cwd=tmp_path).returncode != 0


def test_rules_and_dashboard_name_only_metrics_the_gateway_exports():
    exported = _exported_metrics()
    assert "webhook_gateway_requests_total" in exported
    named = set()
    for text in [rule["expr"] for rule in _rules()] + _dashboard_queries():
        named |= set(METRIC.findall(text))
    unknown = named - exported
    assert not unknown, f"not exported by gateway.metrics: {sorted(unknown)}"
    # The dashboard shows every metric of design.md 5.5 (histograms through their buckets).
    dashboard_names = {m for q in _dashboard_queries() for m in METRIC.findall(q)}
    family = {name.removesuffix("_bucket") for name in dashboard_names}
    for design_metric in (
        "webhook_gateway_requests_total",
        "webhook_gateway_request_duration_seconds",
        "webhook_gateway_deliveries_total",
        "webhook_gateway_delivery_duration_seconds",
        "webhook_gateway_event_delivery_latency_seconds",
        "webhook_gateway_queue_depth",
        "webhook_gateway_signature_failures_total",
        "webhook_gateway_config_reloads_total",
        "webhook_gateway_build_info",
    ):
        assert design_metric in family, design_metric


def test_dashboard_is_grafana_json_whose_queries_promql_accepts(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    # promtool parses PromQL only inside rule files: each panel query becomes a recording rule.
    rules = []
    for index, target in enumerate(t for p in dashboard["panels"] for t in p["targets"]):
        expr = target["expr"]
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variable", ["source", "destination"])
def test_dashboard_variables_come_from_series_that_exist_from_start(variable):
    dashboard = json.loads(DASHBOARD.read_text())
    query = next(v for v in dashboard["templating"]["list"] if v["name"] == variable)
    metric = METRIC.search(query["query"]["query"])
    assert metric and metric.group(1) in _exported_metrics()
