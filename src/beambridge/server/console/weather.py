"""The weather plot (after cctbx.xfel's): wall time across, worker slots (node × slot) down, one mark per
run coloured by its outcome, a cross where a run never ended properly, lines between nodes.

Runs come from ``job_runs`` (one row per run, written with the events: from ``→ RUNNING`` to the job's
next change), with the node and worker slot the launcher reported; runs without a slot are packed per
node into the fewest lanes. The drawing is aggregated on the server: each run adds to a pixel raster
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
from beambridge.server.db.tables import job_runs
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
AXES_BOX = ((0.1, 0.08), (0.985, 0.95))
"""The plot's axes in the figure: (left, bottom), (right, top) as fractions."""


MAX_RUN_S = 86400.0
"""Runs longer than a day that ended inside a window are left out of it (the query is bounded by it)."""


@dataclass
class Runs:
    """Runs of a window, as arrays."""

    start: np.ndarray  # seconds since the window start
    end: np.ndarray
    outcome: np.ndarray  # index into OUTCOMES
    crossed: np.ndarray  # bool: never ended properly (lost launcher, time-out)
    node: np.ndarray  # node name of each run (object array)
    truncated: bool
    slot: np.ndarray | None = None  # the launcher's worker slot (first CPU) of each run, -1 unknown
    app: np.ndarray | None = None  # app id of each run


def read_runs(
    conn: Connection, principal: Principal, since: datetime, until: datetime, batch_job_id: int | None = None
) -> Runs:
    """The caller's runs overlapping ``[since, until)`` (of one pilot when ``batch_job_id`` is given).

    Two index range scans of ``job_runs``: runs that ended in ``[since, until + MAX_RUN_S)`` and started
    before ``until``, and runs still open that started before ``until``. On PostgreSQL the runs come back
    grouped by (node, slot, end state, app), each group's times packed as binary doubles (see
    :func:`_read_packed`): a few hundred rows instead of one per run, which Python would spend seconds on.
    """
    r = job_runs.c
    mine = [r.owner_id == principal.user_id, r.started_at < until]
    if batch_job_id is not None:
        mine.append(r.batch_job_id == batch_job_id)
    ended_in_window = [r.ended_at >= since, r.ended_at < until + timedelta(seconds=MAX_RUN_S)]
    if conn.dialect.name == "postgresql":
        return _read_packed(conn, mine, ended_in_window, since, until)
    columns = (r.started_at, r.ended_at, r.end_state, r.node, r.slot, r.app_id)
    finished = sa.select(*columns).where(*mine, *ended_in_window)
    still_open = sa.select(*columns).where(*mine, r.ended_at.is_(None))
    rows = [*conn.execute(finished.limit(MAX_RUNS + 1)), *conn.execute(still_open.limit(MAX_RUNS + 1))]
    truncated = len(rows) > MAX_RUNS
    rows = rows[:MAX_RUNS]
    base = since.timestamp()
    span = (until - since).total_seconds()
    n = len(rows)
    if n == 0:
        empty = np.zeros(0)
        return Runs(empty, empty, empty.astype(np.int8), empty.astype(bool), empty.astype(object), False,
                    empty.astype(np.int64), empty.astype(np.int64))  # fmt: skip
    starts, ends, states, nodes, slots, apps = zip(*rows, strict=True)  # columns, transposed in C
    start = np.array([_seconds(v) for v in starts], dtype=float) - base
    end = np.array([span + base if v is None else _seconds(v) for v in ends], dtype=float) - base
    node = np.array([v or "node ?" for v in nodes], dtype=object)
    slot = np.array([-1 if v is None else v for v in slots], dtype=np.int64)
    return _runs(
        start, end, np.array(states, dtype=object), node, slot, np.array(apps, dtype=np.int64), truncated
    )


def _runs(
    start: np.ndarray,
    end: np.ndarray,
    state: np.ndarray,
    node: np.ndarray,
    slot: np.ndarray,
    app: np.ndarray,
    truncated: bool,
) -> Runs:
    """Runs from their times, end states, nodes, slots (-1: unknown) and apps (arrays as long as the times)."""
    n = len(start)
    outcome = np.full(n, 1, dtype=np.int8)  # failed, unless …
    outcome[state == JobState.RUN_DONE.value] = 0
    outcome[state == JobState.KILLED.value] = 2
    outcome[state == None] = 3  # noqa: E711 - still running (elementwise comparison)
    crossed = state == JobState.RUN_TIMEOUT.value
    return Runs(start, end, outcome, crossed, node, truncated, slot, app)


