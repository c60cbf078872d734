"""Where the shipped deployment files live, and small readers the deploy checks share."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DOCS = ROOT / "docs"

#: ``${VAR}`` (not ``${file:...}``) in a gateway config string.
ENV_REFERENCE = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")
FILE_REFERENCE = re.compile(r"\$\{\s*file:([^}]+)\}")


def tool(name: str) -> str:
    """The path of a command the checks run: from the venv first, then PATH; fails if missing."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    assert found, f"{name} is not installed: run make test (it installs every tool the checks use)"
    return found


def strings(node: Any) -> Iterator[str]:
    """Every string value in a parsed YAML tree (comments are gone, keys are not values)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def env_references(config_text: str) -> set[str]:
    """The environment variables a gateway config reads."""
    return {m for s in strings(yaml.safe_load(config_text)) for m in ENV_REFERENCE.findall(s)}


def file_references(config_text: str) -> set[str]:
    """The files a gateway config reads through ``${file:...}``."""
    return {
        m.strip() for s in strings(yaml.safe_load(config_text)) for m in FILE_REFERENCE.findall(s)
    }


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines (``export`` allowed, ``#`` comments), as compose and sh read them."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        assert sep, f"{path}: not NAME=value: {line!r}"
        values[name.strip()] = value.strip()
    return values


def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every YAML document under deploy/kubernetes, by file name."""
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(KUBERNETES.glob("*.yaml"))
    }


def resource(kind: str) -> dict[str, Any]:
    """The one manifest of ``kind`` in deploy/kubernetes."""
    found = [doc for docs in manifests().values() for doc in docs if doc.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


#: A named code block in a Markdown page: ```lang file=NAME ... ```, perhaps in a list item.
_NAMED_BLOCK = re.compile(
    r"^(?P<indent> *)```[\w-]* file=(?P<name>\S+)\n(?P<code>.*?)^(?P=indent)```",
    re.MULTILINE | re.DOTALL,
)


def doc_code_block(page: str, name: str) -> str:
    """The code block marked ``file=<name>`` in docs/<page>: the tests run what the docs show."""
    for match in _NAMED_BLOCK.finditer((DOCS / page).read_text()):
        if match["name"] == name:
            indent = len(match["indent"])
            return "".join(line[indent:] for line in match["code"].splitlines(keepends=True))
    raise AssertionError(f"docs/{page} has no code block marked file={name}")
