"""The weather plot (after cctbx.xfel's): wall time across, worker slots (node × slot) down, one mark per
run coloured by its outcome, a cross where a run never ended properly, lines between nodes.

Runs are paired from the event log in SQL (a run starts at ``→ RUNNING`` and ends at the next change of
the job); the node comes from the launcher's ``RUNNING`` report. Slots are assigned per node by packing
runs into the fewest lanes. The drawing is aggregated on the server: each run adds to a pixel raster
(per-outcome coverage with NumPy difference arrays), so 100,000 runs cost what 1,000 do in the browser: one
PNG.
"""

from __future__ import annotations

import heapq
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.server.auth.tokens import Principal
from beambridge.server.db.tables import events, jobs
from beambridge.states import JobState

OUTCOMES = {
    "finished": "#2da44e",
    "failed": "#0969da",
    "killed": "#8c959f",
    "running": "#54aeff",
}
"""Colours as cctbx.xfel's plot uses them: green done, blue failed; grey cancelled, light blue running."""
NEVER_ENDED = "#cf222e"
MAX_RUNS = 500_000
WIDTH_PX, HEIGHT_PX = 1200, 640


@dataclass
class Runs:
    """Runs of a window, as arrays."""

    start: np.ndarray  # seconds since the window start
    end: np.ndarray
    outcome: np.ndarray  # index into OUTCOMES
    crossed: np.ndarray  # bool: never ended properly (lost launcher, time-out)
    node: list[str]
    truncated: bool


def read_runs(
    conn: Connection, principal: Principal, since: datetime, until: datetime, batch_job_id: int | None = None
) -> Runs:
    """The caller's runs overlapping ``[since, until)`` (of one pilot when ``batch_job_id`` is given)."""
    node = events.c.data["node"].as_string()
    following = sa.func.lead(events.c.timestamp, type_=events.c.timestamp.type).over(
        partition_by=events.c.job_id, order_by=events.c.id
    )
    following_state = sa.func.lead(events.c.to_state).over(partition_by=events.c.job_id, order_by=events.c.id)
    where = [events.c.owner_id == principal.user_id, events.c.timestamp < until]
    job_events = sa.select(
        events.c.job_id, events.c.to_state, events.c.timestamp.label("started"), node.label("node"),
        following.label("ended"), following_state.label("end_state"),
    ).where(*where)  # fmt: skip
    if batch_job_id is not None:
        job_events = job_events.where(
            events.c.job_id.in_(
                sa.select(jobs.c.id).where(
                    jobs.c.batch_job_id == batch_job_id, jobs.c.owner_id == principal.user_id
                )
            )
        )
    else:
        # Only jobs with a change inside the window (bounded by the events index on time).
        job_events = job_events.where(
            events.c.job_id.in_(
                sa.select(events.c.job_id).where(*where, events.c.timestamp >= since - timedelta(days=1))
            )
        )
    paired = job_events.subquery()
    started, ended = paired.c.started, paired.c.ended
    if conn.dialect.name == "postgresql":  # epoch seconds: no datetime object per row
        started = sa.cast(sa.func.extract("epoch", started), sa.Float)  # type: ignore[assignment]
        ended = sa.cast(sa.func.extract("epoch", ended), sa.Float)  # type: ignore[assignment]
    statement = (
        sa.select(started, ended, paired.c.end_state, paired.c.node)
        .where(
            paired.c.to_state == JobState.RUNNING.value,
            sa.or_(paired.c.ended.is_(None), paired.c.ended >= since),
        )
        .order_by(paired.c.started)
        .limit(MAX_RUNS + 1)
    )
    rows = conn.execute(statement).all()
    truncated = len(rows) > MAX_RUNS
    rows = rows[:MAX_RUNS]
    base = since.timestamp()
    span = (until - since).total_seconds()
    start = np.fromiter((_seconds(r[0]) for r in rows), dtype=float, count=len(rows)) - base
    end = np.fromiter(
        (_seconds(r[1]) - base if r[1] is not None else span for r in rows), dtype=float, count=len(rows)
    )
    codes = {None: (3, False), JobState.RUN_DONE.value: (0, False), JobState.RUN_TIMEOUT.value: (1, True)}
    codes[JobState.KILLED.value] = (2, False)
    pairs = [codes.get(r[2], (1, False)) for r in rows]
    outcome = np.fromiter((p[0] for p in pairs), dtype=np.int8, count=len(rows))
    crossed = np.fromiter((p[1] for p in pairs), dtype=bool, count=len(rows))
    return Runs(start, end, outcome, crossed, [r[3] or "node ?" for r in rows], truncated)


