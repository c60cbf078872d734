"""The package's shape: imports run one way, so each room can be read and changed alone.

Every ``gateway.*`` and ``plugins.*`` import is read from the source (``ast``), including those
under ``TYPE_CHECKING``, and the graph between modules and between subpackages must have no
cycle. The rules below name the arrows that once ran the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    found = {}
    for path in [
        *ROOT.glob("gateway/**/*.py"),
        *ROOT.glob("plugins/*.py"),
        *ROOT.glob("bench/*.py"),
        *ROOT.glob("harness/*.py"),
    ]:
        relative = path.relative_to(ROOT)
        if relative.parts[:2] == ("gateway", "plugins"):
            continue  # the same files as plugins/, through a symlink
        name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n in MODULES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _room(module: str) -> str:
    """The subpackage a module lives in (``gateway.store``), or the module itself."""
    parts = module.split(".")
    if parts[0] == "gateway" and len(parts) > 2:
        return ".".join(parts[:2])
    return module


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        trail.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*trail[trail.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        trail.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_a_cycle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_tools_import_no_test():
    # The benchmark and the harness run without the test suite (bench/ once imported
    # tests.redis_server); the tests may use them, never the other way round.
    offenders = sorted(
        f"{module} -> {name}"
        for module, path in MODULES.items()
        if module.split(".")[0] in ("bench", "harness", "gateway", "plugins")
        for name in _imported_names(path)
        if name == "tests" or name.startswith("tests.")
    )
    assert offenders == []


def _imported_names(path: Path) -> set[str]:
    """Every module name a file imports, inside the project or not."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_module_imports_itself_back():
    assert _cycle(GRAPH) is None


def test_no_room_imports_itself_back():
    rooms: dict[str, set[str]] = {}
    for module, deps in GRAPH.items():
        rooms.setdefault(_room(module), set()).update(
            _room(d) for d in deps if _room(d) != _room(module)
        )
    assert _cycle(rooms) is None


@pytest.mark.parametrize(
    ("room", "must_not_import"),
    [
        # Delivery is configured by config, never the reverse.
        ("gateway.delivery", "gateway.config"),
        # The admin application reads typed state; it does not build the app.
        ("gateway.admin", "gateway.app"),
        # The pure core knows no framework and no store.
        ("gateway.providers", "gateway.store"),
        ("gateway.ratelimit", "gateway.store"),
        ("gateway.store", "gateway.config"),
        # The admin listener shares HTTP helpers through gateway.http, not through the
        # ingress; the dashboard's sessions live with the admin API's guard.
        ("gateway.admin", "gateway.ingress"),
        ("gateway.dashboard", "gateway.ingress"),
        ("gateway.http", "gateway.ingress"),
        ("gateway.http", "gateway.admin"),
        ("gateway.admin", "gateway.dashboard"),
        # The Redis plumbing sits below everything that keeps state in Redis.
        *(
            ("gateway.redisio", above)
            for above in (
                "gateway.store",
                "gateway.ratelimit",
                "gateway.config",
                "gateway.ingress",
                "gateway.admin",
            )
        ),
    ],
)
def test_arrows_run_one_way(room, must_not_import):
    offenders = sorted(
        f"{module} -> {dep}"
        for module, deps in GRAPH.items()
        if _room(module) == room
        for dep in deps
        if dep == must_not_import or dep.startswith(must_not_import + ".")
    )
    assert offenders == []


def test_the_pure_core_imports_no_framework():
    pure = [
        "gateway.extract",
        "gateway.ratelimit.gcra",
        "gateway.http.clientip",
        "gateway.http.text",
        "gateway.delivery.retry",
        "gateway.delivery.cloudevents",
        "gateway.providers.jcs",
    ]
    for module in pure:
        tree = ast.parse(MODULES[module].read_text())
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & {"aiohttp", "redis", "sqlite3"}, (module, imported)


def _runtime_imports(path: Path) -> set[str]:
    """The imports of a module that run when it loads (not those under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    hidden = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_typed_app_state_does_not_load_the_ingress():
    # What reads the state (the admin API, the server) must not drag the request path in.
    loaded = _runtime_imports(MODULES["gateway.appkeys"])
    assert not {m for m in loaded if m.startswith("gateway.ingress")}, loaded
