"""``beambridge placement``: the placement simulator (``simulate``, ``scenarios``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from beambridge.cli.output import JsonFlag, console, print_json
from beambridge.placement.policies import POLICIES

if TYPE_CHECKING:  # the simulator (numpy, the scenario models) loads only when a command runs
    from beambridge.placement.simulator import SimulationResult

app = typer.Typer(
    help="Placement across sites: simulate policies on modelled facilities.", no_args_is_help=True
)


def results_table(results: Sequence[SimulationResult], title: str) -> Table:
    """One row per policy: throughput, latency, re-placements, stranded jobs, decision cost."""
    table = Table(title=title, header_style="bold")
    for header in (
        "policy",
        "jobs",
        "jobs/min",
        "latency p50 s",
        "latency p95 s",
        "re-placed",
        "stranded",
        "hedged (won)",
        "explored",
        "decision µs/job",
        "wall s",
    ):
        table.add_column(header, justify="left" if header == "policy" else "right")
    for r in results:
        table.add_row(
            r.policy,
            f"{r.finished:,}/{r.jobs:,}",
            f"{r.jobs_per_min:.1f}",
            f"{r.latency_median_s:.1f}",
            f"{r.latency_p95_s:.1f}",
            f"{r.replaced:,}",
            f"{r.stranded:,}",
            f"{r.hedged:,} ({r.hedge_wins:,})",
            f"{r.explored:,}",
            f"{r.decision_us_per_job:.0f}",
            f"{r.wall_s:.2f}",
        )
    return table


def sites_table(results: Sequence[SimulationResult], title: str) -> Table:
    """Jobs/min per site, one column per policy."""
    table = Table(title=title, header_style="bold")
    table.add_column("site")
    for r in results:
        table.add_column(f"{r.policy} jobs/min", justify="right")
    for site in results[0].site_jobs_per_min:
        table.add_row(site, *(f"{r.site_jobs_per_min[site]:.1f} ({r.site_jobs[site]:,})" for r in results))
    table.add_row("[bold]total[/]", *(f"[bold]{r.jobs_per_min:.1f}[/] ({r.finished:,})" for r in results))
    return table


def run_policies(
    scenario_ref: str, policies: Sequence[str], *, show_progress: bool = True
) -> list[SimulationResult]:
    """Simulate each policy on the scenario, with a progress bar per policy."""
    from beambridge.placement.simulator import load_scenario, simulate

    scenario = load_scenario(scenario_ref)
    results = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not show_progress,
    ) as bar:
        for policy in policies:
            task = bar.add_task(f"{scenario.name}: {policy}", total=1.0)

            def advance(done: float, task: TaskID = task) -> None:
                bar.update(task, completed=done)

            results.append(simulate(scenario, policy, progress=advance))
            bar.update(task, completed=1.0)
    return results


def _as_json(result: SimulationResult) -> dict[str, object]:
    return {
        "scenario": result.scenario,
        "policy": result.policy,
        "jobs": result.jobs,
        "finished": result.finished,
        "stranded": result.stranded,
        "replaced": result.replaced,
        "hedged": result.hedged,
        "hedge_wins": result.hedge_wins,
        "explored": result.explored,
        "jobs_per_min": round(result.jobs_per_min, 3),
        "latency_median_s": round(result.latency_median_s, 3),
        "latency_p95_s": round(result.latency_p95_s, 3),
        "site_jobs": result.site_jobs,
        "site_jobs_per_min": {k: round(v, 3) for k, v in result.site_jobs_per_min.items()},
        "decision_us_per_job": round(result.decision_us_per_job, 1),
        "wall_s": round(result.wall_s, 3),
    }


@app.command("simulate")
def simulate_cmd(
    scenario: Annotated[
        str, typer.Argument(help="A scenario file, or the name of a shipped one (see 'scenarios').")
    ],
    policy: Annotated[
        list[str] | None,
        typer.Option(
            "--policy", "-p", help=f"Policy to run (repeatable; default all: {', '.join(POLICIES)})."
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write jobs per site over time to this PNG.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Replay a scenario's arrival trace against its modelled sites, once per policy, and compare."""
    from beambridge.placement.simulator import ScenarioError

    chosen = list(dict.fromkeys(policy or POLICIES))
    unknown = [p for p in chosen if p not in POLICIES]
    if unknown:
        raise typer.BadParameter(
            f"unknown policy {unknown[0]!r} (known: {', '.join(POLICIES)})", param_hint="--policy"
        )
    try:
        results = run_policies(scenario, chosen, show_progress=not as_json)
    except ScenarioError as exc:
        raise typer.BadParameter(str(exc), param_hint="SCENARIO") from None
    if as_json:
        print_json([_as_json(r) for r in results])
    else:
        name = results[0].scenario
        console.print(results_table(results, f"{name}: policies compared"))
        console.print(sites_table(results, f"{name}: jobs/min per site (jobs finished)"))
    if plot is not None:
        from beambridge.placement.simulator.plot import plot_jobs_per_site

        written = plot_jobs_per_site(results, plot)
        if not as_json:
            console.print(f"plot: {written}")


@app.command("scenarios")
def scenarios_cmd() -> None:
    """List the scenarios shipped with beambridge."""
    from beambridge.placement.simulator import load_scenario, shipped_scenarios

    for name in shipped_scenarios():
        typer.echo(f"{name}: {load_scenario(name).description}")
