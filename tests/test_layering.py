"""The package layering of the design, held by the import graph: each package imports only the packages
below it (function-level imports included). A new top-level package must be added to ALLOWED."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import beambridge

SOURCE = Path(beambridge.__file__).parent
SHARED = {"states", "schemas", "packing", "logs"}
"""Pure modules every orchestration package may use."""

ALLOWED: dict[str, set[str]] = {
    "states": set(),
    "packing": set(),
    "logs": set(),
    "schemas": {"states"},
    "server": SHARED | {"placement"},
    "client": SHARED,
    "site": SHARED | {"client", "platform", "apps", "launcher.config"},
    "launcher": SHARED | {"client", "platform", "apps"},
    "platform": SHARED,
    "apps": SHARED | {"xpcs"},
    "xpcs": set(),
    "placement": SHARED,
    "beamline": SHARED | {"client", "xpcs"},
    "integrations": SHARED | {"beamline", "client"},
    "cli": {"*"},
    "__init__": {"client", "schemas", "states"},
    "__main__": {"cli"},
}
"""Package → what it may import of ours (``package.module`` allows that module only; ``*`` anything)."""


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every ``beambridge.x[.y]`` a file imports, with the line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "beambridge":
                for alias in node.names:
                    yield f"beambridge.{alias.name}", node.lineno
            else:
                yield node.module, node.lineno


def _violations() -> list[str]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE)
        package = relative.parts[0].removesuffix(".py")
        allowed = ALLOWED.get(package)
        if allowed is None:
            found.append(
                f"{relative}: package {package!r} is not in the layering table (tests/test_layering.py)"
            )
            continue
        for module, line in _imports(path):
            parts = module.split(".")
            if parts[0] != "beambridge" or len(parts) < 2 or parts[1] in (package, "__version__"):
                continue
            target, sub = parts[1], ".".join(parts[1:3])
            if "*" in allowed or target in allowed or sub in allowed:
                continue
            found.append(f"{relative}:{line}: {package} imports {module}")
    return found


def test_every_package_imports_only_what_the_design_allows() -> None:
    assert _violations() == []


def test_the_launcher_never_imports_the_site_package() -> None:
    launcher = [f for f in (SOURCE / "launcher").rglob("*.py")]
    crossings = [
        f"{path.name}:{line} imports {module}"
        for path in launcher
        for module, line in _imports(path)
        if module == "beambridge.site" or module.startswith("beambridge.site.")
    ]
    assert launcher and crossings == []


def test_a_crossing_is_caught(tmp_path: Path) -> None:
    """The checker sees function-level imports and ``from beambridge import x`` forms."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f():\n    from beambridge.site.config import SiteDir\n\nfrom beambridge import site\n"
    )
    assert sorted(_imports(bad)) == [("beambridge.site", 4), ("beambridge.site.config", 2)]
