"""The XPCS package's modules import one another without a cycle (readers, events, correlators)."""

from __future__ import annotations

import ast
from pathlib import Path

import beambridge.xpcs

ROOT = Path(beambridge.xpcs.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """Modules of the package imported by ``path`` (also inside functions: a cycle there still is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("beambridge.xpcs"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("beambridge.xpcs"))
    return found & known


def test_no_import_cycle() -> None:
    files = {_module(p): p for p in ROOT.rglob("*.py")}
    graph = {name: _imports(path, set(files)) - {name} for name, path in files.items()}
    # a package's __init__ importing its own modules is not a cycle back to it from them
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        assert state.get(name) != 1, "import cycle: " + " -> ".join([*trail, name])
        state[name] = 1
        for dep in sorted(graph[name]):
            if not name.startswith(dep + "."):  # a module of a package importing that package's __init__
                visit(dep, [*trail, name])
        state[name] = 2

    for name in sorted(graph):
        visit(name, [])


def test_readers_and_correlators_are_grouped() -> None:
    assert {p.stem for p in (ROOT / "io").glob("*.py")} >= {"base", "hdf5", "imm", "rigaku"}
    assert {p.stem for p in (ROOT / "multitau").glob("*.py")} >= {"correlator", "dense", "sparse", "bins"}
    assert not list(ROOT.glob("frames*.py")) and not list(ROOT.glob("multitau_*.py"))
