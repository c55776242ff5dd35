"""ApplicationDefinition: templates, parameters, hooks, the loader."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from beambridge.apps.base import AppDefinitionError, ApplicationDefinition, ParameterError
from beambridge.apps.loader import load_apps
from beambridge.schemas.apps import AppHook, AppParameter, ParameterType
from beambridge.schemas.jobs import Job
from beambridge.states import JobState


def job(**fields: Any) -> Job:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "id": 1,
        "app_id": 1,
        "site_id": 1,
        "workdir": "w",
        "state": JobState.RUNNING,
        "parameters": {},
        "tags": {},
        "data": {},
        "launch_params": {},
        "num_nodes": 1,
        "ranks_per_node": 1,
        "threads_per_rank": 1,
        "gpus_per_rank": 0,
        "node_packing_count": 1,
        "wall_time_limit_min": 0,
        "parent_ids": [],
        "transfers": {},
        "retry_count": 0,
        "retry_limit": 3,
        "priority": 0,
        "session_id": None,
        "batch_job_id": None,
        "return_code": None,
        "result": None,
        "error": None,
        "created_at": now,
        "updated_at": now,
    }
    return Job.model_validate({**base, **fields})


class Echo(ApplicationDefinition):
    """Echo things."""

    command_template = "echo {{ flag | raw }} {{ word }} {{ words }}"
    parameters = {"words": AppParameter(type=ParameterType.LIST, required=False, default=[])}  # noqa: RUF012


def test_template_values_are_shell_quoted_so_parameters_cannot_inject_commands(tmp_path: Path) -> None:
    evil = "x; touch pwned; $(touch pwned2) `touch pwned3`"
    app = Echo(job(parameters={"word": evil, "words": ["a b", "c'd"], "flag": "-n"}), tmp_path)
    command = app.render_command()
    out = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout == f"{evil} a b c'd"  # -n passed raw: no newline
    assert not list(tmp_path.iterdir())


def test_undeclared_template_variables_become_required_parameters() -> None:
    assert set(Echo.parameters) == {"word", "words", "flag"}
    assert Echo.parameters["word"].required and not Echo.parameters["words"].required
    with pytest.raises(ParameterError, match="'word' is required"):
        Echo.validate_parameters({"flag": "x"})


def test_run_signature_gives_parameters_with_defaults_and_types_are_checked() -> None:
    class Scale(ApplicationDefinition):
        parameters = {"factor": AppParameter(type=ParameterType.FLOAT)}  # noqa: RUF012

        def run(self, values: list[float], factor: float, offset: int = 0) -> list[float]:
            return [v * factor + offset for v in values]

    assert Scale.is_python() and Scale.name == "Scale"
    assert Scale.parameters["offset"].default == 0 and not Scale.parameters["offset"].required
    assert Scale.validate_parameters({"values": [1], "factor": 2}) == {
        "values": [1],
        "factor": 2,
        "offset": 0,
    }
    with pytest.raises(ParameterError, match="'factor' must be float, not str"):
        Scale.validate_parameters({"values": [1], "factor": "2"})
    with pytest.raises(ParameterError, match="'factor' must be float, not bool"):
        Scale.validate_parameters({"values": [1], "factor": True})
    with pytest.raises(ParameterError, match="has no parameter bogus"):
        Scale.validate_parameters({"values": [1], "factor": 2, "bogus": 1})


def test_bad_definitions_are_refused_with_the_reason() -> None:
    with pytest.raises(AppDefinitionError, match="not both"):

        class Both(ApplicationDefinition):
            command_template = "true"

            def run(self) -> None:
                return None

    with pytest.raises(AppDefinitionError, match="command_template line 1"):

        class Broken(ApplicationDefinition):
            command_template = "echo {{ oops"


def test_only_overridden_hooks_are_announced_and_defaults_decide_the_rest(tmp_path: Path) -> None:
    class Plain(ApplicationDefinition):
        command_template = "true"

    class Careful(ApplicationDefinition):
        command_template = "true"
        cleanup_files = ["*.tmp"]  # noqa: RUF012

        def handle_error(self) -> JobState:
            return JobState.RESTART_READY

    assert Plain.overridden_hooks() == []
    assert Careful.overridden_hooks() == [AppHook.POSTPROCESS, AppHook.HANDLE_ERROR]
    assert Plain(job(retry_count=3, retry_limit=3), tmp_path).handle_timeout() == JobState.FAILED
    assert Plain(job(retry_count=1, retry_limit=3), tmp_path).handle_timeout() == JobState.RESTART_READY
    assert (
        Plain(job(return_code=2, retry_count=0, retry_limit=3), tmp_path).handle_error()
        == JobState.RESTART_READY
    )
    assert Plain(job(return_code=2, retry_count=3, retry_limit=3), tmp_path).handle_error() == JobState.FAILED

    class Once(Plain):
        retry_on_error = False

    assert Once(job(return_code=2, retry_count=0, retry_limit=3), tmp_path).handle_error() == JobState.FAILED
    assert Once.registration(1).retry_on_error is False and Plain.registration(1).retry_on_error is True
    (tmp_path / "a.tmp").write_text("x")
    (tmp_path / "keep.txt").write_text("x")
    assert [p.name for p in Careful(job(), tmp_path).cleanup()] == ["a.tmp"]
    assert (tmp_path / "keep.txt").exists()


def test_loader_reports_broken_files_and_keeps_the_good_ones(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(
        "from beambridge.apps.base import ApplicationDefinition\n"
        "class Good(ApplicationDefinition):\n    command_template = 'true'\n"
    )
    (tmp_path / "bad.py").write_text("import no_such_module_here\n")
    (tmp_path / "dup.py").write_text(
        "from beambridge.apps.base import ApplicationDefinition\n"
        "class Good(ApplicationDefinition):\n    command_template = 'false'\n"
    )
    catalog = load_apps(tmp_path)
    assert "Good" in catalog.apps and "XpcsMultiTau" in catalog.apps
    assert "no_such_module_here" in catalog.errors[tmp_path / "bad.py"]
    assert "app Good is also defined in" in catalog.errors[tmp_path / "good.py"]  # files load in name order
    with pytest.raises(KeyError, match="no app 'Nope'"):
        catalog.get("Nope")


def test_a_subclass_of_an_app_is_an_app_of_its_own_name() -> None:
    """A subclass used to inherit its parent's name and silently replace the parent when apps load."""

    class Parent(ApplicationDefinition):
        command_template = "echo parent"

    class Child(Parent):
        command_template = "echo child"

    class Named(Parent):
        name = "Renamed"

    assert (Parent.name, Child.name, Named.name) == ("Parent", "Child", "Renamed")


def test_parameters_the_service_filled_with_their_default_validate_on_the_site() -> None:
    """The service stores a job's parameters with every optional default filled in (``None`` too); the
    launcher validates them again before ``run``. An XPCS job without ``frame_time`` failed there:
    "parameter 'frame_time' must be float, not NoneType"."""
    from beambridge.apps.xpcs import XpcsMultiTau
    from beambridge.server.jobs.parameters import resolve_parameters

    resolved, problems = resolve_parameters("XpcsMultiTau", XpcsMultiTau.parameters, {"raw": "r.h5"})
    assert problems == [] and resolved["frame_time"] is None
    assert XpcsMultiTau.validate_parameters(resolved)["frame_time"] is None
    with pytest.raises(ParameterError, match="'frame_time' must be float, not str"):
        XpcsMultiTau.validate_parameters({**resolved, "frame_time": "fast"})
