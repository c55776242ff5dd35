"""Finding the apps of a site: every ``ApplicationDefinition`` subclass in the ``apps/`` folder's files."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from beambridge.apps.base import AppDefinitionError, ApplicationDefinition


@dataclass
class AppCatalog:
    """The apps found in one folder, by name, with the files that could not be loaded."""

    apps: dict[str, type[ApplicationDefinition]] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    errors: dict[Path, str] = field(default_factory=dict)

    def get(self, name: str) -> type[ApplicationDefinition]:
        """The app called ``name``; ``KeyError`` naming the known ones otherwise."""
        try:
            return self.apps[name]
        except KeyError:
            known = ", ".join(sorted(self.apps)) or "none"
            raise KeyError(f"no app {name!r} in this site's apps folder (known: {known})") from None


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    return f"beambridge_site_apps.{path.stem}_{digest}"


def load_module(path: Path) -> ModuleType:
    """Import one apps file (cached: the same file is imported once per process)."""
    name = _module_name(path)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
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


def load_apps(folder: Path, builtin: bool = True) -> AppCatalog:
    """Every app in ``folder``'s ``*.py`` files (and the built-in apps unless ``builtin`` is false).

    A file that fails to import, or defines an app name twice, is reported in ``errors`` with the
    reason; the other files still load.
    """
    catalog = AppCatalog()
    if builtin:
        from beambridge.apps import builtin as builtin_apps

        for cls in builtin_apps.BUILTIN_APPS:
            catalog.apps[cls.name] = cls
            catalog.sources[cls.name] = Path(builtin_apps.__file__ or "builtin")
    for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
        if path.name.startswith("_"):
            continue
        try:
            module = load_module(path)
        except AppDefinitionError as exc:
            catalog.errors[path] = str(exc)
            continue
        except Exception:
            catalog.errors[path] = traceback.format_exc(limit=-3).strip()
            continue
        for cls in apps_in_module(module):
            if cls.name in catalog.apps and catalog.sources[cls.name] != path:
                catalog.errors[path] = f"app {cls.name} is also defined in {catalog.sources[cls.name]}"
                continue
            catalog.apps[cls.name] = cls
            catalog.sources[cls.name] = path
    return catalog
