"""Versions of apps and fingerprints of an apps folder: what lets agents, launchers and warm workers notice
an added or rewritten file, and the service hand a launcher only the apps (and copies) it has."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from beambridge.apps import execute
from beambridge.apps.loader import file_version, folder_fingerprint, load_apps

APP = """
from beambridge.apps.base import ApplicationDefinition


class Scale(ApplicationDefinition):
    def run(self, x: float) -> float:
        return x * {factor}


class Echo(ApplicationDefinition):
    command_template = "echo {{{{ text }}}}"
"""


def _write(folder: Path, name: str, factor: int) -> Path:
    path = folder / name
    path.write_text(APP.format(factor=factor))
    return path


def test_apps_of_a_file_carry_its_digest_and_builtins_none(tmp_path: Path) -> None:
    path = _write(tmp_path, "mine.py", 2)
    catalog = load_apps(tmp_path)
    digest = file_version(path.read_bytes())
    assert catalog.versions["Scale"] == catalog.versions["Echo"] == digest and len(digest) == 16
    assert catalog.versions["XpcsMultiTau"] is None
    advertised = catalog.advertised()
    assert (
        advertised["Scale"] == digest and advertised["Noop"] is None and set(advertised) == set(catalog.apps)
    )


def test_the_fingerprint_changes_with_every_kind_of_change(tmp_path: Path) -> None:
    empty = folder_fingerprint(tmp_path)
    assert folder_fingerprint(tmp_path / "missing") == folder_fingerprint(tmp_path / "also-missing")
    path = _write(tmp_path, "mine.py", 2)
    added = folder_fingerprint(tmp_path)
    assert added != empty
    (tmp_path / "notes.txt").write_text("not an app file")
    (tmp_path / "_private.py").write_text("x = 1")
    assert folder_fingerprint(tmp_path) == added  # only the files apps are loaded from count
    info = path.stat()
    _write(tmp_path, "mine.py", 3)  # same size, maybe the same mtime: the inode or the time tells
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    assert folder_fingerprint(tmp_path) != added
    replaced = tmp_path / "new.tmp"
    replaced.write_text(APP.format(factor=4))
    replaced.replace(path)  # an atomic replace: a new inode
    changed = folder_fingerprint(tmp_path)
    path.unlink()
    assert folder_fingerprint(tmp_path) not in (changed, added) and folder_fingerprint(tmp_path) == empty


def test_a_rewritten_file_is_imported_afresh(tmp_path: Path) -> None:
    from beambridge.schemas.jobs import Job

    path = _write(tmp_path, "mine.py", 2)
    first = load_apps(tmp_path)
    _write(tmp_path, "mine.py", 10)
    second = load_apps(tmp_path)
    assert first.versions["Scale"] != second.versions["Scale"]
    job = Job.model_construct(parameters={})
    assert first.apps["Scale"](job, tmp_path).run(3) == 6
    assert second.apps["Scale"](job, tmp_path).run(3) == 30  # not the import cache's old module
    again = load_apps(tmp_path)
    assert again.apps["Scale"] is second.apps["Scale"]  # the same bytes: the same module
    del path


def test_a_warm_worker_reloads_the_folder_when_it_changed(tmp_path: Path) -> None:
    """What the launcher's Python workers use: the catalog they loaded first must not outlive a change."""
    folder = str(tmp_path)
    first = execute.catalog(folder)
    assert "Scale" not in first.apps
    assert execute.catalog(folder) is first  # unchanged: loaded once
    _write(tmp_path, "mine.py", 2)
    second = execute.catalog(folder)
    assert "Scale" in second.apps
    (tmp_path / "mine.py").write_text("this is not python (\n")
    broken = execute.catalog(folder)
    assert "Scale" not in broken.apps and tmp_path / "mine.py" in broken.errors
    with pytest.raises(KeyError, match="no app 'Scale'"):
        broken.get("Scale")


def test_an_app_the_service_would_refuse_is_reported_not_advertised(tmp_path: Path) -> None:
    """A class name Python accepts but the service does not (``Ünïcode``, ``name = "bad name"``): one such
    app used to make every acquire of the pilot invalid, and the agent's registration fail as a whole."""
    (tmp_path / "odd.py").write_text(
        "from beambridge.apps.base import ApplicationDefinition\n"
        "class Ünïcode(ApplicationDefinition):\n    command_template = 'true'\n"
        "class Spaced(ApplicationDefinition):\n    name = 'bad name'\n    command_template = 'true'\n"
        "class Fine(ApplicationDefinition):\n    command_template = 'true'\n"
    )
    catalog = load_apps(tmp_path)
    assert "Fine" in catalog.apps and "Ünïcode" not in catalog.apps and "bad name" not in catalog.apps
    assert "cannot be registered" in catalog.errors[tmp_path / "odd.py"]
    assert set(catalog.advertised()) == set(catalog.apps)
