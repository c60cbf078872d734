"""The Dockerfile: linted by hadolint, and built the way the deployment files expect."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.deploy.files import ROOT, resource, tool

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_finds_nothing():
    # hadolint's default threshold fails on any finding, style included.
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_a_rubber_stamp(tmp_path):
    # The same linter on a known-bad Dockerfile must complain, or the check above proves nothing.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install aiohttp\nCMD webhook-gateway run\n")
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


def test_multi_stage_slim_non_root_with_healthcheck_and_sigterm():
    steps = _instructions()
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) >= 2, "build the wheel in one stage, install it in another"
    assert all("-slim" in stage for stage in stages)
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the final stage must run as a non-root user"
    health = [args for word, args in final if word == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0] and "9090" in health[0]
    assert ("STOPSIGNAL", "SIGTERM") in final
    assert ("EXPOSE", "8080 9090") in final


def test_the_image_user_is_the_one_kubernetes_runs_as():
    uid = re.search(r"--uid (\d+)", DOCKERFILE.read_text())
    assert uid
    pod = resource("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid.group(1))
    assert dict(_instructions())["USER"] == uid.group(1)


def test_the_config_path_the_image_reads_is_where_compose_and_kubernetes_mount_it():
    env = dict(_instructions())["ENV"]
    config_path = re.search(r"WEBHOOK_GATEWAY_CONFIG=(\S+)", env)
    assert config_path
    path = config_path.group(1)
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    mounts = compose["services"]["gateway"]["volumes"]
    assert any(m.split(":")[1] == path for m in mounts), mounts
    container = resource("Deployment")["spec"]["template"]["spec"]["containers"][0]
    config_mounts = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == "config"]
    assert config_mounts and path.startswith(config_mounts[0] + "/")


def test_the_image_installs_what_uv_lock_pins_with_the_makefiles_uv():
    # The image's versions are the ones `make test` checked: the runtime set of uv.lock,
    # exported by the uv version the Makefile pins, with hashes; never a fresh resolution.
    pinned = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert pinned
    runs = [args for word, args in _instructions() if word == "RUN"]
    assert any(f"uv=={pinned.group(1)}" in run for run in runs), runs
    export = [run for run in runs if "uv export" in run]
    assert export and "--frozen" in export[0] and "--no-dev" in export[0], runs
    assert "--no-hashes" not in export[0] and "--require-hashes" in export[0]
    copies = [args for word, args in _instructions() if word == "COPY"]
    assert any("uv.lock" in copy.split() for copy in copies), copies
