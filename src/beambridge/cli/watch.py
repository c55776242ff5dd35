"""``beambridge watch DIR --workflow FILE``: submit each complete dataset in a folder, exactly once."""

from __future__ import annotations

import re
import threading
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


def watch(
    directory: Annotated[Path, typer.Argument(help="The folder the detector writes into.")],
    workflow: Annotated[Path, typer.Option("--workflow", "-w", help="The workflow file (YAML).")],
    pattern: Annotated[str, typer.Option(help="Which file names are datasets (glob).")] = "*.h5",
    settle: Annotated[
        float, typer.Option(help="Seconds a file must stay unchanged after its last write.", min=0)
    ] = 1.0,
    marker: Annotated[
        str | None,
        typer.Option(
            help="A marker file that says a dataset is complete, e.g. '{name}.done' or '{stem}.ok'."
        ),
    ] = None,
    recursive: Annotated[bool, typer.Option(help="Watch subfolders too.")] = True,
    group: Annotated[
        str | None,
        typer.Option(
            help="A dataset of several files: a regex over paths relative to DIRECTORY whose group 'dataset' "
            "(or first group) names it, e.g. '^(?P<dataset>scan_\\d+)/'. Submitted once when complete.",
        ),
    ] = None,
    group_files: Annotated[
        int | None, typer.Option(help="With --group: how many files make a dataset complete.", min=1)
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Submit an HDF5 file the detector writes in SWMR mode (announcing expected_frames) as soon "
            "as its first frame lands, with the template variable 'live' true; report its close later.",
        ),
    ] = False,
    state: Annotated[
        Path | None, typer.Option(help="The journal of submitted files (default: under BEAMBRIDGE_HOME).")
    ] = None,
    rescan: Annotated[float, typer.Option(help="Seconds between full rescans (a safety net).", min=1)] = 30.0,
    webhook: WebhookOption = None,
    first_feedback_limit: FirstFeedbackLimitOption = 60.0,
) -> None:
    """Watch a folder and run a workflow on each complete dataset, once, even across restarts."""
    from beambridge.beamline.watcher import CompletionRule, FolderWatcher, default_journal
    from beambridge.beamline.workflow_file import load_workflow

    if not directory.is_dir():
        raise typer.BadParameter(f"{directory} is not a directory")
    if marker is not None and "{name}" not in marker and "{stem}" not in marker:
        raise typer.BadParameter("--marker must contain {name} or {stem}, e.g. '{name}.done'")
    spec = load_workflow(workflow)
    log_to_stderr()
    if group is not None:
        try:
            re.compile(group)
        except re.error as err:
            raise typer.BadParameter(f"not a regular expression: {err}", param_hint="--group") from None
        if live:
            raise typer.BadParameter("--live follows one growing file: it does not combine with --group")
    elif group_files is not None:
        raise typer.BadParameter("--group-files needs --group")
    rule = CompletionRule(
        pattern=pattern,
        settle_s=settle,
        marker=marker,
        recursive=recursive,
        live=live,
        group=group,
        group_files=group_files,
    )
    stop = stop_on_signals()
    with open_client() as client:
        client.workflows.put(spec)
        watcher = FolderWatcher(
            client,
            directory,
            spec.name,
            rule,
            state or default_journal(directory, spec.name),
            rescan_s=rescan,
        )
        monitor_thread = None
        if spec.change_detection is not None or webhook:
            from beambridge.beamline.alerts import Webhooks
            from beambridge.beamline.monitor import AlertLimits, WorkflowMonitor

            monitor = WorkflowMonitor(
                client,
                spec,
                hooks=Webhooks(list(webhook or [])),
                limits=AlertLimits(first_feedback_s=first_feedback_limit),
            )
            monitor.replay()
            monitor_thread = threading.Thread(target=monitor.run, args=(stop,), name="monitor", daemon=True)
            monitor_thread.start()
        typer.echo(f"watching {directory.resolve()} for {pattern} → workflow {spec.name!r} (Ctrl-C stops)")
        stats = watcher.run(stop)
        if monitor_thread is not None:
            monitor_thread.join(timeout=10)
    typer.echo(
        f"stopped: {stats.submitted} submitted ({stats.live} while still being written), "
        f"{stats.repeated} already known, {stats.refused} refused"
    )
