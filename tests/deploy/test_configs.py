"""Every gateway config in the repository passes `webhook-gateway check-config` with the example
environment that ships beside it, and each example environment names exactly the variables its
config reads (no more: a stale variable misleads; no fewer: the gateway would refuse to start)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.files import DEPLOY, ROOT, doc_code_block, env_references, read_env_file
from tests.deploy.test_kubernetes import configmap_with_stand_in_secrets

#: The gateway configs in the repository (the ConfigMap's is checked in its own test).
CONFIG_FILES = ["config.yaml", "deploy/config.yaml"]


def _dev_env(tmp_path: Path) -> dict[str, str]:
    """What `make run` gives config.yaml: the env file scripts/dev_secrets.py writes."""
    path = tmp_path / ".env.dev"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dev_secrets.py"), str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return read_env_file(path)


def _example_env(config: str, tmp_path: Path) -> dict[str, str]:
    if config == "config.yaml":
        return _dev_env(tmp_path)
    return read_env_file(DEPLOY / ".env.example")


def check_config(config: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the real CLI, in a clean environment holding only what the example provides."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/"), **environ}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_config_file_is_covered():
    # A new config file in the repository must be added here (with its example env).
    found = {
        str(path.relative_to(ROOT))
        for path in [*ROOT.glob("*.yaml"), *DEPLOY.glob("*.yaml")]
        if "sources:" in path.read_text()
    }
    assert found == set(CONFIG_FILES)


@pytest.mark.parametrize("config", CONFIG_FILES)
def test_config_passes_check_config_with_its_example_env(config, tmp_path):
    result = check_config(ROOT / config, _example_env(config, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stderr
    # Secrets are redacted in what it prints.
    for value in _example_env(config, tmp_path).values():
        if value.startswith("whsec_"):
            assert value not in result.stdout


@pytest.mark.parametrize("config", CONFIG_FILES)
def test_example_env_names_exactly_what_the_config_reads(config, tmp_path):
    assert set(_example_env(config, tmp_path)) == env_references((ROOT / config).read_text())


@pytest.mark.parametrize("config", CONFIG_FILES)
def test_check_config_fails_without_a_variable(config, tmp_path):
    # The control for the test above: drop one variable and the CLI must refuse, naming it.
    environ = _example_env(config, tmp_path)
    missing = sorted(environ)[0]
    del environ[missing]
    result = check_config(ROOT / config, environ)
    assert result.returncode == 1
    assert missing in result.stderr


def test_configmap_config_passes_check_config_with_stand_in_secret_files(tmp_path):
    text, environ = configmap_with_stand_in_secrets(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    result = check_config(path, environ)
    assert result.returncode == 0, result.stderr


def test_the_unsigned_migration_source_in_operate_md_loads(tmp_path):
    # docs/operate.md shows a source to add under `sources:` of config.yaml; it must load.
    block = doc_code_block("operate.md", "payments-unsigned.yaml")
    path = tmp_path / "config.yaml"
    path.write_text((ROOT / "config.yaml").read_text().rstrip("\n") + "\n" + block)
    (tmp_path / "plugins").mkdir()  # plugins.paths is relative to the config file
    result = check_config(path, _dev_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "payments-unsigned" in result.stdout


def test_an_env_file_from_before_a_secret_gets_only_that_one_added(tmp_path: Path):
    path = tmp_path / ".env.dev"
    path.write_text("# old\nexport GATEWAY_ADMIN_TOKEN=kept-as-it-was\n")
    path.chmod(0o600)
    for _ in range(2):  # a second run adds nothing more
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "dev_secrets.py"), str(path)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    values = read_env_file(path)
    assert values["GATEWAY_ADMIN_TOKEN"] == "kept-as-it-was"
    assert set(values) == {
        "GATEWAY_ADMIN_TOKEN",
        "PAYMENTS_WEBHOOK_SECRET",
        "MARKETPLACE_WEBHOOK_SECRET",
        "STATUS_TOKEN_SECRET",
    }
    assert path.read_text().count("STATUS_TOKEN_SECRET") == 1
    assert len(values["STATUS_TOKEN_SECRET"]) >= 32
