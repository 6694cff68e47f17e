"""The package's import graph runs one way: load -> discover -> stimuli -> capture -> interventions ->
measures -> claims -> gate -> report -> the orchestration (config, pipeline, api, cli, the pytest room).
pytest is imported only in the pytest room; the package never imports the repository's
benchmarks, calibration, training or test folders.

Every import counts, including the lazy ones inside functions (a lazy import is still a
dependency, and a circle through one is still a circle). The graph is read with ``ast``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import resstream_assert

ROOT = Path(resstream_assert.__file__).parent
PACKAGE = "resstream_assert"

#: Floors of the flow, lowest first: a module may import its own floor or a lower one, never a higher one.
FLOORS: list[tuple[str, ...]] = [
    ("errors", "formatting", "results", "keys", "stats", "paper", "cache_dir", "torch_utils", "paths", "kinds"),
    ("loading", "zoo"),
    ("discovery",),
    ("stimuli",),
    ("capture",),
    ("interventions",),
    ("measures",),
    ("claims",),
    ("gate",),
    ("report",),
    ("config", "run_models", "pipeline", "api", "assertions", "strategies", "cli", "cli_parser", "pytest_plugin",
     "suite", "__init__"),
]

#: The pytest room: the only modules that may import pytest (the plugin, its hooks, the suite).
PYTEST_ROOM = ("pytest_plugin", "suite")
#: Folders of the repository that measure or train; the package never imports them.
OUTSIDE = ("benchmarks", "calibration", "model_zoo", "tests")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _floor(module: str) -> int:
    head = module.split(".")[0]
    for i, names in enumerate(FLOORS):
        if head in names:
            return i
    raise AssertionError(f"module {module!r} has no floor in FLOORS: add it where it belongs in the flow")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if module != "__init__" else []
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Internal module -> the internal modules it imports (``resstream_assert.`` stripped)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, path.name == "__init__.py", node)
                if node.level == 0 and not base.startswith(PACKAGE):
                    continue
                base = base[len(PACKAGE) + 1:] if base.startswith(PACKAGE) else base
                # "from pkg import sub" imports the submodule when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}".strip(".") in modules else base
                           for a in node.names]
            else:
                continue
            for t in targets:
                t = t[len(PACKAGE) + 1:] if t.startswith(PACKAGE + ".") else ("__init__" if t == PACKAGE else t)
                t = t.strip(".")
                while t and t not in modules:  # "pkg.mod.attr" -> "pkg.mod"
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_parents(mod: str) -> set[str]:
    """A module's own package __init__s: importing a submodule runs them, so they are not back-edges."""
    parts = mod.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_the_graph_was_read():
    graph = import_graph()
    assert graph["pipeline"] >= {"config", "loading", "discovery"} or "loading" in str(graph["pipeline"])
    assert sum(len(v) for v in graph.values()) > 60


def test_no_import_circle():
    cycles = _cycles(import_graph())
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_import_against_the_flow():
    graph = import_graph()
    back = [f"{a} (floor {_floor(a)}) imports {b} (floor {_floor(b)})"
            for a, targets in sorted(graph.items()) for b in sorted(targets)
            if _floor(b) > _floor(a) and b not in _package_parents(a)]
    assert not back, "imports against the flow:\n" + "\n".join(back)


def test_every_module_has_a_floor():
    for mod in import_graph():
        _floor(mod)


@pytest.mark.parametrize("room", ["measures", "claims", "gate", "report"])
def test_numpy_rooms_never_import_torch(room):
    """Measures, claims, the gate and reports read numpy results only (DESIGN.md: claims never touch torch)."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        mod = _module_name(path)
        if mod.split(".")[0] != room:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{mod}: {n}" for n in names if n.split(".")[0] in ("torch", "torchvision", "onnxruntime")]
    assert not offenders, offenders


def _external_imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, lazy imports included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_pytest_is_imported_only_in_its_room():
    offenders = [_module_name(p) for p in ROOT.rglob("*.py")
                 if "pytest" in _external_imports(p) and _module_name(p).split(".")[0] not in PYTEST_ROOM]
    assert not offenders, f"pytest imported outside {PYTEST_ROOM}: {offenders}"


def test_the_package_never_imports_the_repositorys_other_folders():
    offenders = [f"{_module_name(p)}: {sorted(_external_imports(p) & set(OUTSIDE))}" for p in ROOT.rglob("*.py")
                 if _external_imports(p) & set(OUTSIDE)]
    assert not offenders, offenders


def test_module_names_do_not_repeat():
    """One name, one module: a newcomer who reads ``scale.py`` knows which one is meant."""
    repo = ROOT.parent
    seen: dict[str, list[str]] = {}
    for folder in (ROOT, *(repo / d for d in ("benchmarks", "calibration", "model_zoo"))):
        for p in folder.rglob("*.py"):
            if p.name != "__init__.py":
                seen.setdefault(p.name, []).append(str(p.relative_to(repo)))
    repeated = {k: v for k, v in seen.items() if len(v) > 1}
    assert not repeated, repeated
