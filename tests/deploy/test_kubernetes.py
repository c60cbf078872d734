"""deploy/kubernetes: every manifest valid against the Kubernetes API schemas (strict, so an
unknown or misspelt field fails), and the parts agree with each other and with the config."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.config import load_config_text
from tests.deploy.files import KUBERNETES, env_references, file_references, manifests, resource

#: The oldest Kubernetes these manifests promise to work on (preStop sleep is GA in 1.30).
KUBERNETES_VERSION = "1.30.0"
#: Custom resources the API schemas do not describe: checked by structure below instead.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
NAME = {"app.kubernetes.io/name": "webhook-gateway"}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc) for name, docs in manifests().items() for doc in docs]


@pytest.mark.parametrize(
    "document",
    [doc for _, doc in _documents() if doc["kind"] != "Kustomization"],
    ids=lambda doc: doc["kind"],
)
def test_manifest_is_valid_for_the_api(document):
    if (document["apiVersion"], document["kind"]) in CUSTOM_KINDS:
        return  # see test_service_monitor_scrapes_the_admin_port_of_the_service
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_misspelt_field():
    deployment = resource("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example():
    listed = set(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.example.yaml"}
    kinds = {doc["kind"] for name, doc in _documents() if name in listed}
    assert kinds >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "ServiceMonitor",
        "NetworkPolicy",
    }


def _container() -> dict[str, Any]:
    return resource("Deployment")["spec"]["template"]["spec"]["containers"][0]


def _configmap_config():
    text = resource("ConfigMap")["data"]["config.yaml"]
    data = yaml.safe_load(text)
    return data, text


def test_probes_ask_the_admin_port():
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    data, _ = _configmap_config()
    assert data["server"]["admin_listen"] == f"0.0.0.0:{ports['admin']}"
    assert data["server"]["listen"] == f"0.0.0.0:{ports['http']}"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}


def test_pods_are_locked_down_and_sized():
    pod = resource("Deployment")["spec"]["template"]["spec"]
    container = _container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == NAME


def test_termination_grace_outlasts_pre_stop_and_shutdown(tmp_path):
    # Kubernetes kills the pod when the grace period ends, whatever the gateway is doing.
    pod = resource("Deployment")["spec"]["template"]["spec"]
    shutdown = _load_configmap_config(tmp_path).server.shutdown_timeout
    pre_stop = _container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + shutdown


def test_selectors_agree():
    deployment = resource("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        selector = resource(kind)["spec"].get("selector") or resource(kind)["spec"]["podSelector"]
        assert selector["matchLabels"].items() <= labels.items(), kind
    assert resource("Service")["spec"]["selector"].items() <= labels.items()
    target = resource("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert (
        resource("HorizontalPodAutoscaler")["spec"]["minReplicas"]
        > resource("PodDisruptionBudget")["spec"]["minAvailable"]
    )


def test_service_monitor_scrapes_the_admin_port_of_the_service():
    monitor = resource("ServiceMonitor")
    service = resource("Service")
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert endpoint["path"] == "/metrics"
        assert service_ports[endpoint["port"]]["targetPort"] == "admin"


def test_network_policy_opens_ingress_to_the_balancer_and_admin_to_prometheus():
    policy = resource("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    by_port = {rule["ports"][0]["port"]: rule for rule in policy["ingress"]}
    assert set(by_port) == {"http", "admin"}, "no other port is open"
    assert all(len(rule["ports"]) == 1 and rule.get("from") for rule in policy["ingress"])
    assert by_port["http"]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "ingress-nginx"
    }
    assert by_port["admin"]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "prometheus"
    }


def test_configmap_config_reads_only_what_the_deployment_provides():
    """Every ${VAR} is in the container's env and every ${file:} a mounted Secret item."""
    _, text = _configmap_config()
    container = _container()
    env_from_secret = _env_from_secret()
    assert env_references(text) == set(env_from_secret)
    mounted = _mounted_secret_files()
    assert file_references(text) == set(mounted)
    secret = resource("Secret")["stringData"]
    assert set(mounted.values()) | set(env_from_secret.values()) == set(secret)
    assert all(not e.get("value") for e in container.get("env", [])), "secrets only from the Secret"


def _env_from_secret() -> dict[str, str]:
    return {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in _container().get("env", [])}


def _mounted_secret_files() -> dict[str, str]:
    """Path in the container -> Secret key, for the secret volume's items."""
    pod = resource("Deployment")["spec"]["template"]["spec"]
    mount = next(m for m in _container()["volumeMounts"] if m["name"] == "secrets")["mountPath"]
    volume = next(v for v in pod["volumes"] if v["name"] == "secrets")["secret"]
    return {f"{mount}/{item['path']}": item["key"] for item in volume["items"]}


def configmap_with_stand_in_secrets(tmp_path) -> tuple[str, dict[str, str]]:
    """The ConfigMap's config with its secret files written under tmp_path from the example
    Secret (as Kubernetes mounts them, newline-terminated), and the env the pod would get."""
    _, text = _configmap_config()
    secret = resource("Secret")["stringData"]
    for path, key in _mounted_secret_files().items():
        stand_in = tmp_path / path.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text(secret[key] + "\n")
        text = text.replace(path, str(stand_in))
    return text, {name: secret[key] for name, key in _env_from_secret().items()}


def _load_configmap_config(tmp_path):
    text, environ = configmap_with_stand_in_secrets(tmp_path)
    return load_config_text(text, environ=environ)
