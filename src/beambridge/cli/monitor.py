"""``beambridge monitor --workflow FILE|NAME``: the change detector, timing watch and alerts of a workflow,
without a folder watcher (for a beamline that submits from Bluesky or over HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from beambridge.cli.beamline_options import (
    FirstFeedbackLimitOption,
    WebhookOption,
    log_to_stderr,
    stop_on_signals,
)
from beambridge.cli.connection import open_client


def monitor(
    workflow: Annotated[
        str,
        typer.Option("--workflow", "-w", help="A workflow file (YAML), or the name of a stored workflow."),
    ],
    webhook: WebhookOption = None,
    first_feedback_limit: FirstFeedbackLimitOption = 60.0,
    every: Annotated[float, typer.Option(help="Seconds between looks at the service.", min=0.1)] = 0.5,
    timings: Annotated[
        bool, typer.Option(help="Follow the quick look's queue wait, run time and latency for changes.")
    ] = True,
) -> None:
    """Decide held steps with the change detector, follow the workflow's timings and send alerts, until
    Ctrl-C. Restart-safe: the detectors are rebuilt from the submissions already decided."""
    from beambridge.beamline.alerts import Webhooks
    from beambridge.beamline.monitor import AlertLimits, WorkflowMonitor
    from beambridge.beamline.workflow_file import load_workflow

    with open_client() as client:
        if Path(workflow).is_file():
            spec = load_workflow(workflow)
            client.workflows.put(spec)
        else:
            stored = client.workflows.get(workflow)
            if stored is None:
                raise typer.BadParameter(
                    f"{workflow!r} is neither a workflow file nor a stored workflow's name",
                    param_hint="--workflow",
                )
            spec = stored.spec
        log_to_stderr()
        stop = stop_on_signals()
        watcher = WorkflowMonitor(
            client,
            spec,
            hooks=Webhooks(list(webhook or [])),
            limits=AlertLimits(first_feedback_s=first_feedback_limit),
        )
        if not timings:
            watcher.timings = None
        watcher.replay()
        gated = [step.name for step in spec.steps if step.skip_unless_changed]
        typer.echo(
            f"monitoring workflow {spec.name!r}"
            + (f": deciding {', '.join(gated)}" if gated else "")
            + f"; {len(webhook or [])} webhook(s) (Ctrl-C stops)"
        )
        watcher.run(stop, every_s=every)
    typer.echo(f"stopped: {len(watcher.decisions)} step decision(s)")
