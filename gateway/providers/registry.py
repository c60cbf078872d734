"""Provider registry: built-ins, ``plugins.paths`` directories and entry points.

A plugin module lists its providers explicitly in a module-level ``PROVIDERS`` sequence of
``BaseProvider`` subclasses. Third-party packages register either such a module or one provider
class under the ``webhook_gateway.providers`` entry-point group. A name registered twice is a
config error, as is a name nobody registered (fail closed).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from gateway.errors import ConfigError, ConfigProblem
from gateway.providers.base import BaseProvider

ENTRY_POINT_GROUP = "webhook_gateway.providers"
BUILTIN_PACKAGE = "gateway.plugins"


class ProviderRegistry:
    """Provider classes by name; registering a name twice raises ``ConfigError``."""

    def __init__(self) -> None:
        self._classes: dict[str, type[BaseProvider]] = {}
        self._origins: dict[str, str] = {}

    def register(self, cls: type[BaseProvider], origin: str, key: str = "plugins") -> None:
        """Add ``cls`` under its ``name``; ``origin`` and ``key`` locate it in errors."""
        if not (isinstance(cls, type) and issubclass(cls, BaseProvider)) or not cls.name:
            raise ConfigError.at(
                key, f"{origin}: {cls!r} is not a named gateway.providers.BaseProvider"
            )
        if cls.name in self._classes:
            raise ConfigError.at(
                key,
                f"provider {cls.name!r} from {origin} is already registered by "
                f"{self._origins[cls.name]}",
            )
        self._classes[cls.name] = cls
        self._origins[cls.name] = origin

    def get(self, name: str) -> type[BaseProvider]:
        """The provider class registered as ``name``; ``KeyError`` if none."""
        return self._classes[name]

    def origin(self, name: str) -> str:
        """Where the provider ``name`` was loaded from."""
        return self._origins[name]

    def names(self) -> list[str]:
        """Every registered provider name, sorted."""
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes


def _module_providers(module: ModuleType, origin: str, key: str) -> Iterator[type[BaseProvider]]:
    providers: object = getattr(module, "PROVIDERS", ())
    # A lone class (PROVIDERS = MyProvider) is a common slip; name it instead of crashing.
    if not isinstance(providers, list | tuple):
        raise ConfigError.at(key, f"{origin}: PROVIDERS must be a tuple or list of classes")
    yield from providers


def builtin_dir() -> Path:
    """The directory the built-in providers are loaded from."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    return Path(next(iter(package.__path__))).resolve()


def _load_builtins(registry: ProviderRegistry) -> dict[str, bytes]:
    """Register the built-ins; return a digest per built-in file name (to skip copies later)."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    digests: dict[str, bytes] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{BUILTIN_PACKAGE}.{info.name}")
        if module.__file__:
            digests[f"{info.name}.py"] = hashlib.sha256(Path(module.__file__).read_bytes()).digest()
        origin = f"built-in {BUILTIN_PACKAGE}.{info.name}"
        for cls in _module_providers(module, origin, "plugins"):
            registry.register(cls, origin)
    return digests


def _load_directory(
    registry: ProviderRegistry, directory: Path, key: str, builtin_digests: dict[str, bytes]
) -> None:
    if not directory.is_dir():
        raise ConfigError.at(key, f"plugin directory {str(directory)!r} does not exist")
    if directory.resolve() == builtin_dir():
        return  # the built-in directory itself (a source checkout): already loaded
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        if builtin_digests.get(path.name) == hashlib.sha256(path.read_bytes()).digest():
            continue  # an identical copy of a built-in module: the same plugin, loaded once
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        module_name = f"webhook_gateway_plugin_{digest}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ConfigError.at(key, f"cannot load plugin file {str(path)!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # a third-party file may fail in any way: report, do not crash
            sys.modules.pop(module_name, None)
            raise ConfigError.at(key, f"plugin file {str(path)!r} failed to load: {exc!r}") from exc
        origin = f"plugin file {path}"
        for cls in _module_providers(module, origin, key):
            registry.register(cls, origin, key)


def _load_entry_points(registry: ProviderRegistry) -> None:
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken third-party package: name it, do not crash
            raise ConfigError.at(
                "plugins", f"entry point {ep.name!r} ({ep.value}) failed to load: {exc!r}"
            ) from exc
        origin = f"entry point {ep.name!r} ({ep.value})"
        if isinstance(loaded, ModuleType):
            for cls in _module_providers(loaded, origin, "plugins"):
                registry.register(cls, origin)
        else:
            registry.register(loaded, origin)


def load_registry(paths: Sequence[Path] = (), *, use_entry_points: bool = True) -> ProviderRegistry:
    """Build the registry: built-ins, then each ``plugins.paths`` directory, then entry points."""
    registry = ProviderRegistry()
    digests = _load_builtins(registry)
    problems: list[ConfigProblem] = []
    for index, directory in enumerate(paths):
        try:
            _load_directory(registry, directory, f"plugins.paths[{index}]", digests)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if use_entry_points:
        try:
            _load_entry_points(registry)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return registry
