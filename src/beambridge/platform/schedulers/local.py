"""The ``local`` scheduler: pilots are plain processes on this machine (laptops, demos, tests).

Every pilot is a small *wrapper* process (this module, run with ``python -I``) that starts ``bash SCRIPT``
in a process group of its own, enforces the wall time, and writes the outcome to a file when the script
ends. All a pilot's state lives in its *record directory* ``STATE_DIR/<id>/``, so any process that opens the
same state directory — an agent restarted after a crash, the CLI — sees and controls the same pilots:

``pilot.json``
    the request (name, script, workdir, nodes, wall time) as submitted;
``process.json``
    the wrapper's pid and kernel start time (a recycled pid is never mistaken for the pilot);
``workload.json``
    the script's pid / process group and start time, written by the wrapper once it has started it;
``cancel``
    present once a cancel was asked for;
``result.json``
    the outcome (exit code, signal, reason, end time), written atomically: its presence means finished.

**Ids** are ``<UTC yyyymmddHHMMSS>-<6 hex digits>`` (e.g. ``20250301121530-a1b2c3``): unique without a
pid (pids are recycled) and sortable by submission time. The output goes to ``WORKDIR/local-<id>.out``.

**State directory**: the ``state_dir`` argument, else ``$BEAMBRIDGE_HOME/local-scheduler`` (the default
home is ``~/.beambridge``).

**Nodes**: every node of a local allocation is this machine. The pilot's environment carries
``BEAMBRIDGE_LOCAL_NODES``, ``num_nodes`` comma-separated copies of ``localhost`` (a name every MPI
launcher treats as the local host), and ``BEAMBRIDGE_LOCAL_JOBID``. :meth:`LocalScheduler.allocation_nodes`
returns that list, so a node name may repeat: consumers treat each entry as one node *slot* and must key
nodes by position, not by name.

**Outcome reasons**: ``COMPLETED`` (exit 0), ``FAILED`` (non-zero exit), ``KILLED`` (killed by a signal
nobody here sent), ``TIMEOUT`` (wall time overrun), ``CANCELLED``, ``lost`` (the wrapper vanished, e.g.
``kill -9``, without recording an outcome), ``unknown to the scheduler`` (no such record). A script killed
by signal *n* has exit code ``128 + n``, as in the shell.

**Wall time**: counted from the script's start and enforced by the wrapper, so it holds with no agent
running; ``wall_time_min=0`` means no limit.

**Ending a pilot** (wall time or cancel): ``SIGTERM`` to the script's process group, ``SIGKILL`` after
``grace_s`` seconds. When the script ends, anything it left running in its group is ended the same way
before the outcome is written, so ``FINISHED`` means no process of the pilot is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from beambridge.logs import get_logger
from beambridge.platform.commands import CommandRunner
from beambridge.platform.schedulers.base import (
    PilotRequest,
    PilotState,
    PilotStatus,
    Scheduler,
    SchedulerUnavailable,
    SubmitRejected,
)

log = get_logger(__name__)

NODES_ENV = "BEAMBRIDGE_LOCAL_NODES"
"""The environment variable listing the allocation's node slots (comma-separated)."""
JOBID_ENV = "BEAMBRIDGE_LOCAL_JOBID"
"""The environment variable holding the pilot's scheduler id."""
LOCAL_NODE = "localhost"

UNKNOWN = "unknown to the scheduler"
LOST = "lost"

_ID_RE = re.compile(r"^[0-9]{14}-[0-9a-f]{6}$")
_QUEUED_GRACE_S = 60.0
"""How long a record whose wrapper pid is not yet written counts as queued (the submitter may be
between starting the wrapper and recording its pid) before it is declared lost."""
_POLL_S = 0.1

# Run by the wrapper with `python -I -c`: isolated from PYTHON* variables of the pilot's environment; the
# package is imported from the directory this module was loaded from.
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from beambridge.platform.schedulers.local import run_pilot; sys.exit(run_pilot(sys.argv[2]))"
)


def default_state_dir() -> Path:
    """``$BEAMBRIDGE_HOME/local-scheduler`` (``~/.beambridge/local-scheduler`` by default)."""
    home = os.environ.get("BEAMBRIDGE_HOME") or "~/.beambridge"
    return Path(home).expanduser() / "local-scheduler"


