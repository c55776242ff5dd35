"""``ApplicationDefinition``: what a site knows about an app — how to run it and what to do around it.

An app is a Python class in a file of the site's ``apps/`` folder. It either has a shell
``command_template`` (Jinja2; every value is shell-quoted unless marked ``| raw``) or a Python ``run``
method whose JSON-able return value becomes the job's result::

    class Correlate(ApplicationDefinition):
        '''Multi-tau correlation of one raw file.'''
        command_template = "xpcs-corr {{ raw }} -o {{ out }} --stride {{ stride }}"
        parameters = {"raw": AppParameter(type="str"), "out": AppParameter(type="str"),
                      "stride": AppParameter(type="int", required=False, default=1)}

    class Square(ApplicationDefinition):
        def run(self, x: int) -> int:
            return x * x

Hooks (``preprocess``, ``postprocess``, ``handle_error``, ``handle_timeout``) run in the site agent; each
returns the job's next state. Only the hooks a class overrides are announced to the service: for the
others the service applies the default at once (no round trip through the site).
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import logging
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import jinja2.meta
from pydantic import JsonValue

from beambridge.apps.artifacts import save_artifact
from beambridge.schemas.apps import AppCreate, AppHook, AppParameter, TransferSlot
from beambridge.schemas.artifacts import XpcsG2, XpcsTwoTime
from beambridge.schemas.jobs import Job
from beambridge.states import JobState

log = logging.getLogger(__name__)


class AppDefinitionError(Exception):
    """An app class that cannot work as written (names the class and the problem)."""


class ParameterError(ValueError):
    """A job's parameters do not fit its app (names the parameter and the problem)."""


class Raw(str):
    """A template value inserted without shell quoting (``{{ value | raw }}``)."""

    __slots__ = ()


