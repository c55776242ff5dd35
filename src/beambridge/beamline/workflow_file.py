"""Reading a workflow file (YAML) into the :class:`~beambridge.schemas.workflows.Workflow` model.

::

    name: xpcs
    filename_pattern: '(?P<sample>[A-Za-z0-9]+)_(?P<temp>\\d+)C'
    steps:
      - name: quick
        app: xpcs-multitau
        quick_look: true
        priority: 100
        parameters: {raw: '{{ file.name }}', frames: '0:100'}
      - name: full
        app: xpcs-multitau
        after: [quick]
        parameters: {raw: '{{ file.name }}', fit: true}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from beambridge.schemas.workflows import Workflow


class WorkflowFileError(ValueError):
    """A workflow file that cannot be read, is not YAML, or does not describe a valid workflow."""


def parse_workflow(text: str, *, source: str = "workflow") -> Workflow:
    """The workflow ``text`` (YAML or JSON) describes; :class:`WorkflowFileError` naming the problem."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise WorkflowFileError(f"{source} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise WorkflowFileError(f"{source} must be a mapping with 'name' and 'steps'")
    try:
        return Workflow.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'workflow'}: {e['msg']}" for e in err.errors()[:5]
        )
        raise WorkflowFileError(f"{source}: {problems}") from None


def load_workflow(path: str | Path) -> Workflow:
    """The workflow in the file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise WorkflowFileError(f"cannot read workflow file {path}: {err}") from None
    return parse_workflow(text, source=str(path))
