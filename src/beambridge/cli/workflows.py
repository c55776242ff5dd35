"""``beambridge workflow`` (store and list workflow files), ``beambridge submit`` and
``beambridge submissions`` (datasets through workflows, with time to first and full result)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from beambridge.cli.connection import open_client
from beambridge.cli.output import Column, JsonFlag, print_json, show

app = typer.Typer(help="Workflow files: the jobs each dataset goes through.", no_args_is_help=True)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


SUBMISSION_COLUMNS: list[Column] = [
    "id",
    "workflow",
    ("dataset", lambda s: Path(s.dataset).name),
    "source",
    ("steps", lambda s: " ".join(f"{name}:{step.status.value}" for name, step in s.steps.items())),
    ("first result (s)", lambda s: _seconds(s.first_result_s)),
    ("full result (s)", lambda s: _seconds(s.full_result_s)),
]


@app.command("put")
def put(
    path: Annotated[Path, typer.Argument(help="The workflow file (YAML).")], as_json: JsonFlag = False
) -> None:
    """Store (or replace) a workflow from its file."""
    from beambridge.beamline.workflow_file import load_workflow

    workflow = load_workflow(path)
    with open_client() as client:
        stored = client.workflows.put(workflow)
    if as_json:
        print_json(stored)
    else:
        steps = ", ".join(step.name for step in workflow.steps)
        typer.echo(f"stored workflow {stored.name!r} (id {stored.id}): {steps}")


@app.command("ls")
def list_workflows(as_json: JsonFlag = False) -> None:
    """List your workflows."""
    with open_client() as client:
        items = client.workflows.list()
    columns: list[Column] = [
        "id",
        "name",
        ("steps", lambda w: ", ".join(s.name for s in w.spec.steps)),
        ("quick look", lambda w: next((s.name for s in w.spec.steps if s.quick_look), "")),
        "updated_at",
    ]
    show(items, columns, as_json=as_json, title="Workflows")


def submit(
    workflow: Annotated[str, typer.Argument(help="The stored workflow's name.")],
    dataset: Annotated[str, typer.Argument(help="The dataset's path at the beamline.")],
    key: Annotated[
        str | None,
        typer.Option(help="Idempotency key (default: the dataset's path, size, mtime and SHA-256)."),
    ] = None,
    metadata: Annotated[str, typer.Option(help="Template metadata as a JSON object.")] = "{}",
    as_json: JsonFlag = False,
) -> None:
    """Run a workflow on one dataset, once: submitting the same key again answers with the same jobs."""
    from beambridge.beamline.datasets import dataset_key

    try:
        meta: Any = json.loads(metadata)
    except json.JSONDecodeError as err:
        raise typer.BadParameter(f"--metadata is not JSON: {err}") from None
    if not isinstance(meta, dict):
        raise typer.BadParameter("--metadata must be a JSON object")
    path = Path(dataset)
    if key is None:
        if not path.is_file():
            raise typer.BadParameter(f"{dataset} is not a file here: give --key")
        key = dataset_key(path)
    closed = datetime.fromtimestamp(path.stat().st_mtime, UTC) if path.is_file() else None
    with open_client() as client:
        answer = client.submissions.submit(
            workflow, key=key, dataset=dataset, context={"metadata": meta}, closed_at=closed, source="sdk"
        )
    if as_json:
        print_json(answer)
        return
    sub = answer.submission
    verb = "submitted" if answer.created else "already submitted"
    jobs = ", ".join(f"{name}={step.job_id or step.status.value}" for name, step in sub.steps.items())
    typer.echo(f"{verb}: submission {sub.id} of {Path(dataset).name} ({jobs})")


def submissions(
    workflow: Annotated[str | None, typer.Option(help="Only this workflow's submissions.")] = None,
    last: Annotated[int, typer.Option(help="Show the newest N.", min=1, max=5000)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Datasets submitted, with the seconds from file closed (or run stop) to the first and full result."""
    with open_client() as client:
        items = list(client.submissions.list(workflow=workflow))[-last:]
    show(items, SUBMISSION_COLUMNS, as_json=as_json, title="Submissions")
    if items and not as_json:
        from beambridge.beamline.latency import latency_summary

        typer.echo(latency_summary(items))