def _shell_finalize(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return " ".join(shlex.quote(str(item)) for item in value)
    return shlex.quote(str(value))


_TEMPLATES = jinja2.Environment(
    undefined=jinja2.StrictUndefined, finalize=_shell_finalize, autoescape=False, keep_trailing_newline=False
)
_TEMPLATES.filters["raw"] = lambda value: Raw(value)


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> jinja2.Template:
    return _TEMPLATES.from_string(source)


_HOOK_NAMES = {
    AppHook.PREPROCESS: "preprocess",
    AppHook.POSTPROCESS: "postprocess",
    AppHook.HANDLE_ERROR: "handle_error",
    AppHook.HANDLE_TIMEOUT: "handle_timeout",
}


class ApplicationDefinition:
    """Base class of every app. Subclass it in a file of the site's ``apps/`` folder."""

    name: ClassVar[str] = ""
    """The app's name on the service (default: the class name)."""
    description: ClassVar[str] = ""
    """Shown to users (default: the class docstring)."""
    command_template: ClassVar[str | None] = None
    """A shell command (Jinja2). Parameters are substituted shell-quoted; ``{{ x | raw }}`` does not quote."""
    parameters: ClassVar[dict[str, AppParameter]] = {}
    """Declared parameters. Undeclared template variables or ``run`` arguments are added as required
    (or optional with their default, for ``run`` arguments that have one)."""
    transfer_slots: ClassVar[dict[str, TransferSlot]] = {}
    environment: ClassVar[dict[str, str]] = {}
    """Environment variables every run of this app sees (added to the site's)."""
    setup_lines: ClassVar[list[str]] = []
    """Shell lines run before a shell command (``module load …``, ``source env.sh``)."""
    cleanup_files: ClassVar[list[str]] = []
    """Glob patterns (relative to the workdir) removed once the job has finished successfully."""
    mpi_capable: ClassVar[bool] = False
    """Whether ``run`` shares one job's work among MPI ranks. A job asking for several ranks (``num_nodes``
    × ``ranks_per_node`` > 1) is started through the site's MPI launcher (mpirun, srun, mpiexec) with
    every rank calling ``run``; rank 0's result is the job's. Other Python apps run once per rank."""
    retry_on_error: ClassVar[bool] = True
    """Whether a failed run (non-zero exit, ``run`` raising) is run again until the job's ``retry_limit``,
    as a timed-out run is. Say ``False`` for work that must not run twice after a failure."""

    @classmethod
    def warm_up(cls) -> None:
        """Make this process ready to run the app at once: import what it needs, compile its kernels.

        A warm pilot (``elastic_queue.warm_pilot``) calls it in each of its workers before their first
        job, so a quick look never waits for an import or a JIT compile. The default does nothing."""

    def __init__(self, job: Job, workdir: Path) -> None:
        self.job = job
        self.workdir = workdir
        self.state_data: dict[str, JsonValue] = {}
        """Stored with the hook's state change (a reason, a message…)."""

    # -- class-level description -------------------------------------------------------------------

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):  # a subclass's own name, never its parent's
            cls.name = cls.__name__
        if not cls.description:
            cls.description = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0]
        has_run = cls.run is not ApplicationDefinition.run
        if cls.command_template is not None and has_run:
            raise AppDefinitionError(f"app {cls.name}: give a command_template or a run() method, not both")
        if cls.command_template is not None:
            try:
                _TEMPLATES.parse(cls.command_template)
            except jinja2.TemplateSyntaxError as exc:
                raise AppDefinitionError(
                    f"app {cls.name}: command_template line {exc.lineno}: {exc}"
                ) from None
        cls.parameters = cls._all_parameters()

    @classmethod
    def is_python(cls) -> bool:
        """Whether the app runs a Python ``run`` method (rather than a shell command)."""
        return cls.run is not ApplicationDefinition.run

    @classmethod
    def is_runnable(cls) -> bool:
        """Whether the class can run at all (abstract helper classes have neither template nor run)."""
        return cls.is_python() or cls.command_template is not None

    @classmethod
    def _all_parameters(cls) -> dict[str, AppParameter]:
        declared = {key: AppParameter.model_validate(value) for key, value in dict(cls.parameters).items()}
        if cls.command_template is not None:
            names = jinja2.meta.find_undeclared_variables(_TEMPLATES.parse(cls.command_template))
            for name in sorted(names - {"job", "workdir"}):
                declared.setdefault(name, AppParameter())
        elif cls.is_python():
            for param in list(inspect.signature(cls.run).parameters.values())[1:]:
                if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                    continue
                if param.default is param.empty:
                    declared.setdefault(param.name, AppParameter())
                else:
                    declared.setdefault(param.name, AppParameter(required=False, default=param.default))
        return declared

    @classmethod
    def overridden_hooks(cls) -> list[AppHook]:
        """The hooks this class overrides (the service applies the defaults of the others itself).

        An app with ``cleanup_files`` counts as overriding ``postprocess``: the site cleans up there."""
        return [
            hook
            for hook, attr in _HOOK_NAMES.items()
            if getattr(cls, attr) is not getattr(ApplicationDefinition, attr)
            or (hook == AppHook.POSTPROCESS and cls.cleanup_files)
        ]

    @classmethod
    def registration(cls, site_id: int) -> AppCreate:
        """The metadata registered with the service (never the code)."""
        return AppCreate(
            site_id=site_id,
            name=cls.name,
            description=cls.description,
            parameters=cls.parameters,
            transfer_slots=cls.transfer_slots,
            hooks=cls.overridden_hooks(),
            retry_on_error=cls.retry_on_error,
        )

    @classmethod
    def validate_parameters(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` checked against the declared parameters, with defaults filled in."""
        unknown = sorted(set(given) - set(cls.parameters))
        if unknown:
            raise ParameterError(f"app {cls.name} has no parameter {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, spec in cls.parameters.items():
            if name not in given:
                if spec.required:
                    raise ParameterError(f"app {cls.name}: parameter {name!r} is required")
                values[name] = spec.default
                continue
            value = given[name]
            if value is None and not spec.required and spec.default is None:
                values[name] = None  # the default, as the service fills it in (e.g. "frame time: the file's")
                continue
            if not spec.type.accepts(value):
                raise ParameterError(
                    f"app {cls.name}: parameter {name!r} must be {spec.type}, not {type(value).__name__}"
                )
            values[name] = value
        return values

    # -- running ------------------------------------------------------------------------------------

    def render_command(self) -> str:
        """The shell command of this job: the template with its (validated, quoted) parameters."""
        if self.command_template is None:
            raise AppDefinitionError(f"app {self.name} has no command_template")
        values = self.validate_parameters(self.job.parameters)
        template = _compiled(self.command_template)
        try:
            return template.render(**values, job=self.job, workdir=Raw(shlex.quote(str(self.workdir))))
        except jinja2.UndefinedError as exc:
            raise ParameterError(f"app {self.name}: {exc.message}") from None

    def run(self, *args: Any, **params: Any) -> JsonValue:
        """A Python app's work, called with the job's parameters in its workdir; returns the result."""
        raise NotImplementedError

    # -- hooks (run by the site agent) --------------------------------------------------------------

    def preprocess(self) -> JobState:
        """Before the run (job STAGED_IN). Default: nothing to do."""
        return JobState.PREPROCESSED

    def postprocess(self) -> JobState:
        """After a successful run (job RUN_DONE). Default: nothing to do."""
        return JobState.POSTPROCESSED

    def handle_error(self) -> JobState:
        """After a failed run (job RUN_ERROR). Default: run again until the retry limit if
        :attr:`retry_on_error`, else the job fails."""
        if self.retry_on_error and self.job.retry_count < self.job.retry_limit:
            return JobState.RESTART_READY
        self.state_data.setdefault("reason", f"the run exited {self.job.return_code}")
        return JobState.FAILED

    def handle_timeout(self) -> JobState:
        """After a timed-out run (job RUN_TIMEOUT). Default: run again until the retry limit."""
        if self.job.retry_count < self.job.retry_limit:
            return JobState.RESTART_READY
        self.state_data.setdefault("reason", f"timed out {self.job.retry_count + 1} times")
        return JobState.FAILED

    def save_artifact(self, name: str, artifact: XpcsG2 | XpcsTwoTime) -> Path:
        """Keep a small typed summary of the result (g2 curves, a two-time map) for the console: the
        launcher uploads it when the run ends (see :mod:`beambridge.apps.artifacts`)."""
        return save_artifact(self.workdir, name, artifact)

    def cleanup(self) -> list[Path]:
        """Remove the workdir files matching :attr:`cleanup_files`; the removed paths."""
        removed: list[Path] = []
        if not self.cleanup_files or not self.workdir.is_dir():
            return removed
        for path in sorted(self.workdir.rglob("*")):
            relative = path.relative_to(self.workdir).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(relative, pattern) for pattern in self.cleanup_files):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed
