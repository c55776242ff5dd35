"""Placement: each policy on the same traces, in the same run — the simulator half of issue 13's benchmark.

Parts (each prints its table; the headline comes last):

* ``simulator`` — every policy on each scenario: the shipped ``balsam-paper`` (APS XPCS to Theta, Summit
  and Cori as in Balsam's SC21 runs), the same trace with the fastest site (Cori) down from minute 5 to
  minute 11 (``balsam-paper-outage``), and ``internet-scale`` (10 facilities, ~100,000 jobs, two
  outages and a drain). Jobs/min per site and in total, latency (arrival → result back) median and
  p95, jobs re-placed, jobs stranded, decision cost per job inside the simulation, wall time to
  simulate. A plot of jobs per site over time per policy goes to ``--out``.
* ``calibration`` — the simulator against the paper's own figures: one job at a time per route
  (median latency) and the load-balancing runs (jobs/min).
* ``decision`` — the cost of one placement decision on a 10-site snapshot, batches of 500 jobs.

* ``real`` — the real system on this machine (``benchmarks/placement_real.py``): three sites of 1, 2 and
  4 slots, a proxy app whose run time depends on the site, one arrival trace, the fastest site killed
  (SIGKILL to its agent and pilots) midway; each policy on a fresh system. Jobs/min per site and in
  total, latency median and p95, re-placed, stranded, outage → last re-placement, and what placement
  adds per job to a bulk create. The plot goes to ``--plot`` (default ``docs/img/placement-real.png``).

Run: ``.venv/bin/python benchmarks/placement.py`` (``--quick`` skips internet-scale; ``--part`` picks).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from beambridge.cli.placement import results_table, sites_table  # noqa: E402
from beambridge.placement import (  # noqa: E402
    AppSpec,
    BacklogGroup,
    JobRequest,
    SitePriors,
    SiteSnapshot,
    Snapshot,
    place_batch,
)
from beambridge.placement.estimators import RunTimeEstimate  # noqa: E402
from beambridge.placement.policies import POLICIES  # noqa: E402
from beambridge.placement.simulator import Scenario, SimulationResult, load_scenario, simulate  # noqa: E402
from beambridge.placement.simulator.plot import plot_jobs_per_site  # noqa: E402

console = Console(width=160)
PAPER_LATENCY = {"theta": 140.7, "summit": 133.7, "cori": 99.6}
PAPER_JOBS_PER_MIN = {"round_robin": 46.3, "shortest_backlog": 50.3}


def with_outage(name: str) -> Scenario:
    """``balsam-paper`` with Cori (its fastest site) down from minute 5 to minute 11."""
    base = load_scenario(name)
    data = base.model_dump()
    data["name"] = f"{name}-outage"
    data["description"] = base.description + "; Cori down from minute 5 to minute 11"
    data["outages"] = [{"site": "cori", "start_s": 300, "end_s": 660, "kind": "site"}]
    return Scenario.model_validate(data)


def part_simulator(args: argparse.Namespace, facts: dict[str, Any]) -> None:
    scenarios: list[Scenario] = [load_scenario("balsam-paper"), with_outage("balsam-paper")]
    if not args.quick:
        scenarios.append(load_scenario("internet-scale"))
    all_results: dict[str, list[SimulationResult]] = {}
    for scenario in scenarios:
        results = []
        for policy in args.policy:
            console.print(f"[dim]{scenario.name}: {policy} …[/]")
            results.append(simulate(scenario, policy))
        all_results[scenario.name] = results
        console.print(results_table(results, f"{scenario.name}: policies compared"))
        console.print(sites_table(results, f"{scenario.name}: jobs/min per site (jobs finished)"))
        plot = plot_jobs_per_site(results, args.out / f"placement-{scenario.name}.png")
        console.print(f"plot: {plot}")
    facts["simulator"] = all_results


def part_calibration(args: argparse.Namespace, facts: dict[str, Any]) -> None:
    base = load_scenario("balsam-paper")
    table = Table(title="balsam-paper: the simulator against the paper's figures", header_style="bold")
    for header in ("measure", "paper", "simulated", "difference"):
        table.add_column(header, justify="left" if header == "measure" else "right")
    for site, paper in PAPER_LATENCY.items():
        data = base.model_dump()
        data["arrivals"] = [
            {
                "app": "XpcsEigen",
                "source": "aps",
                "sites": [site],
                "every_s": 400,
                "until_s": 8000,
                "input_mb": 1000,
                "output_mb": 50,
            }
        ]
        result = simulate(Scenario.model_validate(data), "fastest_finish")
        got = result.latency_median_s
        table.add_row(
            f"APS→{site} latency, one job at a time, median s",
            f"{paper:.1f}",
            f"{got:.1f}",
            f"{100 * (got / paper - 1):+.1f} %",
        )
    for policy, paper in PAPER_JOBS_PER_MIN.items():
        got = simulate(base, policy).jobs_per_min
        table.add_row(
            f"{policy}, 16 jobs every 8 s, jobs/min",
            f"{paper:.1f}",
            f"{got:.1f}",
            f"{100 * (got / paper - 1):+.1f} %",
        )
    console.print(table)


def decision_snapshot(sites: int = 10) -> tuple[Snapshot, list[JobRequest]]:
    """A 10-site snapshot with history and backlogs, and 500 XPCS jobs."""
    apps = {"XpcsMultiTau": AppSpec("XpcsMultiTau")}
    snap = Snapshot(
        now=0.0,
        sites=tuple(
            SiteSnapshot(
                f"site{i}",
                apps,
                frozenset({"aps"}),
                running_slots=32,
                free_slots=i,
                new_pilot_slots=32,
                backlog=(BacklogGroup("XpcsMultiTau", 0, 20 * i),),
                run_times={"XpcsMultiTau": RunTimeEstimate(40.0 + 15 * i, 1.4, 0.0, 0.0, 50, "history")},
                priors=SitePriors(transfer_rate_bps=(100 + 50 * i) * 1e6),
            )
            for i in range(sites)
        ),
    )
    jobs = [
        JobRequest(k, "XpcsMultiTau", input_bytes={"aps": 1e9}, output_bytes={"aps": 5e7}) for k in range(500)
    ]
    return snap, jobs


def part_decision(args: argparse.Namespace, facts: dict[str, Any]) -> None:
    snap, jobs = decision_snapshot()
    table = Table(title="placement decision cost: 500 jobs on 10 sites, per job", header_style="bold")
    table.add_column("policy")
    table.add_column("median µs/job", justify="right")
    costs = {}
    for policy in args.policy:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            place_batch(jobs, snap, policy)
            runs.append((time.perf_counter() - started) / len(jobs) * 1e6)
        costs[policy] = statistics.median(runs)
        table.add_row(policy, f"{costs[policy]:.0f}")
    console.print(table)
    facts["decision_us"] = costs


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def part_real(args: argparse.Namespace, facts: dict[str, Any]) -> None:
    from benchmarks.placement_real import SITES, RealResult, decision_cost_us, run_policy, trace, use_sites

    use_sites(args.sites)
    arrivals = trace(args.seed, args.arrivals, args.every)
    outage_at = args.arrivals * args.every / 2
    runs: dict[str, list[RealResult]] = {policy: [] for policy in args.policy}
    loads: list[str] = []
    for repeat in range(args.repeat):
        # the policies take turns within each repeat, so a change in the machine's load hits them alike
        order = args.policy[repeat % len(args.policy) :] + args.policy[: repeat % len(args.policy)]
        for policy in order:
            console.print(
                f"real system, run {repeat + 1}/{args.repeat}: {policy} "
                f"({sum(len(s) for _, s in arrivals)} jobs, outage at {outage_at:.0f} s, load {_load()})"
            )
            runs[policy].append(run_policy(policy, arrivals, outage_at, args.drain, args.warmup, args.hedge))
            loads.append(_load())
    speeds = ", ".join(f"{slots}×{factor:g} s" for slots, factor in SITES.values())
    title = (
        f"real system, {args.sites} sites (slots × run time per unit: {speeds}), every {args.every:g} s, "
        "fastest killed mid-run"
    )
    columns = ("run", "policy", "jobs/min", "per site (jobs)", "latency p50 s", "p95 s", "re-placed",
               "stranded", "outage → last re-placement s", "sized decisions")  # fmt: skip
    table = Table(title=f"{title}: each run (load average 1/5 min after each: {', '.join(loads)})")
    for column in columns:
        table.add_column(column, justify="left" if column in ("policy", "per site (jobs)") else "right")
    for policy, results in runs.items():
        for i, r in enumerate(results):
            per_site = " / ".join(str(n) for n in r.per_site.values())
            last = "-" if r.outage_to_last_replacement_s is None else f"{r.outage_to_last_replacement_s:.1f}"
            table.add_row(
                str(i + 1), policy, f"{r.jobs_per_min:.1f}", per_site, f"{r.latency_median_s:.1f}",
                f"{r.latency_p95_s:.1f}", str(r.replaced), str(r.stranded), last, str(r.sized),
            )  # fmt: skip
    console.print(table)
    medians = Table(title=f"{title}: medians of {args.repeat} runs", header_style="bold")
    for column in columns[1:-1]:
        medians.add_column(column, justify="left" if column in ("policy", "per site (jobs)") else "right")
    results = []
    for policy, policy_runs in runs.items():
        pick = sorted(policy_runs, key=lambda r: r.latency_p95_s)[len(policy_runs) // 2]
        results.append(pick)
        sites = list(policy_runs[0].per_site)
        per_site = " / ".join(f"{statistics.median(r.per_site[s] for r in policy_runs):g}" for s in sites)
        lasts = [
            r.outage_to_last_replacement_s for r in policy_runs if r.outage_to_last_replacement_s is not None
        ]
        medians.add_row(
            policy,
            f"{statistics.median(r.jobs_per_min for r in policy_runs):.1f}",
            per_site,
            f"{statistics.median(r.latency_median_s for r in policy_runs):.1f}",
            f"{statistics.median(r.latency_p95_s for r in policy_runs):.1f}",
            f"{statistics.median(r.replaced for r in policy_runs):g}",
            f"{max(r.stranded for r in policy_runs)}",
            f"{statistics.median(lasts):.1f}" if lasts else "-",
        )
    console.print(medians)
    facts["real_runs"] = runs
    facts["real"] = results  # each policy's median run by p95 (for the plot and the headline)
    if not args.skip_cost:
        cost = decision_cost_us()
        console.print(
            f"placement adds {cost['placement_us_per_job']:.0f} µs per job to a bulk create of 2,000 "
            f"(by app id {cost['bulk_by_id_jobs_per_s']:,.0f} jobs/s, by app name on 3 sites "
            f"{cost['bulk_by_name_jobs_per_s']:,.0f} jobs/s)"
        )
        facts["real_cost"] = cost
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    titled = [replace(r, scenario=f"{r.scenario} ({stamp}, load {', '.join(loads)})") for r in results]
    plot_jobs_per_site(titled, args.plot, bin_s=10)
    console.print(f"plot: {args.plot} (each policy's median run by p95)")


PARTS: dict[str, Callable[[argparse.Namespace, dict[str, Any]], None]] = {
    "simulator": part_simulator,
    "calibration": part_calibration,
    "decision": part_decision,
    "real": part_real,
}


def headline(facts: dict[str, Any]) -> str:
    lines = []
    sims: dict[str, list[SimulationResult]] = facts.get("simulator", {})
    for name, results in sims.items():
        by = {r.policy: r for r in results}
        ff, sb = by.get("fastest_finish"), by.get("shortest_backlog")
        if ff and sb:
            lines.append(
                f"{name}: fastest_finish vs shortest_backlog: jobs/min {ff.jobs_per_min:.1f} vs "
                f"{sb.jobs_per_min:.1f} ({100 * (ff.jobs_per_min / sb.jobs_per_min - 1):+.0f} %), p95 latency "
                f"{ff.latency_p95_s:.0f} vs {sb.latency_p95_s:.0f} s "
                f"({100 * (ff.latency_p95_s / sb.latency_p95_s - 1):+.0f} %), stranded {ff.stranded} / {sb.stranded}"
            )
        slowest = max(r.wall_s for r in results)
        lines.append(f"{name}: simulated in at most {slowest:.1f} s per policy ({results[0].jobs:,} jobs)")
    real_runs: dict[str, list[Any]] = facts.get("real_runs", {})
    ff_runs, sb_runs = real_runs.get("fastest_finish"), real_runs.get("shortest_backlog")
    if ff_runs and sb_runs:
        ff_jpm = statistics.median(r.jobs_per_min for r in ff_runs)
        sb_jpm = statistics.median(r.jobs_per_min for r in sb_runs)
        ff_p95 = statistics.median(r.latency_p95_s for r in ff_runs)
        sb_p95 = statistics.median(r.latency_p95_s for r in sb_runs)
        lines.append(
            f"real system with an outage (medians of {len(ff_runs)}): fastest_finish vs shortest_backlog: "
            f"jobs/min {ff_jpm:.1f} vs {sb_jpm:.1f} ({100 * (ff_jpm / sb_jpm - 1):+.0f} %), p95 latency "
            f"{ff_p95:.1f} vs {sb_p95:.1f} s ({100 * (ff_p95 / sb_p95 - 1):+.0f} %), stranded "
            f"{max(r.stranded for r in ff_runs)} / {max(r.stranded for r in sb_runs)}"
        )
    if "real_cost" in facts:
        lines.append(
            f"placement adds {facts['real_cost']['placement_us_per_job']:.0f} µs per job to a bulk create"
        )
    if "decision_us" in facts:
        worst = max(facts["decision_us"].values())
        lines.append(f"placement decision: at most {worst:.0f} µs per job (10 sites, batches of 500)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", action="append", choices=sorted(PARTS), help="Run only these parts")
    parser.add_argument("--policy", action="append", choices=sorted(POLICIES), help="Only these policies")
    parser.add_argument("--quick", action="store_true", help="Skip the internet-scale scenario")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "placement-real.png")
    parser.add_argument("--arrivals", type=int, default=30, help="Real system: datasets in the trace")
    parser.add_argument("--every", type=float, default=1.5, help="Real system: seconds between datasets")
    parser.add_argument("--drain", type=float, default=120.0, help="Real system: seconds to wait after")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--skip-cost", action="store_true", help="Real system: skip the bulk-create cost")
    parser.add_argument("--warmup", type=int, default=3, help="Real system: pinned jobs per site first")
    parser.add_argument("--hedge", action="store_true", help="Real system: submit every job with hedge=True")
    parser.add_argument("--repeat", type=int, default=3, help="Real system: runs of every policy (medians)")
    parser.add_argument(
        "--sites",
        choices=("balanced", "uneven"),
        default="balanced",
        help="Real system: equal capacity per site (only per-job speed differs) or uneven capacity",
    )
    args = parser.parse_args()
    args.policy = args.policy or list(POLICIES)
    facts: dict[str, Any] = {}
    for name in args.part or list(PARTS):
        PARTS[name](args, facts)
    console.print("[bold]Headline[/]")
    console.print(headline(facts))


if __name__ == "__main__":
    main()
