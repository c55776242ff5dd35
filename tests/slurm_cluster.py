"""A real Slurm cluster for the tests: the machine's, or the project's own (``scripts/slurm-up.sh``).

:func:`running_slurm_cluster` uses Slurm if ``sinfo`` answers; otherwise it starts the project's local
cluster (4 fake nodes n1..n4 on 127.0.0.1, partition ``debug``; needs root) and stops it again when its
last user in this test run is done. It waits until every node answers (all idle on a fresh cluster).
:func:`slurm_cluster_session` is the body of the session fixture ``slurm_cluster``
(``tests/platform/conftest.py``; another directory's conftest can define it the same way): it fails in CI
(``CI=true``) and skips elsewhere when Slurm cannot be had. Tests that use it carry
``@pytest.mark.xdist_group("slurm")`` so that one xdist worker runs them all; the start/stop bookkeeping
is shared between workers anyway (a file lock and a ledger in the run's shared temporary directory).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import unavailable

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
UP_TIMEOUT_S = 600.0  # a cold start may apt-get install Slurm first
READY_TIMEOUT_S = 60.0
USABLE_STATES = frozenset({"idle", "mix", "alloc", "comp"})


class SlurmClusterUnavailable(RuntimeError):
    """No Slurm cluster could be found or started; the message says why."""


@dataclass(frozen=True)
class SlurmCluster:
    """The cluster the tests submit to."""

    partition: str
    """The default partition (where jobs submitted without ``-p`` go)."""
    nodes: tuple[str, ...]
    """Node names of that partition, sorted as ``sinfo`` lists them."""
    started_here: bool
    """True when these helpers started it (and will stop it)."""


def _run(argv: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)


def slurm_answers() -> bool:
    """Whether a Slurm controller answers right now (``scontrol ping`` fails at once when it is down,
    where ``sinfo`` would retry for about 9 s)."""
    try:
        ping = _run(["scontrol", "ping"], timeout_s=15)
        return ping.returncode == 0 and _run(["sinfo", "-h", "-o", "%P"], timeout_s=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def node_states() -> tuple[str, dict[str, str]]:
    """The default partition and ``node → state`` (``idle``, ``alloc``, ``down*``…) of its nodes."""
    done = _run(["sinfo", "-h", "-N", "-o", "%N|%P|%t"], timeout_s=15)
    if done.returncode != 0:
        raise SlurmClusterUnavailable(f"sinfo failed: {done.stderr.strip() or done.stdout.strip()}")
    default = ""
    states: dict[str, dict[str, str]] = {}
    for line in done.stdout.splitlines():
        node, partition, state = line.strip().split("|")
        if partition.endswith("*"):
            partition = partition[:-1]
            default = partition
        states.setdefault(partition, {})[node] = state
    if not default:
        raise SlurmClusterUnavailable(f"Slurm has no default partition: {done.stdout!r}")
    return default, states[default]


def wait_until_usable(timeout_s: float = READY_TIMEOUT_S) -> tuple[str, tuple[str, ...]]:
    """Wait until every node of the default partition is idle or running jobs (``mix``, ``alloc``,
    ``comp``; not down, drained or not responding); the partition and its nodes. A freshly started
    cluster is all idle; one that other test processes already use may be busy."""
    deadline = time.monotonic() + timeout_s
    while True:
        partition, states = node_states()
        if states and all(state in USABLE_STATES for state in states.values()):
            return partition, tuple(states)
        if time.monotonic() > deadline:
            raise SlurmClusterUnavailable(
                f"nodes of partition {partition} not usable after {timeout_s} s: {states}"
            )
        time.sleep(0.2)


def _run_script(name: str, timeout_s: float) -> None:
    script = SCRIPTS / name
    try:
        done = _run(["bash", str(script)], timeout_s=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise SlurmClusterUnavailable(f"{name} did not finish in {timeout_s} s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise SlurmClusterUnavailable(f"{name} exited {done.returncode}: {output}")


def start_cluster() -> None:
    """Run ``scripts/slurm-up.sh`` (root only: it installs packages and starts daemons)."""
    if os.geteuid() != 0:
        raise SlurmClusterUnavailable("Slurm is not running and starting it (scripts/slurm-up.sh) needs root")
    _run_script("slurm-up.sh", UP_TIMEOUT_S)


def stop_cluster() -> None:
    """Run ``scripts/slurm-down.sh``: cancel every job, stop the daemons slurm-up.sh started."""
    _run_script("slurm-down.sh", 120.0)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (shared by the processes of one test run)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def running_slurm_cluster(shared_dir: Path) -> Iterator[SlurmCluster]:
    """A Slurm cluster whose nodes all answer, shared by the processes that pass the same ``shared_dir``
    (the xdist workers of one run): the first user starts Slurm when ``sinfo`` does not answer, and the
    last user stops it again, only if it was started here."""
    shared_dir.mkdir(parents=True, exist_ok=True)
    lock, ledger = shared_dir / "slurm-cluster.lock", shared_dir / "slurm-cluster.json"
    with _locked(lock):
        users = json.loads(ledger.read_text()) if ledger.exists() else {"users": 0, "started": False}
        if not slurm_answers():
            start_cluster()
            users["started"] = True
        users["users"] += 1
        ledger.write_text(json.dumps(users))
    try:
        partition, nodes = wait_until_usable()
        yield SlurmCluster(partition=partition, nodes=nodes, started_here=bool(users["started"]))
    finally:
        with _locked(lock):
            users = json.loads(ledger.read_text())
            users["users"] -= 1
            if users["users"] == 0 and users["started"]:
                users["started"] = False
                ledger.write_text(json.dumps(users))
                stop_cluster()
            ledger.write_text(json.dumps(users))


def slurm_cluster_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """Body of a session-scoped ``slurm_cluster`` fixture (``yield from`` it): fails in CI and skips
    elsewhere when no cluster can be had."""
    base = tmp_path_factory.getbasetemp()
    shared_dir = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with ExitStack() as stack:
        try:
            cluster = stack.enter_context(running_slurm_cluster(shared_dir / "slurm-cluster"))
        except SlurmClusterUnavailable as exc:
            unavailable(f"no Slurm cluster could be had: {exc}")
        yield cluster
