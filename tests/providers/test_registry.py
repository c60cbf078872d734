"""The registry: built-ins, plugin directories and entry-point packages, failing closed."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from gateway.errors import ConfigError, VerificationError
from gateway.providers.base import BaseProvider, Secret
from gateway.providers.registry import ENTRY_POINT_GROUP, builtin_dir, load_registry

BUILTINS = [
    "bearer",
    "github",
    "hmac",
    "none",
    "rafiki",
    "shopify",
    "slack",
    "standard-webhooks",
    "stripe",
]
NOW = 1_774_589_675.0


def _plugin_source(name: str, class_name: str = "Acme") -> str:
    """A small third-party provider: the body must equal ``<secret>:<body>`` reversed."""
    return textwrap.dedent(
        f'''
        """A provider from outside the gateway."""

        from gateway.errors import VerificationError
        from gateway.extract import Extractor, Extractors
        from gateway.providers.base import BaseProvider


        class {class_name}(BaseProvider):
            """Signs by echoing the secret, enough to tell the plugin ran."""

            name = {name!r}
            defaults = Extractors(dedupe=Extractor("sha256"))

            def verify(self, body, headers, secrets, now):
                value = {{k.lower(): v for k, v in headers.items()}}.get("x-acme")
                if not any(value == s.value + ":" + str(len(body)) for s in secrets):
                    raise VerificationError()

            def sign(self, body, secret, now, **kw):
                return {{"X-Acme": secret.value + ":" + str(len(body))}}


        PROVIDERS = ({class_name},)
        '''
    )


def _exercise(cls: type[BaseProvider]) -> None:
    provider = cls(tolerance=300, options={})
    headers = provider.sign(b"hello", Secret("k"), NOW)
    provider.verify(b"hello", headers, [Secret("k")], NOW)
    with pytest.raises(VerificationError):
        provider.verify(b"hello!", headers, [Secret("k")], NOW)


def test_builtins_are_found_without_any_path() -> None:
    registry = load_registry(use_entry_points=False)
    assert registry.names() == BUILTINS
    for name in BUILTINS:
        cls = registry.get(name)
        assert cls.name == name
        assert cls.__doc__
        assert cls.verify.__doc__
        assert cls.sign.__doc__
        assert registry.origin(name).startswith("built-in gateway.plugins.")


def test_builtins_load_from_any_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_registry(use_entry_points=False).names() == BUILTINS


def test_unknown_name_is_not_registered() -> None:
    registry = load_registry(use_entry_points=False)
    assert "stripe-v2" not in registry
    with pytest.raises(KeyError):
        registry.get("stripe-v2")


def test_plugin_file_in_a_directory_is_found(tmp_path: Path) -> None:
    (tmp_path / "acme_plugin.py").write_text(_plugin_source("acme"))
    (tmp_path / "_private.py").write_text("raise RuntimeError('never imported')\n")
    (tmp_path / "notes.txt").write_text("not python\n")
    registry = load_registry([tmp_path], use_entry_points=False)
    assert registry.names() == sorted([*BUILTINS, "acme"])
    assert str(tmp_path / "acme_plugin.py") in registry.origin("acme")
    _exercise(registry.get("acme"))


def test_duplicate_name_from_a_plugin_directory_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "my_github.py").write_text(_plugin_source("github", "FakeGitHub"))
    with pytest.raises(ConfigError) as info:
        load_registry([tmp_path], use_entry_points=False)
    message = str(info.value)
    assert "'github'" in message
    assert str(tmp_path / "my_github.py") in message
    assert "built-in" in message
    assert info.value.problems[0].key == "plugins.paths[0]"


def test_duplicate_name_across_two_plugin_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "one.py").write_text(_plugin_source("acme"))
    (tmp_path / "b" / "two.py").write_text(_plugin_source("acme", "Acme2"))
    with pytest.raises(ConfigError) as info:
        load_registry([tmp_path / "a", tmp_path / "b"], use_entry_points=False)
    assert info.value.problems[0].key == "plugins.paths[1]"
    assert "'acme'" in str(info.value)


def test_unknown_plugin_directory_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as info:
        load_registry([tmp_path, missing], use_entry_points=False)
    assert info.value.problems[0].key == "plugins.paths[1]"
    assert str(missing) in str(info.value)


def test_the_builtin_directory_and_copies_of_builtins_load_once(tmp_path: Path) -> None:
    # "plugins.paths: [plugins]" in a source checkout names the built-in directory itself, and
    # an unchanged copy of a built-in module is the same plugin: neither is a duplicate.
    copy = tmp_path / "stripe_signature.py"
    copy.write_bytes((builtin_dir() / "stripe_signature.py").read_bytes())
    assert load_registry([builtin_dir(), tmp_path], use_entry_points=False).names() == BUILTINS
    copy.write_bytes(copy.read_bytes() + b"\n# edited\n")
    with pytest.raises(ConfigError, match="'stripe'"):
        load_registry([tmp_path], use_entry_points=False)


def test_plugin_file_that_fails_to_import_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    with pytest.raises(ConfigError) as info:
        load_registry([tmp_path], use_entry_points=False)
    assert str(tmp_path / "broken.py") in str(info.value)
    assert "no_such_module_here" in str(info.value)


@pytest.mark.parametrize(
    "declaration",
    ["PROVIDERS = (object,)", "PROVIDERS = (BaseProvider,)", "PROVIDERS = BaseProvider"],
    ids=["not-a-provider", "unnamed", "not-a-sequence"],
)
def test_bad_providers_declaration_is_a_config_error(tmp_path: Path, declaration: str) -> None:
    (tmp_path / "bad.py").write_text(
        f"from gateway.providers.base import BaseProvider\n{declaration}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_registry([tmp_path], use_entry_points=False)
    assert str(tmp_path / "bad.py") in str(info.value)


def _install_package(root: Path, module: str, entry_points: str, source: str) -> None:
    """A tiny installed distribution: a module plus its .dist-info with entry points."""
    (root / f"{module}.py").write_text(source)
    dist_info = root / f"{module}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")


def test_third_party_package_is_found_by_entry_point(tmp_path: Path, monkeypatch) -> None:
    module = f"acme_webhooks_{tmp_path.name.replace('-', '_')}"
    _install_package(tmp_path, module, f"acme = {module}:Acme", _plugin_source("acme"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    registry = load_registry()
    assert "acme" in registry
    assert "entry point 'acme'" in registry.origin("acme")
    _exercise(registry.get("acme"))
    # Without entry points (or without the package on the path) it is unknown: fail closed.
    assert "acme" not in load_registry(use_entry_points=False)


def test_entry_point_may_name_a_module_with_providers(tmp_path: Path, monkeypatch) -> None:
    module = f"acme_module_{tmp_path.name.replace('-', '_')}"
    source = _plugin_source("acme-one", "One") + _plugin_source("acme-two", "Two")
    source += "\nPROVIDERS = (One, Two)\n"
    _install_package(tmp_path, module, f"acme = {module}", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = load_registry()
    assert {"acme-one", "acme-two"} <= set(registry.names())


def test_entry_point_clashing_with_a_builtin_is_a_config_error(tmp_path, monkeypatch) -> None:
    module = f"fake_slack_{tmp_path.name.replace('-', '_')}"
    _install_package(tmp_path, module, f"slack = {module}:Slack", _plugin_source("slack", "Slack"))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_registry()
    assert "'slack'" in str(info.value)
    assert module in str(info.value)


def test_broken_entry_point_is_a_config_error(tmp_path: Path, monkeypatch) -> None:
    module = f"broken_ep_{tmp_path.name.replace('-', '_')}"
    _install_package(tmp_path, module, f"acme = {module}:Missing", _plugin_source("acme"))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_registry()
    assert "entry point 'acme'" in str(info.value)


def test_every_problem_is_reported_at_once(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "dup.py").write_text(_plugin_source("github", "Dup"))
    module = f"broken_ep2_{tmp_path.name.replace('-', '_')}"
    _install_package(tmp_path, module, f"acme = {module}:Missing", _plugin_source("acme"))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_registry([tmp_path / "missing", tmp_path])
    keys = [p.key for p in info.value.problems]
    assert keys == ["plugins.paths[0]", "plugins.paths[1]", "plugins"]
