"""Finding the apps of a site: every ``ApplicationDefinition`` subclass in the ``apps/`` folder's files.

Each app found in a file has a *version*: a digest of that file's bytes, which the agent registers and a
launcher advertises, so the service hands a launcher only jobs of apps (and copies of them) it has. A
folder's *fingerprint* changes when a file is added, removed or rewritten: agents, launchers and their
workers reload the folder when it does. A rewritten file is imported afresh (its module name carries the
digest), never served from the import cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from pydantic import TypeAdapter, ValidationError

from beambridge.apps.base import AppDefinitionError, ApplicationDefinition
from beambridge.schemas.common import Name


@dataclass
class AppCatalog:
    """The apps found in one folder, by name, with the files that could not be loaded."""

    apps: dict[str, type[ApplicationDefinition]] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    errors: dict[Path, str] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    """Name → digest of the app's file (None for the built-in apps: they change with the package)."""
    fingerprint: str = ""
    """The folder's fingerprint when it was read (see :func:`folder_fingerprint`)."""

    def advertised(self) -> dict[str, str | None]:
        """What a launcher tells the service it can run: every app, with its version."""
        return {name: self.versions.get(name) for name in self.apps}

    def get(self, name: str) -> type[ApplicationDefinition]:
        """The app called ``name``; ``KeyError`` naming the known ones otherwise."""
        try:
            return self.apps[name]
        except KeyError:
            known = ", ".join(sorted(self.apps)) or "none"
            raise KeyError(f"no app {name!r} in this site's apps folder (known: {known})") from None


VERSION_LENGTH = 16


def file_version(source: bytes) -> str:
    """The version of the apps defined in a file with these bytes."""
    return hashlib.sha256(source).hexdigest()[:VERSION_LENGTH]


def folder_fingerprint(folder: Path) -> str:
    """Changes whenever an apps file of ``folder`` is added, removed or rewritten (name, size, mtime,
    inode of each: cheap enough to check before every acquire)."""
    entries: list[str] = []
    for path in _app_files(folder):
        try:
            info = path.stat()
        except OSError:
            continue
        entries.append(f"{path.name}:{info.st_size}:{info.st_mtime_ns}:{info.st_ino}")
    return hashlib.sha1("\n".join(entries).encode()).hexdigest()[:16]


def _app_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [path for path in sorted(folder.glob("*.py")) if not path.name.startswith("_")]


def _module_name(path: Path, version: str) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    return f"beambridge_site_apps.{path.stem}_{digest}_{version}"


def load_module(path: Path, source: bytes | None = None) -> ModuleType:
    """Import one apps file (the same bytes are imported once per process; changed bytes afresh)."""
    if source is None:
        source = path.read_bytes()
    name = _module_name(path, file_version(source))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:  # the bytes read (and digested), not the file again: it may be rewritten meanwhile
        exec(compile(source, str(path), "exec"), module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def apps_in_module(module: ModuleType) -> list[type[ApplicationDefinition]]:
    """The runnable app classes a module defines (not the ones it imports)."""
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ApplicationDefinition)
        and value.__module__ == module.__name__
        and value.is_runnable()
    ]


_NAME = TypeAdapter(Name)


def _name_problem(name: str) -> str | None:
    """Why the service would refuse ``name`` for an app (None: it would not)."""
    try:
        _NAME.validate_python(name)
    except ValidationError as exc:
        return str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
    return None


def load_apps(folder: Path, builtin: bool = True) -> AppCatalog:
    """Every app in ``folder``'s ``*.py`` files (and the built-in apps unless ``builtin`` is false).

    A file that fails to import, or defines an app name twice, is reported in ``errors`` with the
    reason; the other files still load.
    """
    catalog = AppCatalog(fingerprint=folder_fingerprint(folder))
    if builtin:
        from beambridge.apps import builtin as builtin_apps

        for cls in builtin_apps.BUILTIN_APPS:
            catalog.apps[cls.name] = cls
            catalog.sources[cls.name] = Path(builtin_apps.__file__ or "builtin")
            catalog.versions[cls.name] = None
    for path in _app_files(folder):
        try:
            source = path.read_bytes()
            module = load_module(path, source)
        except AppDefinitionError as exc:
            catalog.errors[path] = str(exc)
            continue
        except Exception:
            catalog.errors[path] = traceback.format_exc(limit=-3).strip()
            continue
        for cls in apps_in_module(module):
            problem = _name_problem(cls.name)
            if problem is not None:  # the service would refuse it: registering and advertising it too
                catalog.errors[path] = f"app {cls.name!r} cannot be registered: its name {problem}"
                continue
            if cls.name in catalog.apps and catalog.sources[cls.name] != path:
                catalog.errors[path] = f"app {cls.name} is also defined in {catalog.sources[cls.name]}"
                continue
            catalog.apps[cls.name] = cls
            catalog.sources[cls.name] = path
            catalog.versions[cls.name] = file_version(source)
    return catalog