def _seconds(value: Any) -> float:
    if not isinstance(value, datetime | str):  # seconds since the epoch, from PostgreSQL
        return float(value)
    if isinstance(value, str):  # SQLite hands back window-function results as text
        value = datetime.fromisoformat(value)
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()


def assign_slots(runs: Runs) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """A row for each run (node × the lowest free slot on it), and each node's (name, first row, rows)."""
    by_node: dict[str, list[int]] = {}
    for i, name in enumerate(runs.node):
        by_node.setdefault(name, []).append(i)
    row_of = np.zeros(len(runs.node), dtype=np.int64)
    layout = []
    first = 0
    for name in sorted(by_node):
        free: list[int] = []  # slot numbers released, lowest first
        busy: list[tuple[float, int]] = []  # (end, slot)
        slots = 0
        for i in sorted(by_node[name], key=lambda k: runs.start[k]):
            while busy and busy[0][0] <= runs.start[i]:
                heapq.heappush(free, heapq.heappop(busy)[1])
            slot = heapq.heappop(free) if free else slots
            slots = max(slots, slot + 1)
            heapq.heappush(busy, (runs.end[i], slot))
            row_of[i] = first + slot
        layout.append((name, first, slots))
        first += slots
    return row_of, layout


def raster(runs: Runs, rows: np.ndarray, n_rows: int, span_s: float, width: int = WIDTH_PX) -> np.ndarray:
    """Per-outcome pixel coverage, shape (outcomes, rows, width): how many runs cover each pixel."""
    layers = np.zeros((len(OUTCOMES), max(n_rows, 1), width + 1), dtype=np.int32)
    if len(rows):
        scale = width / span_s
        x0 = np.clip((runs.start * scale).astype(np.int64), 0, width - 1)
        x1 = np.clip(np.ceil(runs.end * scale).astype(np.int64), x0 + 1, width)
        np.add.at(layers, (runs.outcome, rows, x0), 1)
        np.add.at(layers, (runs.outcome, rows, x1), -1)
    return np.cumsum(layers, axis=2)[:, :, :width]


def render_png(runs: Runs, since: datetime, until: datetime, title: str) -> bytes:
    """The plot as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colors as mcolors
    from matplotlib import pyplot as plt
    from matplotlib.figure import Figure

    span = max((until - since).total_seconds(), 1.0)
    rows, layout = assign_slots(runs)
    n_rows = sum(n for _, _, n in layout)
    coverage = raster(runs, rows, n_rows, span)
    image = np.ones((max(n_rows, 1), WIDTH_PX, 4))
    image[..., :3] = 1.0
    for index, colour in enumerate(OUTCOMES.values()):  # later outcomes drawn over earlier ones
        mask = coverage[index] > 0
        image[mask] = mcolors.to_rgba(colour)
    figure = Figure(figsize=(WIDTH_PX / 100, HEIGHT_PX / 100), dpi=100)
    axes = figure.add_subplot()
    minutes = span / 60
    axes.imshow(image, aspect="auto", interpolation="nearest", extent=(0, minutes, max(n_rows, 1), 0))
    for _name, first, _count in layout[1:]:
        axes.axhline(first, color="#cf222e", linewidth=0.6)
    if runs.crossed.any():
        scale = minutes / span
        axes.scatter(
            runs.end[runs.crossed] * scale, rows[runs.crossed] + 0.5, marker="x", color=NEVER_ENDED, s=18
        )
    axes.set_xlabel(f"minutes since {since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
    axes.set_ylabel("worker slot (node × slot)")
    if 0 < len(layout) <= 40:
        axes.set_yticks(
            [first + count / 2 for _, first, count in layout], [name for name, _, _ in layout], fontsize=7
        )
    axes.set_title(title, fontsize=10)
    handles = [plt.Line2D([], [], color=c, linewidth=6, label=name) for name, c in OUTCOMES.items()]
    handles.append(plt.Line2D([], [], color=NEVER_ENDED, marker="x", linestyle="", label="never ended"))
    axes.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.8)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def summary(runs: Runs) -> dict[str, Any]:
    """Counts and a five-number summary of run times (as cctbx.xfel prints under its plot)."""
    durations = runs.end - runs.start
    names = list(OUTCOMES)
    out: dict[str, Any] = {
        "runs": len(durations),
        "truncated": runs.truncated,
        "crossed": int(runs.crossed.sum()),
    }
    for index, name in enumerate(names):
        chosen = durations[runs.outcome == index]
        out[name] = {
            "count": len(chosen),
            "five": [float(v) for v in np.percentile(chosen, [0, 25, 50, 75, 100])] if len(chosen) else None,
        }
    return out