class LocalScheduler(Scheduler):
    """Pilots as detached processes on this machine; state kept in a directory (see the module doc)."""

    name: ClassVar[str] = "local"

    def __init__(
        self,
        runner: CommandRunner | None = None,
        *,
        state_dir: Path | None = None,
        grace_s: float = 5.0,
        minute_s: float = 60.0,
    ) -> None:
        """``state_dir``: where pilot records live (default :func:`default_state_dir`). ``grace_s``: time
        between ``SIGTERM`` and ``SIGKILL``. ``minute_s``: seconds in one minute of requested wall time
        (tests and demos shorten it)."""
        super().__init__(runner)
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.grace_s = grace_s
        self.minute_s = minute_s
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    @classmethod
    def for_site(cls, site_root: Path) -> LocalScheduler:
        """The site's local scheduler keeps its pilot records in the site directory."""
        return cls(state_dir=site_root / "local-scheduler")

    # -- submission -----------------------------------------------------------------------------------

    def submit(self, request: PilotRequest) -> str:
        """Start the pilot's wrapper, detached in a session of its own; the new pilot's id."""
        script = Path(request.script).expanduser().resolve()
        if not script.is_file():
            raise SubmitRejected(f"local: the pilot script {script} does not exist")
        if request.num_nodes < 1:
            raise SubmitRejected(f"local: num_nodes must be at least 1, not {request.num_nodes}")
        if request.wall_time_min < 0:
            raise SubmitRejected(f"local: wall_time_min must not be negative, not {request.wall_time_min}")
        workdir = Path(request.workdir).expanduser().resolve()
        nodes = [LOCAL_NODE] * request.num_nodes
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            scheduler_id, record = self._new_record()
            output = workdir / f"local-{scheduler_id}.out"
            _write_json(
                record / "pilot.json",
                {
                    "id": scheduler_id,
                    "job_name": request.job_name,
                    "script": str(script),
                    "workdir": str(workdir),
                    "output": str(output),
                    "num_nodes": request.num_nodes,
                    "nodes": nodes,
                    "wall_time_s": request.wall_time_min * self.minute_s,
                    "grace_s": self.grace_s,
                    "submitted_at": _now(),
                },
            )
        except OSError as exc:
            raise SchedulerUnavailable(f"local: cannot prepare the pilot: {exc}") from exc
        env = {**os.environ, **request.environment, NODES_ENV: ",".join(nodes), JOBID_ENV: scheduler_id}
        package_root = str(Path(__file__).resolve().parents[3])
        try:
            with open(output, "ab") as out:
                child = subprocess.Popen(
                    [sys.executable, "-I", "-c", _BOOTSTRAP, package_root, str(record)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                    env=env,
                    start_new_session=True,
                )
        except OSError as exc:
            _write_json(record / "result.json", _result(None, None, "FAILED", error=str(exc)))
            raise SchedulerUnavailable(f"local: cannot start the pilot: {exc}") from exc
        self._children[scheduler_id] = child
        identity = _process_identity(child.pid)
        _write_json(
            record / "process.json",
            {"pid": child.pid, "start": identity[0] if identity else None},
        )
        log.info(
            "pilot_started",
            scheduler="local",
            scheduler_id=scheduler_id,
            job_name=request.job_name,
            pid=child.pid,
        )
        return scheduler_id

    def _new_record(self) -> tuple[str, Path]:
        while True:
            scheduler_id = f"{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
            record = self.state_dir / scheduler_id
            try:
                record.mkdir()
            except FileExistsError:
                continue
            return scheduler_id, record

    # -- status ---------------------------------------------------------------------------------------

    def statuses(self, scheduler_ids: Sequence[str]) -> dict[str, PilotStatus]:
        """What the records and the process table say; an unreadable record is left out of the answer."""
        self._reap()
        answer: dict[str, PilotStatus] = {}
        for scheduler_id in scheduler_ids:
            try:
                answer[scheduler_id] = self._status(scheduler_id)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning(
                    "pilot_record_unreadable", scheduler="local", scheduler_id=scheduler_id, error=exc
                )
        return answer

    def _status(self, scheduler_id: str) -> PilotStatus:
        record = self._record(scheduler_id)
        pilot = _read_json(record / "pilot.json") if record else None
        if record is None or pilot is None:
            return PilotStatus(scheduler_id, PilotState.FINISHED, reason=UNKNOWN)
        nodes = tuple(pilot.get("nodes", ()))
        result = _read_json(record / "result.json")
        if result is None:
            process = _read_json(record / "process.json")
            if process is None:
                if _age_s(pilot) < _QUEUED_GRACE_S:
                    return PilotStatus(scheduler_id, PilotState.QUEUED, reason="STARTING")
            elif _is_alive(process["pid"], process.get("start")):
                workload = _read_json(record / "workload.json")
                return PilotStatus(
                    scheduler_id,
                    PilotState.RUNNING,
                    reason="RUNNING",
                    nodes=nodes,
                    start_time=_time((workload or {}).get("started_at") or pilot.get("submitted_at")),
                )
            # The wrapper is gone. It may have written its result just now; otherwise the pilot is lost.
            result = _read_json(record / "result.json")
            if result is None:
                result = self._conclude_without_wrapper(record)
        workload = _read_json(record / "workload.json")
        return PilotStatus(
            scheduler_id,
            PilotState.FINISHED,
            reason=result["reason"],
            exit_code=result.get("exit_code"),
            nodes=nodes,
            start_time=_time(workload.get("started_at")) if workload else None,
            end_time=_time(result.get("end_time")),
        )

    def _conclude_without_wrapper(self, record: Path) -> dict[str, Any]:
        """The wrapper died without writing an outcome: end what is left of the script (its process group,
        when it is provably still ours) and record the verdict, so every later answer is the same."""
        workload = _read_json(record / "workload.json")
        if workload is not None:
            _kill_group(workload["pgid"], workload["pid"], workload.get("start"), signal.SIGKILL)
        reason = "CANCELLED" if (record / "cancel").exists() else LOST
        result = _result(None, None, reason)
        _write_json(record / "result.json", result)
        return result

    def _record(self, scheduler_id: str) -> Path | None:
        if not _ID_RE.match(scheduler_id):
            return None
        record = self.state_dir / scheduler_id
        return record if record.is_dir() else None

    def _reap(self) -> None:
        """Collect the exit status of wrappers this instance started, so they do not linger as zombies."""
        for scheduler_id, child in list(self._children.items()):
            if child.poll() is None and (self.state_dir / scheduler_id / "result.json").exists():
                # The wrapper exits right after writing the outcome.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=2.0)
            if child.returncode is not None:
                del self._children[scheduler_id]

    def pid_of(self, scheduler_id: str) -> int | None:
        """The pid of the pilot's wrapper process while it runs (for tools and tests), else None."""
        record = self._record(scheduler_id)
        process = _read_json(record / "process.json") if record else None
        if process is None or not _is_alive(process["pid"], process.get("start")):
            return None
        return int(process["pid"])

    # -- cancel ---------------------------------------------------------------------------------------

    def cancel(self, scheduler_id: str) -> None:
        """End the pilot: ``SIGTERM`` to its script's process group, ``SIGKILL`` after the grace time.
        Returns once it has ended (at most about ``grace_s + 5`` seconds); finished or unknown: no-op.
        :class:`SchedulerUnavailable` if the pilot's record cannot be read."""
        try:
            self._cancel(scheduler_id)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SchedulerUnavailable(f"local: cannot cancel pilot {scheduler_id}: {exc!r}") from exc

    def _cancel(self, scheduler_id: str) -> None:
        self._reap()
        record = self._record(scheduler_id)
        if record is None or (record / "result.json").exists():
            return
        pilot = _read_json(record / "pilot.json")
        if pilot is None:
            return  # not (yet) a pilot: unknown
        (record / "cancel").touch()
        process = _read_json(record / "process.json")
        grace = float(pilot.get("grace_s", self.grace_s))
        wrapper_alive = process is not None and _is_alive(process["pid"], process.get("start"))
        if process is not None and wrapper_alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process["pid"], signal.SIGTERM)
            # The wrapper ends the script and records the outcome.
            deadline = time.monotonic() + grace + 5.0
            while time.monotonic() < deadline:
                if (record / "result.json").exists():
                    self._reap()
                    return
                if not _is_alive(process["pid"], process.get("start")):
                    break
                time.sleep(0.05)
            if (record / "result.json").exists():
                self._reap()
                return
            log.warning(
                "pilot_killed_directly",
                scheduler="local",
                scheduler_id=scheduler_id,
                reason="its wrapper did not end it",
            )
            if _is_alive(process["pid"], process.get("start")):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process["pid"], signal.SIGKILL)
                _wait_until(lambda: not _is_alive(process["pid"], process.get("start")), 5.0)
                self._reap()
        elif process is None and _age_s(pilot) < _QUEUED_GRACE_S:
            return  # a wrapper that is starting sees the cancel file and does not start the script
        workload = _read_json(record / "workload.json")
        if workload is not None:
            args = (workload["pgid"], workload["pid"], workload.get("start"))
            if _kill_group(*args, signal.SIGTERM):
                _wait_until(lambda: not _group_exists(*args), grace)
                _kill_group(*args, signal.SIGKILL)
        wrapper_gone = process is None or not _is_alive(process["pid"], process.get("start"))
        if wrapper_gone and not (record / "result.json").exists():
            _write_json(record / "result.json", _result(None, None, "CANCELLED"))

    # -- lookup ---------------------------------------------------------------------------------------

    def find_by_name(self, job_name: str) -> list[str]:
        """Ids of the queued or running pilots named ``job_name``, oldest first."""
        if not self.state_dir.is_dir():
            return []
        candidates = []
        for record in sorted(self.state_dir.iterdir()):
            if not _ID_RE.match(record.name) or (record / "result.json").exists():
                continue
            pilot = _read_json(record / "pilot.json")
            if pilot is not None and pilot.get("job_name") == job_name:
                candidates.append(record.name)
        live = self.statuses(candidates)
        return [i for i in candidates if i in live and live[i].state is not PilotState.FINISHED]

    @staticmethod
    def allocation_nodes(environ: Mapping[str, str]) -> list[str] | None:
        """The node slots of the local allocation from ``BEAMBRIDGE_LOCAL_NODES`` (None outside one).
        Every entry is this machine; the list has one entry per requested node."""
        value = environ.get(NODES_ENV, "")
        nodes = [name.strip() for name in value.split(",") if name.strip()]
        return nodes or None