def _read_packed(
    conn: Connection, mine: list[Any], ended_in_window: list[Any], since: datetime, until: datetime
) -> Runs:
    """The window's runs on PostgreSQL: grouped by (node, slot, end state, app) in the database, with each
    group's start and end times (seconds since ``since``; an open run ends at ``until``) as big-endian
    doubles (``float8send``) that NumPy reads without a Python object per run."""
    r = job_runs.c
    base = since.timestamp()
    ended = sa.func.coalesce(r.ended_at, until)
    seconds = (
        (sa.func.date_part("epoch", r.started_at) - base).label("start"),
        (sa.func.date_part("epoch", ended) - base).label("end"),
    )
    keys = (r.node, r.slot, r.end_state, r.app_id)
    finished = sa.select(*keys, *seconds).where(*mine, *ended_in_window).limit(MAX_RUNS + 1)
    still_open = sa.select(*keys, *seconds).where(*mine, r.ended_at.is_(None)).limit(MAX_RUNS + 1)
    runs = sa.union_all(finished, still_open).subquery()
    packed = (
        sa.select(
            runs.c.node, runs.c.slot, runs.c.end_state, runs.c.app_id,
            sa.func.string_agg(sa.func.float8send(runs.c.start), sa.literal(b"", sa.LargeBinary)),
            sa.func.string_agg(sa.func.float8send(runs.c.end), sa.literal(b"", sa.LargeBinary)),
        )
        .group_by(runs.c.node, runs.c.slot, runs.c.end_state, runs.c.app_id)
    )  # fmt: skip
    groups = conn.execute(packed).all()
    starts = [np.frombuffer(g[4], dtype=">f8") for g in groups]
    counts = np.array([len(v) for v in starts], dtype=np.int64)
    total = int(counts.sum())
    truncated = total > MAX_RUNS  # either part alone, or both together (rare: then drawn as read)
    start = np.concatenate(starts).astype(float) if groups else np.zeros(0)
    end = (
        np.concatenate([np.frombuffer(g[5], dtype=">f8") for g in groups]).astype(float) if groups else start
    )
    keep = np.sort(np.argsort(start, kind="stable")[:MAX_RUNS]) if truncated else slice(None)

    def each(values: list[Any], dtype: Any) -> np.ndarray:  # a value per group, repeated for its runs
        return np.repeat(np.array(values, dtype=dtype), counts)[keep]

    return _runs(
        start[keep], end[keep], each([g[2] for g in groups], object),
        each([g[0] or "node ?" for g in groups], object), each([-1 if g[1] is None else g[1] for g in groups], np.int64),
        each([g[3] for g in groups], np.int64), truncated,
    )  # fmt: skip


def _seconds(value: Any) -> float:
    if isinstance(value, float):  # seconds since the epoch, from PostgreSQL
        return value
    if not isinstance(value, datetime | str):
        return float(value)
    if isinstance(value, str):  # SQLite may hand back times as text
        value = datetime.fromisoformat(value)
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()


