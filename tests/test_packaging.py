"""An installed gateway (a wheel, not this checkout) runs from any directory with its providers."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support import ENV

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_package_and_runs_from_elsewhere(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {
        p.parent.relative_to(REPO).as_posix() for p in (REPO / "gateway").rglob("__init__.py")
    }
    for package in packages:
        assert f"{package}/__init__.py" in names, f"{package} is missing from the wheel"
    assert "gateway/plugins/standard_webhooks.py" in names
    # The store's scripts are read from the package: every one of them is in the wheel.
    for script in (REPO / "gateway" / "store" / "redis" / "lua").iterdir():
        assert f"gateway/store/redis/lua/{script.name}" in names, script.name
    # The dashboard is served from the package: every file of its page is in the wheel.
    for page_file in (REPO / "gateway" / "dashboard" / "static").iterdir():
        assert f"gateway/dashboard/static/{page_file.name}" in names, page_file.name
    # Unpacked on its own, away from the checkout: check-config must find the built-in
    # providers and the config it is given, whatever the working directory.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    config = REPO / "config.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gateway, sys; from gateway.cli import main;"
            " assert gateway.__file__.startswith(sys.argv[1]), gateway.__file__;"
            " sys.exit(main(['check-config', '--config', sys.argv[2]]))",
            str(site),
            str(config),
        ],
        env={**os.environ, **ENV, "PYTHONPATH": str(site)},
        cwd=workdir,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
