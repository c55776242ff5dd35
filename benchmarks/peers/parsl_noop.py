"""Peer benchmark: no-op task throughput of Parsl's HighThroughputExecutor on this machine.

Runs with the *peer* virtualenv's interpreter (Parsl is not a dependency of beambridge)::

    .venv-peers/bin/python benchmarks/peers/parsl_noop.py --tasks 10000 --kind python --workers 2 --json

One HighThroughputExecutor on localhost (LocalProvider, one block, ``--workers`` workers), every socket on
127.0.0.1. After an untimed warm-up it submits ``--tasks`` no-op apps at once and waits for all of them
(``tasks_per_s``), then runs 50 single tasks one after the other, submit → result (``warm_task_ms``, the
median). ``--kind python`` uses a ``@python_app`` returning 0; ``--kind shell`` a ``@bash_app`` running
``true`` (no stdout/stderr files). ``--no-parsl-log`` turns off the DataFlowKernel's DEBUG ``parsl.log``,
which Parsl writes by default and which costs it a good part of its throughput. Parsl's run directory is a
temporary directory, removed at the end, and the DataFlowKernel is cleaned up so that no interchange or
worker process is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from typing import Any

import parsl
from parsl.app.app import bash_app, python_app
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider

LOOPBACK = "127.0.0.1"
LATENCY_SAMPLES = 50


@python_app
def noop_python() -> int:
    return 0


@bash_app
def noop_shell() -> str:
    return "true"


def make_config(run_dir: str, workers: int, parsl_log: bool) -> Config:
    executor = HighThroughputExecutor(
        label="htex_local",
        address=LOOPBACK,  # the interchange listens for workers on loopback only
        loopback_address=LOOPBACK,  # executor ⇄ interchange channels
        max_workers_per_node=workers,
        cores_per_worker=1,
        provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
    )
    return Config(
        executors=[executor],
        run_dir=run_dir,
        usage_tracking=0,
        strategy="none",  # a fixed single block: nothing to scale
        initialize_logging=parsl_log,  # Parsl's default: a DEBUG parsl.log in the run directory
    )


def run_batch(app: Callable[[], Any], n: int) -> float:
    """Submit ``n`` tasks at once, wait for all; return the wall time in seconds."""
    start = time.perf_counter()
    futures = [app() for _ in range(n)]
    for future in futures:
        future.result()
    return time.perf_counter() - start


def single_latencies_ms(app: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        app().result()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="timed no-op tasks (default 10000)")
    parser.add_argument("--kind", choices=("python", "shell"), default="python")
    parser.add_argument("--workers", type=int, default=2, help="workers on the node (default 2)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed warm-up tasks (default 200)")
    parser.add_argument(
        "--no-parsl-log",
        action="store_true",
        help="Config(initialize_logging=False): no per-task DEBUG parsl.log (Parsl's default writes one)",
    )
    parser.add_argument("--json", action="store_true", help="print only one JSON line")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.workers < 1 or args.warmup < 0:
        parser.error("--tasks and --workers must be >= 1, --warmup >= 0")

    # HTEX starts ``interchange.py`` and ``process_worker_pool.py`` from PATH: make this interpreter's
    # scripts directory (the peer venv's bin/) visible even when the venv is not activated.
    scripts = sysconfig.get_path("scripts")
    os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])

    app = noop_python if args.kind == "python" else noop_shell
    run_dir = tempfile.mkdtemp(prefix="parsl-noop-")
    try:
        parsl.load(make_config(run_dir, args.workers, parsl_log=not args.no_parsl_log))
        try:
            app().result()  # waits for the worker pool to connect
            if args.warmup:
                run_batch(app, args.warmup)
            seconds = run_batch(app, args.tasks)
            latencies = single_latencies_ms(app, LATENCY_SAMPLES)
        finally:
            parsl.dfk().cleanup()
            parsl.clear()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)

    result = {
        "kind": args.kind,
        "tasks": args.tasks,
        "seconds": round(seconds, 4),
        "tasks_per_s": round(args.tasks / seconds, 1),
        "warm_task_ms": round(statistics.median(latencies), 3),
        "workers": args.workers,
        "parsl_log": not args.no_parsl_log,
        "parsl_version": parsl.__version__,
    }
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        print(
            f"parsl {result['parsl_version']} HTEX, {args.workers} workers, {args.kind} no-op"
            f"{'' if result['parsl_log'] else ' (no parsl.log)'}: "
            f"{args.tasks} tasks in {result['seconds']:.2f} s = {result['tasks_per_s']:,.0f} tasks/s; "
            f"warm single task {result['warm_task_ms']:.2f} ms (median of {LATENCY_SAMPLES})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
