"""Routers only parse, call and answer: the SQL lives in plain functions (``server/jobs/``,
``server/sites.py``…) that tests and other services can call without HTTP."""

from __future__ import annotations

import ast
from pathlib import Path

import beambridge.server.routes as routes_package

ROUTES = sorted(Path(routes_package.__file__).parent.glob("*.py"))


def test_no_router_touches_tables_or_runs_statements() -> None:
    offenders = []
    for path in ROUTES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "beambridge.server.db.tables":
                offenders.append(f"{path.name}:{node.lineno} imports the tables")
            if isinstance(node, ast.Attribute) and node.attr in ("execute", "scalar", "scalars"):
                offenders.append(f"{path.name}:{node.lineno} runs a statement")
    assert len(ROUTES) >= 9 and not offenders, offenders
