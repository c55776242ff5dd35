"""Running one Python app job in the current process: by the launcher's worker pool, or as a command
(``python -m beambridge.apps.execute TASK.json``) for MPI jobs and jobs on other nodes.

A task names the apps folder, the app, the job (as the service returned it) and the workdir. The result
is written as JSON; for an MPI job only rank 0 writes it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from beambridge.apps.loader import AppCatalog, folder_fingerprint, load_apps
from beambridge.schemas.jobs import Job

_CATALOGS: dict[str, AppCatalog] = {}
_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID", "PALS_RANKID")


class AppFailed(Exception):
    """The app raised; the message is the traceback's last lines."""


def catalog(apps_folder: str) -> AppCatalog:
    """The apps of a folder, loaded once per process and again whenever a file of it has been added,
    removed or rewritten (a warm worker must run the app the launcher advertised, not the copy it saw
    first)."""
    loaded = _CATALOGS.get(apps_folder)
    if loaded is not None and loaded.fingerprint == folder_fingerprint(Path(apps_folder)):
        return loaded
    _CATALOGS[apps_folder] = load_apps(Path(apps_folder))
    return _CATALOGS[apps_folder]


@contextlib.contextmanager
def job_context(workdir: Path, environment: Mapping[str, str], capture: bool) -> Iterator[None]:
    """Run inside ``workdir`` with ``environment`` added, and stdout/stderr in ``job.out``/``job.err``."""
    old_cwd = os.getcwd()
    old_env = {key: os.environ.get(key) for key in environment}
    saved: list[int] = []
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    os.environ.update(environment)
    try:
        if capture:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, name in ((1, "job.out"), (2, "job.err")):
                saved.append(os.dup(fd))
                target = os.open(workdir / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(target, fd)
                os.close(target)
        yield
    finally:
        if capture:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=False):
                os.dup2(copy, fd)
                os.close(copy)
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.chdir(old_cwd)


def run_task(task: Mapping[str, Any], *, capture: bool = True) -> Any:
    """Run one task; the app's (JSON-able) result. :class:`AppFailed` if the app raised."""
    app_class = catalog(task["apps_folder"]).get(task["app"])
    job = Job.model_validate(task["job"])
    workdir = Path(task["workdir"])
    with job_context(workdir, task.get("environment", {}), capture):
        try:
            app = app_class(job, workdir)
            params = app_class.validate_parameters(job.parameters)
            result = app.run(**params)
            orjson.dumps(result)  # a result that is not JSON is the app's error, not the launcher's
        except Exception as exc:
            lines = traceback.format_exception(exc)
            print("".join(lines), file=sys.stderr, end="")
            raise AppFailed("".join(lines[-3:]).strip()[-4000:]) from None
    return result


def _rank() -> int:
    for name in _RANK_VARIABLES:
        if name in os.environ:
            return int(os.environ[name])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command entry: run the task file given, write ``<task>.result.json`` on rank 0; exit 1 on failure."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m beambridge.apps.execute TASK.json", file=sys.stderr)
        return 2
    task_file = Path(args[0])
    task = orjson.loads(task_file.read_bytes())
    try:
        result = run_task(task, capture=False)
    except AppFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 1
    if _rank() == 0:
        out = task_file.with_suffix(".result.json")
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(result))
        tmp.replace(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
