"""``beambridge job``: create, list, show, cancel and delete jobs."""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Any

import typer

from beambridge.cli.connection import open_client
from beambridge.cli.job_listing import jobs_table, parse_since, reasons
from beambridge.cli.output import Column, JsonFlag, console, print_json, print_table
from beambridge.cli.prompts import parse_pairs
from beambridge.cli.watching import counts_line, ended_badly, watch
from beambridge.schemas.events import Event
from beambridge.schemas.jobs import JobSummary
from beambridge.schemas.placement import PlacementDecision
from beambridge.states import JobState

app = typer.Typer(help="Jobs: runs of an app with parameters.", no_args_is_help=True)

COLUMNS = ["id", "state", "app_id", "site_id", "workdir", "tags", "updated_at"]
EVENT_COLUMNS = ["id", "timestamp", "from_state", "to_state", "data"]


@app.command("create")
def create(
    app: Annotated[
        str,
        typer.Option(
            "--app",
            help="The app: its name (with --site, that site's; else placed by the service) or its id.",
        ),
    ],
    workdir: Annotated[str, typer.Option(help="Working directory, relative to the site's data directory.")],
    param: Annotated[
        list[str], typer.Option(help="key=value (value as JSON if it parses); repeatable.")
    ] = [],  # noqa: B006
    tag: Annotated[list[str], typer.Option(help="key=value tag; repeatable.")] = [],  # noqa: B006
    parent: Annotated[list[int], typer.Option(help="A parent job id; repeatable.")] = [],  # noqa: B006
    nodes: Annotated[int, typer.Option(min=1, help="Nodes.")] = 1,
    wall_time: Annotated[float, typer.Option("--wall-time", min=0, help="Wall-time limit in minutes.")] = 0,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    site: Annotated[str | None, typer.Option("--site", help="The site to run it (name or id).")] = None,
    sites: Annotated[
        str | None, typer.Option("--sites", help="Eligible sites by name, comma-separated (with --app NAME).")
    ] = None,
    site_group: Annotated[
        str | None, typer.Option("--site-group", help="A site group of yours (with --app NAME).")
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            help="Placement policy: round_robin, shortest_backlog or fastest_finish (with --app NAME)."
        ),
    ] = None,
    hedge: Annotated[
        bool, typer.Option("--hedge", help="Copy to the second-best site if the job runs late.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create one job: of an app on a site (--app XpcsMultiTau --site polaris), or of an app by name on the
    site the service predicts finishes first (--app XpcsMultiTau [--sites a,b])."""
    fields: dict[str, Any] = {
        "parameters": parse_pairs(param, "--param", decode_json=True),
        "tags": parse_pairs(tag, "--tag"),
        "parent_ids": list(parent),
        "num_nodes": nodes,
        "wall_time_limit_min": wall_time,
        "priority": priority,
    }
    if app.isdigit() or site is not None:
        if sites or site_group or policy or hedge:
            raise typer.BadParameter(
                "--sites, --site-group, --policy and --hedge choose among sites: give them with --app NAME, "
                "without --site"
            )
        fields["app"], fields["site"] = app, site
    else:
        fields.update(app=app, site_group=site_group, policy=policy, hedge=hedge or None)
        if sites is not None:
            fields["sites"] = [name.strip() for name in sites.split(",") if name.strip()]
    with open_client() as client:
        job = client.jobs.create(workdir=workdir, **fields)
        names = client.names
        where = f"{names.app_name(job.app_id)} on {names.site_name(job.site_id)}"
    if as_json:
        print_json(job)
    elif "site" in fields:
        typer.echo(f"created job {job.id} ({job.state}): {where}")
    elif job.awaiting_placement:
        typer.echo(f"created job {job.id} ({job.state}), to be placed when it can run")
    else:
        typer.echo(f"created job {job.id} ({job.state}), placed: {where}")


DEFAULT_LS_LIMIT = 50


@app.command("ls")
def list_jobs(
    state: Annotated[list[JobState], typer.Option(help="Only jobs in this state; repeatable.")] = [],  # noqa: B006
    site: Annotated[str | None, typer.Option("--site", help="Only jobs of this site (name or id).")] = None,
    app_ref: Annotated[str | None, typer.Option("--app", help="Only jobs of this app (name or id).")] = None,
    tag: Annotated[list[str], typer.Option(help="key=value a job must carry; repeatable.")] = [],  # noqa: B006
    since: Annotated[
        str | None,
        typer.Option(help="Only jobs that changed in this time: 90s, 15m, 2h, 3d, or a date/time."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1, help=f"At most this many, newest first (default {DEFAULT_LS_LIMIT}; all with --json)."
        ),
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Every matching job.")] = False,
    copies: Annotated[
        bool | None,
        typer.Option("--copies/--no-copies", help="Only hedged copies / leave them out (default: both)."),
    ] = None,
    summary: Annotated[bool, typer.Option("--summary", help="Counts by state instead of the jobs.")] = False,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            metavar="TAG",
            help="With --summary (which it implies): counts by state per value of this tag, newest first.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List jobs, newest first, with the reason for each failure; says so when it shows only some."""
    if show_all and limit is not None:
        raise typer.BadParameter("give --limit or --all, not both")
    if by is not None and not _TAG_KEY.match(by):
        raise typer.BadParameter(f"--by takes a tag key (1-64 letters, digits, '_', '.', '-'), not {by!r}")
    cap = None if show_all or (as_json and limit is None) else (limit or DEFAULT_LS_LIMIT)
    with open_client() as client:
        names = client.names
        filters: dict[str, Any] = {
            "state": state or None,
            "site_id": names.site_id(site) if site is not None else None,
            "app_id": names.app_ids(app_ref, site) if app_ref is not None else None,
            "tags": parse_pairs(tag, "--tag"),
            "updated_after": parse_since(since) if since is not None else None,
            "copies": copies,
        }
        if summary or by is not None:
            _print_summary(client.jobs.summary(by, max_groups=10_000, **filters), as_json)
            return
        query = client.jobs.filter(**filters)
        newest = query.newest_first().page_size(min(cap or 1000, 1000))
        jobs = list(newest.limit(cap) if cap is not None else newest)
        total = query.count() if cap is not None and len(jobs) == cap else len(jobs)
        if as_json:
            print_json(jobs)
        elif not jobs:
            console.print("(no jobs)")
        else:
            why = reasons(client, jobs)
            console.print(jobs_table(jobs, names, why, title="Jobs", width=console.width))
    if total > len(jobs):
        typer.echo(f"showing the newest {len(jobs)} of {total} jobs; --limit N or --all for more", err=True)


_TAG_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def _print_summary(summary: JobSummary, as_json: bool) -> None:
    """``job ls --summary [--by TAG]``: counts by state, over all the matching jobs or per tag value."""
    by = summary.by_tag
    if by is None:
        counts = {str(state): n for group in summary.groups for state, n in group.counts.items()}
        if as_json:
            print_json(counts)
        else:
            print_table(
                counts.items(), [("state", lambda kv: kv[0]), ("jobs", lambda kv: kv[1])], title="Jobs"
            )
        return
    if as_json:
        print_json(summary)
    elif not summary.groups:
        console.print("(no jobs)")
    else:
        columns: list[Column] = [
            (by, lambda g: "(none)" if g.value is None else g.value),
            ("jobs", lambda g: g.total),
            ("by state", lambda g: " · ".join(f"{state} {n}" for state, n in g.counts.items())),
        ]
        print_table(summary.groups, columns, title=f"Jobs by {by}")
    if summary.groups_left_out:
        typer.echo(f"{summary.groups_left_out} more value(s) of {by} not shown", err=True)


@app.command("show")
def show_job(job_id: Annotated[int, typer.Argument(help="The job id.")], as_json: JsonFlag = False) -> None:
    """Show one job and its history."""
    with open_client() as client:
        job = client.jobs.get(job_id)
        events = client.jobs.events(job_id)
        if as_json:
            print_json({"job": job, "events": events})
            return
        names = client.names
        fields = {
            "app": f"{names.app_name(job.app_id)} (id {job.app_id})",
            "site": f"{names.site_name(job.site_id)} (id {job.site_id})",
            **job.model_dump(exclude={"app_id", "site_id"}),
        }
    print_table(
        fields.items(), [("field", lambda kv: kv[0]), ("value", lambda kv: kv[1])], title=f"Job {job.id}"
    )
    print_table(events, EVENT_COLUMNS, title="Events")
    for event in events:
        if isinstance(event.data.get("decision"), dict):
            print_decision(event.data)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


ESTIMATE_COLUMNS: list[Column] = [
    "site",
    "status",
    "health",
    "backlog",
    ("stage-in s", lambda e: _s(e.stage_in_s)),
    ("wait s", lambda e: _s(e.wait_s) + (f" ({e.wait_basis})" if e.wait_basis else "")),
    ("run s", lambda e: _s(e.run_s) + (f" ({e.run_basis})" if e.run_basis else "")),
    ("stage-out s", lambda e: _s(e.stage_out_s)),
    ("finish s", lambda e: _s(e.finish_s)),
    ("p95 s", lambda e: _s(e.finish_p95_s)),
    ("reasons", lambda e: "; ".join(e.reasons)),
]


def print_decision(data: dict[str, Any]) -> None:
    """One placement event: what happened, by which policy, and every site's estimate."""
    decision = PlacementDecision.model_validate(data["decision"])
    moved = f" from {data['from_site']}" if data.get("from_site") else ""
    if data.get("copy") is not None:
        moved += f", copy {data['copy']}"
    if data.get("copy_of") is not None:
        moved += f", copy of job {data['copy_of']}"
    title = f"Placement ({data.get('placement', decision.outcome)}{moved}, policy {decision.policy}): {decision.reason}"
    group = decision.group
    if group is not None and group.omitted:
        title += (
            f" [one of {group.jobs} alike jobs placed together; {', '.join(group.omitted)} left out here:"
            f" every site's estimate is in job {group.first_job}'s placement]"
        )
    elif group is not None:
        title += f" [one of {group.jobs} alike jobs placed together]"
    print_table(decision.estimates, ESTIMATE_COLUMNS, title=title)
    if group is not None and group.sites:  # one event for the whole group: how it spread over the sites
        print_table(
            group.sites,
            [
                "site",
                ("jobs", lambda s: s.jobs),
                (
                    "ids",
                    lambda s: (
                        ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in s.ids[:5])
                        + (" …" if len(s.ids) > 5 else "")
                    ),
                ),
                (
                    "finish s, first → last",
                    lambda s: f"{_s(s.first and s.first.finish_s)} → {_s(s.last and s.last.finish_s)}",
                ),
                ("explored", lambda s: len(s.explored)),
            ],
            title=f"The group of {group.jobs} jobs (first job {group.first_job}) per site",
        )


@app.command("logs")
def job_logs(
    job_id: Annotated[int, typer.Argument(help="The job id.")],
    every_run: Annotated[bool, typer.Option("--all", help="Every run's output, not only the last.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """The end of a job's stdout and stderr: the last 8 KiB of each as its launcher sent them when the run
    ended (the whole files, job.out and job.err, stay in the job's workdir at the site, every run appended)."""
    with open_client() as client:
        events = client.jobs.events(job_id)
    runs: list[tuple[Event, dict[str, Any]]] = []
    for event in events:
        logs = event.data.get("logs")
        if isinstance(logs, dict):
            runs.append((event, logs))
    if not runs:
        state = events[-1].to_state if events else "CREATED"
        raise typer.BadParameter(f"job {job_id} has no run output yet (it is {state})", param_hint="JOB_ID")
    chosen = runs if every_run else runs[-1:]
    if as_json:
        print_json(
            [
                {
                    "run": runs.index(run) + 1,
                    "ended": run[0].to_state,
                    "at": run[0].timestamp.isoformat(),
                    **run[1],
                }
                for run in chosen
            ]
        )
        return
    for event, logs in chosen:
        number = runs.index((event, logs)) + 1
        when = event.timestamp.strftime("%Y-%m-%d %H:%M:%S")
        for stream in ("stdout", "stderr"):
            text = str(logs.get(stream) or "").rstrip("\n")
            console.rule(
                f"job {job_id} run {number} of {len(runs)} ({event.to_state.value} at {when}): {stream}"
            )
            typer.echo(text if text else "(nothing written)")


@app.command("cancel")
def cancel(job_ids: Annotated[list[int], typer.Argument(help="Job ids.")]) -> None:
    """Cancel jobs (they become KILLED; jobs that already ended are left alone)."""
    with open_client() as client:
        result = client.jobs.cancel(job_ids)
        left = sorted(set(job_ids) - set(result.ids))
        ended = {job.id: job.state for job in client.jobs.filter(id=left)} if left else {}
    typer.echo(
        f"cancelled {result.count} job(s)" + (f": {', '.join(map(str, result.ids))}" if result.ids else "")
    )
    for job_id in left:
        typer.echo(
            f"job {job_id} not cancelled: it had already ended ({ended.get(job_id, 'gone')})", err=True
        )
    if left and not result.count:
        raise typer.Exit(1)


@app.command("watch")
def watch_jobs(
    job_ids: Annotated[list[int] | None, typer.Argument(help="Job ids (or select with --tag).")] = None,
    tag: Annotated[list[str], typer.Option(help="key=value a job must carry; repeatable.")] = [],  # noqa: B006
) -> None:
    """Watch jobs until every one has ended: a progress bar and the counts by state, updated as they change.

    Exits 0 if every job finished, 1 if any failed or was killed (``job watch --tag run=42 && next-step``).
    """
    tags = parse_pairs(tag, "--tag")
    if not (job_ids or tags):
        raise typer.BadParameter("name the jobs: ids or --tag key=value")
    with open_client() as client:
        query = client.jobs.filter(id=job_ids or None, tags=tags or None)
        jobs = watch(client, query)
        if not jobs:
            raise typer.BadParameter("no job matches", param_hint="--tag")
        bad = ended_badly(jobs)
        if bad:
            why = reasons(client, bad)
            for job in bad[:20]:
                typer.echo(
                    f"job {job.id} {job.state.value}: {why.get(job.id) or 'no reason recorded'}", err=True
                )
            more = f" (and {len(bad) - 20} more)" if len(bad) > 20 else ""
            typer.echo(f"{len(bad)} of {len(jobs)} job(s) did not finish{more}", err=True)
            raise typer.Exit(1)
    typer.echo(f"all {len(jobs)} job(s) finished")


@app.command("wait")
def wait_jobs(
    job_ids: Annotated[list[int], typer.Argument(help="Job ids.")],
    timeout: Annotated[float | None, typer.Option(min=0, help="Give up after this many seconds.")] = None,
) -> None:
    """Wait until the jobs have ended (no output until then). Exits 0 if all finished, 1 otherwise."""
    with open_client() as client:
        jobs = client.jobs.wait(job_ids, timeout=timeout)
    counts = Counter(job.state for job in jobs)
    typer.echo(f"{len(jobs)} job(s) ended: {counts_line(counts)}")
    if ended_badly(jobs):
        raise typer.Exit(1)


@app.command("retry")
def retry(
    job_ids: Annotated[
        list[int] | None, typer.Argument(help="Job ids (or select with --tag/--state).")
    ] = None,
    tag: Annotated[list[str], typer.Option(help="key=value a job must carry; repeatable.")] = [],  # noqa: B006
    state: Annotated[
        list[JobState], typer.Option(help="Only jobs in this state (FAILED or KILLED); repeatable.")
    ] = [],  # noqa: B006
    as_json: JsonFlag = False,
) -> None:
    """Send FAILED or KILLED jobs back to run, with a fresh retry count; their failed children follow.

    Give ids, or select with --tag and --state (``beambridge job retry --tag run=42 --state FAILED``).
    """
    tags = parse_pairs(tag, "--tag")
    if not (job_ids or tags or state):
        raise typer.BadParameter("name the jobs: ids, --tag key=value or --state FAILED")
    with open_client() as client:
        result = client.jobs.retry(job_ids or [], tags=tags or None, state=state or None)
    if as_json:
        print_json(result)
        return
    listed = f": {_id_list(result.ids)}" if result.ids else ""
    typer.echo(f"retried {result.count} job(s){listed}")
    for skipped in result.skipped:
        typer.echo(f"job {skipped.id} not retried: {skipped.reason}", err=True)
    if job_ids and not result.count:
        raise typer.Exit(1)


def _id_list(ids: list[int], most: int = 20) -> str:
    shown = ", ".join(map(str, ids[:most]))
    return shown + (f" … (+{len(ids) - most})" if len(ids) > most else "")


@app.command("rm")
def remove(job_ids: Annotated[list[int], typer.Argument(help="Job ids.")]) -> None:
    """Delete jobs with their history."""
    with open_client() as client:
        result = client.jobs.delete(job_ids)
    typer.echo(f"deleted {result.count} job(s)")
