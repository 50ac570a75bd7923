"""The import graph of the ``distllm_env`` package has no cycles, and the simulator core never imports
gymnasium (docs/architecture.md, "Import rules").

The graph is read from the source with :mod:`ast` (nothing is imported).  Its nodes are the modules of
``distllm_env`` including the subpackages mapped from other folders (``distllm_env.baselines`` ←
``baselines/``, ``distllm_env.agents`` ← ``agents/``, ``distllm_env.scenarios`` ← ``scenarios/``; the
mapping is ``[tool.setuptools] package-dir`` of pyproject.toml).  The edge rule:

* every ``import`` / ``from … import`` statement naming a module of the package is an edge, wherever it
  stands — at module level, inside a function, inside ``try`` — because a lazy import written to dodge
  an import-time cycle still ties the two modules together;
* except statements under ``if TYPE_CHECKING:``, which never run;
* ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg`` (its
  ``__init__``);
* the implicit import of a parent package (importing ``a.b.c`` first runs ``a/__init__`` and
  ``a/b/__init__``) is not an edge, as in import-linter and pydeps.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "distllm_env"
# Imports that only type checkers or lazy code paths may see from the simulator core.
CORE = "distllm_env.simulator"
FORBIDDEN_IN_CORE = ("gymnasium", "gym")


def package_dirs() -> dict[str, Path]:
    """Package name → source folder, from pyproject's ``package-dir`` (the same mapping pip installs)."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping = cfg["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in mapping.items()}


def module_files() -> dict[str, Path]:
    """Every module of the package: dotted name → file (``__init__.py`` for packages)."""
    dirs = package_dirs()
    modules: dict[str, Path] = {}
    for pkg, folder in dirs.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = list(rel.parts)
            # a nested folder that is itself mapped elsewhere is owned by that mapping
            sub = ".".join([pkg, *parts[:-1]])
            if sub != pkg and any(sub == other or sub.startswith(other + ".") for other in dirs if other != pkg
                                  and other.startswith(pkg + ".")):
                continue
            if not (path.parent / "__init__.py").exists():
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([pkg, *parts])] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes of a module, skipping the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_targets(module: str, path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """The imports of a module as ``(absolute module, names imported from it)`` pairs; ``import a.b`` is
    ``("a.b", ())``, ``from .x import y, z`` in ``p.m`` is ``("p.x", ("y", "z"))``."""
    is_pkg = path.name == "__init__.py"
    base_parts = module.split(".") if is_pkg else module.split(".")[:-1]
    out: list[tuple[str, tuple[str, ...]]] = []
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((alias.name, ()) for alias in node.names)
            continue
        if node.level:
            anchor = base_parts[: len(base_parts) - (node.level - 1)]
            target = ".".join(anchor + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        out.append((target, tuple(alias.name for alias in node.names if alias.name != "*")))
    return out


def resolve(targets: list[tuple[str, tuple[str, ...]]], modules) -> set[str]:
    """The modules an import list depends on: ``from pkg import name`` → ``pkg.name`` when that is a
    module, else ``pkg``; names outside ``modules`` are kept as they are (external imports)."""
    out: set[str] = set()
    for base, names in targets:
        if not names:
            out.add(base)
            continue
        for name in names:
            out.add(f"{base}.{name}" if f"{base}.{name}" in modules else base)
    return out


def import_graph() -> nx.DiGraph:
    """Directed graph module → module it imports (modules of the package only)."""
    modules = module_files()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for mod, path in modules.items():
        for target in resolve(import_targets(mod, path), modules):
            if target in modules and target != mod:
                graph.add_edge(mod, target)
    return graph


def external_imports(module: str) -> set[str]:
    """Top-level names of the non-package modules ``module`` imports (at any nesting level)."""
    modules = module_files()
    names = resolve(import_targets(module, modules[module]), modules)
    return {n.split(".")[0] for n in names if n.split(".")[0] != PACKAGE}


def test_every_mapped_subpackage_is_in_the_graph():
    graph = import_graph()
    for name in ("distllm_env.simulator", "distllm_env.baselines.ws_rr", "distllm_env.agents.train",
                 "distllm_env.envs.routing", "distllm_env.split.geo"):
        assert name in graph
    assert graph.has_edge("distllm_env", "distllm_env.api")  # ``from .api import simulate``
    assert graph.has_edge("distllm_env", "distllm_env.envs")  # ``from .envs import register_envs``


def test_edge_rules_on_a_hand_made_module(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import a\n"
        "from .b import thing\n"
        "import distllm_env.c as c\n"
        "if TYPE_CHECKING:\n"
        "    from .d import T\n"
        "def f():\n"
        "    from ..e import g\n")
    modules = {"distllm_env.pkg.m", "distllm_env.pkg.a", "distllm_env.pkg.b", "distllm_env.c", "distllm_env.e",
               "distllm_env.pkg.d"}
    names = resolve(import_targets("distllm_env.pkg.m", src), modules)
    assert names == {"typing", "distllm_env.pkg.a", "distllm_env.pkg.b", "distllm_env.c", "distllm_env.e"}


def test_import_graph_has_no_cycles():
    graph = import_graph()
    cycles = sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)
    assert not cycles, "import cycles (strongly connected groups of modules): " + "; ".join(
        " ↔ ".join(c) for c in cycles)


def test_simulator_core_never_imports_gymnasium():
    graph = import_graph()
    reach = {CORE} | nx.descendants(graph, CORE)
    offenders = {mod: sorted(external_imports(mod) & set(FORBIDDEN_IN_CORE)) for mod in sorted(reach)}
    offenders = {mod: names for mod, names in offenders.items() if names}
    assert not offenders, f"modules reachable from {CORE} import gymnasium: {offenders}"
    assert "distllm_env.envs" not in reach and "distllm_env" not in reach


@pytest.mark.skipif(sys.platform == "win32", reason="subprocess import check uses POSIX python path")
def test_importing_the_simulator_does_not_load_gymnasium():
    import subprocess

    code = ("import sys, importlib.util\n"
            "spec = importlib.util.find_spec('distllm_env')\n"
            "import types\n"
            # import the core module without running the package __init__ (which registers the envs)
            "pkg = types.ModuleType('distllm_env'); pkg.__path__ = list(spec.submodule_search_locations)\n"
            "sys.modules['distllm_env'] = pkg\n"
            "import distllm_env.simulator\n"
            "print('gymnasium' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
