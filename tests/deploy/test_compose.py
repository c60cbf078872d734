"""deploy/docker-compose.yml: valid against the Compose Specification's JSON schema (the one
`docker compose config` enforces; check-jsonschema ships it), and wired as the README says."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.deploy.files import DEPLOY, env_references, read_env_file, strings, tool

COMPOSE = DEPLOY / "docker-compose.yml"
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def _validate(path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_matches_the_compose_schema():
    result = _validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_refuses_a_broken_compose_file(tmp_path):
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["gateway"]["healthcheck"]["intervall"] = "10s"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert _validate(path).returncode != 0


def test_every_variable_compose_needs_is_in_the_example_env_file():
    compose = yaml.safe_load(COMPOSE.read_text())
    needed = {name for s in strings(compose) for name in INTERPOLATION.findall(s)}
    example = read_env_file(DEPLOY / ".env.example")
    assert needed == set(example), "compose interpolates exactly what deploy/.env.example sets"


def test_the_gateway_container_gets_every_variable_its_config_reads():
    gateway = yaml.safe_load(COMPOSE.read_text())["services"]["gateway"]
    wanted = env_references((DEPLOY / "config.yaml").read_text())
    assert set(gateway["environment"]) == wanted


def test_redis_is_durable_and_prometheus_loads_the_rules():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] in ("always", "everysec")
    assert any(v.split(":")[1] == "/data" for v in services["redis"]["volumes"])
    prometheus = services["prometheus"]
    host_dir, container_dir = prometheus["volumes"][0].split(":")[:2]
    assert (DEPLOY / host_dir).resolve() == (DEPLOY / "prometheus").resolve()
    prometheus_yml = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert f"--config.file={container_dir}/prometheus.yml" in prometheus["command"]
    for rule_file in prometheus_yml["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).is_file()
    # Every bind mount names a file or folder that exists in the repository.
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), volume
