"""Filling a workflow's templates for one dataset (Jinja2, sandboxed: a workflow is user input).

A template that is exactly one expression (``"{{ metadata.frames }}"``) keeps the expression's type (an
int stays an int); any other string renders to a string. Undefined names are errors that name the step,
the field and the missing name, never a silent empty string.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from beambridge.schemas.workflows import Workflow, WorkflowStep
from beambridge.server.errors import InvalidRequestError

_WHOLE_EXPRESSION = re.compile(r"^\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}$", re.DOTALL)
MAX_RENDERED = 100_000


def _match(value: Any, pattern: str, group: int | str = 1) -> str | None:
    """``{{ file.name | match('_T(\\d+)') }}``: the group of the first match, or None."""
    found = re.search(pattern, str(value))
    return None if found is None else found.group(group)


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters["match"] = _match
    return env


_ENV = _environment()


def template_context(workflow: Workflow, dataset: str, key: str, given: dict[str, Any]) -> dict[str, Any]:
    """The variables every template of one submission sees.

    ``file`` (name, stem, suffix, parent, path) comes from the dataset's path; ``fields`` from the
    workflow's ``filename_pattern``; everything the submitter sent (``metadata``, ``run``, ``stop``…) is
    there under its own name.
    """
    path = PurePosixPath(dataset)
    fields: dict[str, Any] = {}
    if workflow.filename_pattern:
        found = re.search(workflow.filename_pattern, path.name)
        if found is None:
            raise InvalidRequestError(
                f"dataset {path.name!r} does not match the workflow's filename_pattern "
                f"{workflow.filename_pattern!r}"
            )
        fields = found.groupdict()
    extra_file = given.get("file")
    context = dict(given)
    context.update(
        workflow=workflow.name,
        dataset=dataset,
        key=key,
        fields=fields,
        file={
            "path": dataset,
            "name": path.name,
            "stem": path.stem,
            "suffix": path.suffix,
            "parent": str(path.parent),
            **(extra_file if isinstance(extra_file, dict) else {}),
        },
    )
    return context


def render_value(value: Any, context: dict[str, Any], where: str) -> Any:
    """``value`` with every string in it rendered as a template."""
    if isinstance(value, str):
        return _render_string(value, context, where)
    if isinstance(value, list):
        return [render_value(item, context, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: render_value(item, context, f"{where}.{key}") for key, item in value.items()}
    return value


def _render_string(text: str, context: dict[str, Any], where: str) -> Any:
    if "{" not in text:
        return text
    try:
        whole = _WHOLE_EXPRESSION.match(text.strip())
        if whole is not None:
            result = _ENV.compile_expression(whole.group("expr"), undefined_to_none=False)(**context)
            if isinstance(result, StrictUndefined):
                str(result)  # raises the UndefinedError that names the missing variable
        else:
            result = _ENV.from_string(text).render(**context)
    except TemplateError as err:
        raise InvalidRequestError(f"{where}: template {text!r} failed: {err}") from None
    except Exception as err:  # a filter given the wrong type, a regex that does not compile…
        raise InvalidRequestError(f"{where}: template {text!r} failed: {type(err).__name__}: {err}") from None
    if isinstance(result, str) and len(result) > MAX_RENDERED:
        raise InvalidRequestError(f"{where}: template renders to more than {MAX_RENDERED} characters")
    if not isinstance(result, str | int | float | bool | list | dict | type(None)):
        result = str(result)
    return result


def render_step(step: WorkflowStep, context: dict[str, Any]) -> dict[str, Any]:
    """The step's parameters, workdir and transfers for one dataset."""
    local = {**context, "step": step.name}
    where = f"step {step.name!r}"
    workdir = render_value(step.workdir, local, f"{where} workdir")
    if not isinstance(workdir, str):
        workdir = str(workdir)
    return {
        "parameters": render_value(step.parameters, local, f"{where} parameters"),
        "workdir": workdir,
        "transfers": render_value(step.transfers, local, f"{where} transfers"),
    }