# -- the wrapper -----------------------------------------------------------------------------------------


def run_pilot(record_dir: str) -> int:
    """The wrapper's main: run the pilot script of the record in ``record_dir`` to its end, enforcing the
    wall time and honouring ``SIGTERM`` / ``SIGINT`` / ``SIGHUP`` (cancel), and write ``result.json``."""
    record = Path(record_dir)
    stop: list[str] = []

    def on_signal(signum: int, frame: object) -> None:
        if not stop:
            stop.append("CANCELLED")

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        pilot = _read_json(record / "pilot.json")
        if pilot is None:
            raise RuntimeError(f"no pilot.json in {record}")
        if stop or (record / "cancel").exists():
            _write_json(record / "result.json", _result(None, None, "CANCELLED"))
            return 0
        result = _run_script(record, pilot, stop)
    except Exception as exc:
        print(f"beambridge-local: the pilot wrapper failed: {exc!r}", flush=True)
        result = _result(None, None, "FAILED", error=repr(exc))
    _write_json(record / "result.json", result)
    return 0


def _run_script(record: Path, pilot: dict[str, Any], stop: list[str]) -> dict[str, Any]:
    grace = float(pilot["grace_s"])
    wall_time = float(pilot["wall_time_s"])
    script = subprocess.Popen(
        ["bash", pilot["script"]], stdin=subprocess.DEVNULL, cwd=pilot["workdir"], start_new_session=True
    )
    pid = script.pid
    identity = _process_identity(pid)
    start = identity[0] if identity else None
    _write_json(record / "workload.json", {"pid": pid, "pgid": pid, "start": start, "started_at": _now()})
    deadline = time.monotonic() + wall_time if wall_time > 0 else None
    term_at: float | None = None
    killed = False
    # Wait without reaping (WNOWAIT): the zombie keeps the process group id reserved while leftovers are
    # ended below, so the group signalled is always the script's own.
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        now = time.monotonic()
        if not stop and (record / "cancel").exists():
            stop.append("CANCELLED")
        if not stop and deadline is not None and now >= deadline:
            stop.append("TIMEOUT")
            print(f"beambridge-local: wall time of {wall_time:g} s exceeded; ending the pilot", flush=True)
        if stop and term_at is None:
            term_at = now
            _signal_group(pid, signal.SIGTERM)
        elif term_at is not None and not killed and now >= term_at + grace:
            killed = True
            _signal_group(pid, signal.SIGKILL)
        time.sleep(_POLL_S)
    # Whatever the script left running in its group is ended too.
    if _group_members(pid, exclude=pid) != []:
        _signal_group(pid, signal.SIGTERM)
        _wait_until(lambda: _group_members(pid, exclude=pid) == [], grace if _HAS_PROC else min(grace, 1.0))
        _signal_group(pid, signal.SIGKILL)
    returncode = script.wait()
    if returncode < 0:
        signum = -returncode
        return _result(128 + signum, signum, stop[0] if stop else "KILLED")
    if stop:
        return _result(returncode, None, stop[0])
    return _result(returncode, None, "COMPLETED" if returncode == 0 else "FAILED")