def assign_slots(runs: Runs) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """A row for each run, and each node's (name, first row, rows).

    Runs whose launcher reported a slot sit on that slot's row (a node's slots numbered in order); the
    others (older launchers, multi-node runs) are packed greedily into the fewest extra lanes of their node.
    """
    n = len(runs.start)
    row_of = np.zeros(n, dtype=np.int64)
    if n == 0:
        return row_of, []
    names, node_code = np.unique(runs.node.astype(str), return_inverse=True)
    slot = runs.slot if runs.slot is not None else np.full(n, -1, dtype=np.int64)
    known = slot >= 0
    # rows of the slotted runs: distinct (node, slot) pairs, in order
    pairs = node_code[known].astype(np.int64) * (2**31) + slot[known]
    distinct, pair_row = np.unique(pairs, return_inverse=True)
    slots_per_node = np.bincount((distinct // (2**31)).astype(np.int64), minlength=len(names))
    lanes_per_node = np.zeros(len(names), dtype=np.int64)
    lane_of = np.zeros(n, dtype=np.int64)
    for code in np.unique(node_code[~known]):
        members = np.flatnonzero((node_code == code) & ~known)
        lane_of[members], lanes_per_node[code] = _greedy_lanes(runs.start[members], runs.end[members])
    rows_per_node = slots_per_node + lanes_per_node
    first_row = np.concatenate(([0], np.cumsum(rows_per_node)[:-1]))
    first_pair_of_node = np.concatenate(([0], np.cumsum(slots_per_node)[:-1]))
    slotted_node = node_code[known]
    row_of[known] = first_row[slotted_node] + (pair_row - first_pair_of_node[slotted_node])
    unknown = ~known
    row_of[unknown] = first_row[node_code[unknown]] + slots_per_node[node_code[unknown]] + lane_of[unknown]
    layout = [(str(names[k]), int(first_row[k]), int(rows_per_node[k])) for k in range(len(names))]
    return row_of, layout


def _greedy_lanes(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, int]:
    """Each run's lane (the lowest free one when it starts) and the number of lanes."""
    lane = np.zeros(len(start), dtype=np.int64)
    free: list[int] = []  # lane numbers released, lowest first
    busy: list[tuple[float, int]] = []  # (end, lane)
    lanes = 0
    for i in np.argsort(start, kind="stable").tolist():
        while busy and busy[0][0] <= start[i]:
            heapq.heappush(free, heapq.heappop(busy)[1])
        chosen = heapq.heappop(free) if free else lanes
        lanes = max(lanes, chosen + 1)
        heapq.heappush(busy, (end[i], chosen))
        lane[i] = chosen
    return lane, lanes


APP_COLOURS = ("#0969da", "#2da44e", "#bf8700", "#8250df", "#1b7c83", "#e16f24", "#bf3989", "#57606a")
"""Colours of the first apps when the plot is coloured by app (the rest share the last one)."""


def raster(
    runs: Runs,
    rows: np.ndarray,
    n_rows: int,
    span_s: float,
    width: int = WIDTH_PX,
    category: np.ndarray | None = None,
    n_categories: int = len(OUTCOMES),
) -> np.ndarray:
    """Per-category pixel coverage, shape (categories, rows, width): how many runs cover each pixel.
    The category is the run's outcome unless given (the app's colour index)."""
    layers = np.zeros((n_categories, max(n_rows, 1), width + 1), dtype=np.int32)
    if len(rows):
        scale = width / span_s
        x0 = np.clip((runs.start * scale).astype(np.int64), 0, width - 1)
        x1 = np.clip(np.ceil(runs.end * scale).astype(np.int64), x0 + 1, width)
        kind = runs.outcome if category is None else category
        np.add.at(layers, (kind, rows, x0), 1)
        np.add.at(layers, (kind, rows, x1), -1)
    return np.cumsum(layers, axis=2)[:, :, :width]


def app_colours(runs: Runs, app_names: dict[int, str]) -> tuple[np.ndarray, dict[str, str]]:
    """Each run's colour index by app (busiest apps first), and the legend (label → colour)."""
    apps = runs.app if runs.app is not None else np.zeros(len(runs.start), dtype=np.int64)
    ids, counts = np.unique(apps, return_counts=True)
    busiest = [int(i) for i in ids[np.argsort(-counts, kind="stable")]]
    index = {app_id: min(k, len(APP_COLOURS) - 1) for k, app_id in enumerate(busiest)}
    category = np.array([index[int(a)] for a in apps], dtype=np.int64) if len(apps) else apps
    legend: dict[str, str] = {}
    last = len(APP_COLOURS) - 1
    for k, app_id in enumerate(busiest):
        if k < last or len(busiest) == len(APP_COLOURS):
            legend[app_names.get(app_id, f"app {app_id}")] = APP_COLOURS[k]
        else:
            legend[f"{len(busiest) - last} other apps"] = APP_COLOURS[last]
            break
    return category, legend


def render_png(
    runs: Runs, since: datetime, until: datetime, title: str, app_names: dict[int, str] | None = None
) -> bytes:
    """The plot as PNG, coloured by outcome, or by app when ``app_names`` is given."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colors as mcolors
    from matplotlib import pyplot as plt
    from matplotlib.figure import Figure

    span = max((until - since).total_seconds(), 1.0)
    rows, layout = assign_slots(runs)
    n_rows = sum(n for _, _, n in layout)
    # The raster is drawn at the axes' own pixel size, under the axes (figimage: no resampling pass).
    (left, bottom), (right, top) = AXES_BOX
    width_px, height_px = round((right - left) * WIDTH_PX), round((top - bottom) * HEIGHT_PX)
    if app_names is None:
        legend = dict(OUTCOMES)
        coverage = raster(runs, rows, n_rows, span, width_px)
    else:
        category, legend = app_colours(runs, app_names)
        coverage = raster(runs, rows, n_rows, span, width_px, category, len(APP_COLOURS))
    colours = list(legend.values()) if app_names is None else list(APP_COLOURS)
    image = np.full((max(n_rows, 1), width_px, 4), 255, dtype=np.uint8)
    for index, colour in enumerate(colours):  # later categories drawn over earlier ones
        mask = coverage[index] > 0
        image[mask] = np.round(np.array(mcolors.to_rgba(colour)) * 255).astype(np.uint8)
    image = image[np.arange(height_px) * max(n_rows, 1) // height_px]  # each slot's row, stretched
    figure = Figure(figsize=(WIDTH_PX / 100, HEIGHT_PX / 100), dpi=100)
    figure.figimage(image, xo=round(left * WIDTH_PX), yo=round(bottom * HEIGHT_PX), origin="upper", zorder=-1)
    axes = figure.add_axes((left, bottom, right - left, top - bottom), facecolor="none")
    minutes = span / 60
    axes.set_xlim(0, minutes)
    axes.set_ylim(max(n_rows, 1), 0)
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
    handles = [plt.Line2D([], [], color=c, linewidth=6, label=name) for name, c in legend.items()]
    handles.append(plt.Line2D([], [], color=NEVER_ENDED, marker="x", linestyle="", label="never ended"))
    axes.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.8)
    # Fixed margins (tight_layout would draw the figure once more) and quick PNG compression: a third of
    # the drawing time for a picture a few kB larger.
    out = io.BytesIO()
    figure.savefig(out, format="png", pil_kwargs={"compress_level": 1})
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