# -- processes ---------------------------------------------------------------------------------------------

_HAS_PROC = Path("/proc/self/stat").exists()


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state is [0], pgrp [2], starttime [19])."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def _process_identity(pid: int) -> tuple[str, bool] | None:
    """``(start time token, is zombie)`` of a process, None if there is none with this pid."""
    if _HAS_PROC:
        fields = _proc_stat(pid)
        if fields is None:
            return None
        return fields[19], fields[0] in ("Z", "X")
    done = subprocess.run(
        ["ps", "-o", "stat=", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    line = done.stdout.strip()
    if done.returncode != 0 or not line:
        return None
    stat, _, started = line.partition(" ")
    return started.strip(), stat.startswith("Z")


def _is_alive(pid: int, start: str | None) -> bool:
    """A live (not zombie) process with this pid that started when recorded (a recycled pid is not)."""
    identity = _process_identity(int(pid))
    if identity is None or identity[1]:
        return False
    return start is None or identity[0] == start


def _group_members(pgid: int, exclude: int | None = None) -> list[int] | None:
    """Pids of the live processes in process group ``pgid`` (None where ``/proc`` is not available)."""
    if not _HAS_PROC:
        return None
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == exclude:
            continue
        fields = _proc_stat(int(entry))
        if fields is not None and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def _group_is_ours(pgid: int, leader: int, start: str | None) -> bool:
    """Whether process group ``pgid`` is still the one the recorded leader started.

    It is if the leader is there with its recorded start time (alive or zombie). If the leader is gone,
    members that remain prove it: the kernel never hands out a pid number still in use as a group id."""
    identity = _process_identity(leader)
    if identity is not None:
        return start is not None and identity[0] == start
    members = _group_members(pgid)
    return bool(members)


def _group_exists(pgid: int, leader: int, start: str | None) -> bool:
    members = _group_members(pgid)
    if members is not None:
        return bool(members)
    return _is_alive(leader, start)


def _kill_group(pgid: int, leader: int, start: str | None, signum: signal.Signals) -> bool:
    """Signal the process group if it is provably the recorded one; whether it was signalled."""
    if not _group_is_ours(pgid, leader, start):
        return False
    return _signal_group(pgid, signum)


def _signal_group(pgid: int, signum: signal.Signals) -> bool:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


# -- records ---------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _age_s(pilot: Mapping[str, Any]) -> float:
    """Seconds since the pilot was submitted."""
    return (datetime.now(UTC) - datetime.fromisoformat(pilot["submitted_at"])).total_seconds()


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _result(exit_code: int | None, signum: int | None, reason: str, error: str = "") -> dict[str, Any]:
    result: dict[str, Any] = {"exit_code": exit_code, "signal": signum, "reason": reason, "end_time": _now()}
    if error:
        result["error"] = error
    return result


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write atomically: a reader sees the old file, or none, or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The record file's content; None if it does not exist (``ValueError`` if it is garbled)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data
