"""PBS Pro / OpenPBS adapter: ``qsub``, ``qstat -f -F json -x``, ``qdel`` and ``$PBS_NODEFILE``.

Submission maps a :class:`PilotRequest` onto ``qsub`` options like this::

    qsub -N NAME -l select=N[:SELECT] -l walltime=HH:MM:SS -o WORKDIR/ -j oe
         [-A PROJECT] [-q QUEUE] [-l KEY=VALUE ...] [FLAG VALUE ...] [-v K=V,...] SCRIPT

- ``optional_params["select"]`` is appended to the select chunk (``{"select": "ngpus=4"}`` →
  ``-l select=2:ngpus=4``); every other ``key=value`` becomes ``-l key=value`` in the order given
  (``{"filesystems": "home:eagle", "place": "scatter"}``); a key starting with ``-`` is passed as that
  flag itself (``{"-W": "depend=afterok:12"}`` → ``-W depend=afterok:12``; an empty value passes the
  flag alone).
- ``-o WORKDIR/`` (a directory) with ``-j oe``: PBS writes the joined output there as ``NAME.oSEQ``,
  so pilots never overwrite each other's logs.
- ``environment`` is passed with ``-v`` (not ``-V``: the agent's own environment, tokens included,
  must not leak into the allocation). A value holding a comma is single-quoted, as ``qsub`` requires.

``qstat`` prints times in the local time zone of the machine it runs on, without saying which (the
ALCF records show it: ``stime`` "Thu Nov 9 13:05:50" for a job whose server comment says it started at
19:05 UTC). They are read in the given ``timezone`` (default: this machine's, which is right because the
agent runs ``qstat`` itself) and returned as aware UTC datetimes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, ClassVar

from beambridge.logs import get_logger
from beambridge.platform.commands import CommandResult, CommandRunner
from beambridge.platform.schedulers.base import (
    UNKNOWN_REASON,
    PilotRequest,
    PilotState,
    PilotStatus,
    Scheduler,
    SchedulerUnavailable,
    SubmitRejected,
)

log = get_logger(__name__)


#: ``job_state`` letters → pilot state. Q queued, H held, W waiting for its start time, T in transit,
#: S suspended (not running); R running, E exiting (still on its nodes), B array begun; F finished,
#: X finished sub-job. Any other letter (M moved, U cycle-harvesting) is not a definite answer.
JOB_STATES: Mapping[str, PilotState] = {
    "Q": PilotState.QUEUED,
    "H": PilotState.QUEUED,
    "W": PilotState.QUEUED,
    "T": PilotState.QUEUED,
    "S": PilotState.QUEUED,
    "R": PilotState.RUNNING,
    "E": PilotState.RUNNING,
    "B": PilotState.RUNNING,
    "F": PilotState.FINISHED,
    "X": PilotState.FINISHED,
}

#: Messages meaning the PBS server could not be reached (retry later).
_UNREACHABLE = re.compile(
    r"cannot connect to server|connection refused|no route to host|connection timed out|unknown host"
    r"|communication failure|pbs_iff|server not available|could not connect",
    re.IGNORECASE,
)

#: ``qsub`` messages that definitely refuse the submission.
_REJECTED = re.compile(
    r"unknown queue|is required to be set|rejected|violates|would exceed|exceeds"
    r"|unknown resource|illegal attribute or resource value|queue is not enabled"
    r"|unauthorized request|bad uid|invalid account",
    re.IGNORECASE,
)

_JOB_ID = re.compile(r"^\d+(?:\[\d*\])?(?:\.[\w.-]+)?$")
_UNKNOWN_JOB = re.compile(r"^qstat: Unknown Job Id (\S+)\s*$")
_FINISHED_JOB = re.compile(r"^qstat: (\S+) Job has finished\b")
_ESCAPE = re.compile(r'\\(u[0-9a-fA-F]{4}|["\\/bfnrt])|\\')


# ---------------------------------------------------------------------------------------------------
# pure parsers


def walltime(minutes: int) -> str:
    """Minutes as PBS ``HH:MM:SS`` (hours may exceed 24)."""
    if minutes < 1:
        raise ValueError(f"wall time must be at least one minute, got {minutes}")
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def parse_qsub_output(stdout: str) -> str | None:
    """The job id ``qsub`` printed (``"1234.server"``), or None when it printed something else."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if len(lines) == 1 and _JOB_ID.match(lines[0]):
        return lines[0]
    return None


def is_unreachable(text: str) -> bool:
    """Whether PBS's message says the server could not be reached."""
    return bool(_UNREACHABLE.search(text))


def rejection_reason(text: str) -> str | None:
    """The reason, when ``qsub``'s message is a definite refusal; None otherwise."""
    if is_unreachable(text):
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reasons = [re.sub(r"^qsub:\s*", "", line) for line in lines if _REJECTED.search(line)]
    return "; ".join(reasons) if reasons else None


def _keep_valid_escape(match: re.Match[str]) -> str:
    return match.group(0) if match.group(1) else "\\\\"


def load_pbs_json(text: str) -> dict[str, Any]:
    """Parse ``qstat -F json`` output; :class:`SchedulerUnavailable` when it is not a JSON object.

    Tolerates what PBS is known to emit: raw control characters inside strings (``strict=False``) and
    backslashes it forgot to escape in ``Variable_List`` values (retried with them doubled).
    """
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        if "escape" not in exc.msg:
            raise SchedulerUnavailable(f"qstat printed invalid JSON: {exc}") from exc
        try:
            data = json.loads(_ESCAPE.sub(_keep_valid_escape, text), strict=False)
        except json.JSONDecodeError as exc2:
            raise SchedulerUnavailable(f"qstat printed invalid JSON: {exc2}") from exc2
    if not isinstance(data, dict):
        raise SchedulerUnavailable(f"qstat printed JSON that is not an object: {text[:200]!r}")
    jobs = data.get("Jobs", {})
    if not isinstance(jobs, dict) or not all(isinstance(job, dict) for job in jobs.values()):
        raise SchedulerUnavailable("qstat printed a 'Jobs' entry that is not an object of objects")
    return data


def parse_pbs_time(text: str, tz: tzinfo | None = None) -> datetime | None:
    """A ``qstat`` time (``"Sun Jul 20 11:46:27 2025"``, local time of ``tz``) as an aware UTC datetime.

    ``tz=None`` means this machine's local time zone. Unparseable or empty text gives None.
    """
    try:
        naive = datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")
    except (ValueError, AttributeError):
        return None
    local = naive.replace(tzinfo=tz) if tz is not None else naive.astimezone()
    return local.astimezone(UTC)


def dedupe(names: Iterable[str]) -> tuple[str, ...]:
    """Non-empty names, first occurrence kept, order preserved."""
    return tuple(dict.fromkeys(name for name in names if name))


def parse_exec_host(exec_host: str) -> tuple[str, ...]:
    """Host names from ``exec_host`` (``"x1/0*208+x2/0*208"`` → ``("x1", "x2")``)."""
    return dedupe(part.split("/", 1)[0].strip() for part in exec_host.split("+"))


def parse_exec_vnode(exec_vnode: str) -> tuple[str, ...]:
    """Vnode names from ``exec_vnode`` (``"(x1:ncpus=2)+(x2:ncpus=2)"`` → ``("x1", "x2")``)."""
    names = []
    for chunk in exec_vnode.split("+"):
        names.append(chunk.strip().strip("()").split(":", 1)[0].strip())
    return dedupe(names)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def pilot_status(job_id: str, job: Mapping[str, Any], tz: tzinfo | None = None) -> PilotStatus | None:
    """One job of ``qstat -f -F json`` as a :class:`PilotStatus`; None if its state is not definite.

    The exit code, end time and nodes of a previous failed run of a job now held or queued again
    (PBS keeps ``Exit_status``, ``stime``, ``obittime`` across requeues) are not reported.
    """
    letter = str(job.get("job_state", "")).strip()
    state = JOB_STATES.get(letter)
    if state is None:
        log.warning("state_not_definite", scheduler="pbs", scheduler_id=job_id, state=letter)
        return None
    nodes: tuple[str, ...] = ()
    start_time = end_time = None
    exit_code = None
    if state is not PilotState.QUEUED:
        if job.get("exec_host"):
            nodes = parse_exec_host(str(job["exec_host"]))
        elif job.get("exec_vnode"):
            nodes = parse_exec_vnode(str(job["exec_vnode"]))
        start_time = parse_pbs_time(str(job.get("stime", "")), tz)
    if state is PilotState.FINISHED:
        exit_code = _int_or_none(job.get("Exit_status"))
        end_time = parse_pbs_time(str(job.get("obittime") or job.get("mtime") or ""), tz)
    return PilotStatus(
        scheduler_id=job_id,
        state=state,
        reason=letter,
        exit_code=exit_code,
        nodes=nodes,
        start_time=start_time,
        end_time=end_time,
    )


def _sequence(job_id: str) -> str:
    return job_id.split(".", 1)[0]


def _match(found: str, wanted: Sequence[str]) -> str | None:
    """The requested id ``found`` answers: the same id, else the same sequence number."""
    if found in wanted:
        return found
    candidates = [w for w in wanted if _sequence(w) == _sequence(found)]
    return candidates[0] if len(candidates) == 1 else None


def parse_qstat(
    result: CommandResult, wanted: Sequence[str], tz: tzinfo | None = None
) -> dict[str, PilotStatus]:
    """The definite statuses in one ``qstat -f -F json -x ID...`` run, keyed by the requested ids.

    ``Unknown Job Id X`` on stderr makes X finished ("unknown to the scheduler") while the other ids
    still come from the JSON. A server that cannot be reached, garbled JSON, or a failure exit with any
    other message raises :class:`SchedulerUnavailable` (PBS still prints a valid JSON header then).
    """
    if is_unreachable(result.stderr):
        raise SchedulerUnavailable(f"PBS server unreachable: {result.describe()}")
    unknown: list[str] = []
    finished: list[str] = []
    other: list[str] = []
    for line in (line.strip() for line in result.stderr.splitlines()):
        if m := _UNKNOWN_JOB.match(line):
            unknown.append(m.group(1))
        elif m := _FINISHED_JOB.match(line):
            finished.append(m.group(1))
        elif line:
            other.append(line)
    if not result.ok and (other or not (unknown or finished)):
        # a failure exit is a definite answer only when every message is about one job
        raise SchedulerUnavailable(f"qstat failed: {result.describe()}")
    if other:
        log.warning("qstat_messages", scheduler="pbs", messages=" | ".join(other))
    if result.stdout.strip():
        data = load_pbs_json(result.stdout)
    elif unknown or finished:
        data = {}
    else:
        raise SchedulerUnavailable(f"qstat printed nothing: {result.describe()}")

    statuses: dict[str, PilotStatus] = {}
    for found, job in data.get("Jobs", {}).items():
        wanted_id = _match(found, wanted)
        if wanted_id is None:
            continue
        status = pilot_status(wanted_id, job, tz)
        if status is not None:
            statuses[wanted_id] = status
    for found in unknown:
        wanted_id = _match(found, wanted)
        if wanted_id is not None and wanted_id not in statuses:
            statuses[wanted_id] = PilotStatus(wanted_id, PilotState.FINISHED, reason=UNKNOWN_REASON)
    for found in finished:
        wanted_id = _match(found, wanted)
        if wanted_id is not None and wanted_id not in statuses:
            statuses[wanted_id] = PilotStatus(wanted_id, PilotState.FINISHED, reason="Job has finished")
    return statuses


def jobs_named(data: Mapping[str, Any], job_name: str) -> list[str]:
    """Ids of the jobs in ``qstat -f -F json`` output named ``job_name`` that have not finished."""
    return [
        job_id
        for job_id, job in data.get("Jobs", {}).items()
        if job.get("Job_Name") == job_name
        and JOB_STATES.get(str(job.get("job_state"))) is not PilotState.FINISHED
    ]


def read_nodefile(path: Path) -> list[str]:
    """Host names in a ``PBS_NODEFILE`` (one line per slot), each once, in order."""
    return list(dedupe(line.strip() for line in path.read_text().splitlines()))


def _variable_list(environment: Mapping[str, str]) -> str:
    parts = []
    for key, value in environment.items():
        parts.append(f"{key}='{value}'" if "," in value else f"{key}={value}")
    return ",".join(parts)


def qsub_argv(request: PilotRequest) -> list[str]:
    """The exact ``qsub`` command for ``request`` (see the module docstring for the mapping)."""
    params = dict(request.optional_params)
    select = f"select={request.num_nodes}"
    if extra := params.pop("select", "").strip().lstrip(":"):
        select += f":{extra}"
    argv = [
        "qsub",
        "-N",
        request.job_name,
        "-l",
        select,
        "-l",
        f"walltime={walltime(request.wall_time_min)}",
        "-o",
        f"{request.workdir}/",
        "-j",
        "oe",
    ]
    if request.project:
        argv += ["-A", request.project]
    if request.queue:
        argv += ["-q", request.queue]
    for key, value in params.items():
        if key.startswith("-"):
            argv += [key, value] if value else [key]
        else:
            argv += ["-l", f"{key}={value}"]
    if request.environment:
        argv += ["-v", _variable_list(request.environment)]
    argv.append(str(request.script))
    return argv


# ---------------------------------------------------------------------------------------------------
# the adapter


class PbsScheduler(Scheduler):
    """PBS Pro / OpenPBS through ``qsub``, ``qstat`` and ``qdel``."""

    name: ClassVar[str] = "pbs"

    def __init__(self, runner: CommandRunner | None = None, *, timezone: tzinfo | None = None) -> None:
        super().__init__(runner)
        self.timezone = timezone
        """Time zone ``qstat`` prints times in (None: this machine's)."""

    def submit(self, request: PilotRequest) -> str:
        """``qsub`` the pilot; its PBS id (``"1234.server"``)."""
        result = self._run(qsub_argv(request))
        output = result.stdout + "\n" + result.stderr
        if result.ok:
            job_id = parse_qsub_output(result.stdout)
            if job_id is not None:
                return job_id
            raise SchedulerUnavailable(f"qsub printed no job id: {result.describe()}")
        if is_unreachable(output):
            raise SchedulerUnavailable(f"PBS server unreachable: {result.describe()}")
        reason = rejection_reason(output)
        if reason is not None:
            raise SubmitRejected(f"qsub rejected the pilot: {reason}")
        raise SchedulerUnavailable(f"qsub failed: {result.describe()}")

    def statuses(self, scheduler_ids: Sequence[str]) -> dict[str, PilotStatus]:
        """One ``qstat -f -F json -x ID...``; definite statuses by id."""
        if not scheduler_ids:
            return {}
        result = self._run(["qstat", "-f", "-F", "json", "-x", *scheduler_ids])
        return parse_qstat(result, list(scheduler_ids), self.timezone)

    def cancel(self, scheduler_id: str) -> None:
        """``qdel ID``; a job already finished or unknown to PBS is fine."""
        result = self._run(["qdel", scheduler_id])
        if result.ok:
            return
        output = result.stdout + "\n" + result.stderr
        if is_unreachable(output):
            raise SchedulerUnavailable(f"PBS server unreachable: {result.describe()}")
        if re.search(r"Job has finished|Unknown Job Id|job (?:has )?already finished", output, re.IGNORECASE):
            return
        raise SchedulerUnavailable(f"qdel failed: {result.describe()}")

    def find_by_name(self, job_name: str) -> list[str]:
        """Ids of live jobs named ``job_name`` from ``qstat -f -F json``; [] on any failure."""
        try:
            result = self._run(["qstat", "-f", "-F", "json"])
            if not result.ok or is_unreachable(result.stderr):
                return []
            return jobs_named(load_pbs_json(result.stdout), job_name)
        except Exception:
            log.exception("lookup_by_name_failed", scheduler="pbs", job_name=job_name)
            return []

    @staticmethod
    def allocation_nodes(environ: Mapping[str, str]) -> list[str] | None:
        """Host names from ``$PBS_NODEFILE`` (each once, in order); None outside a PBS allocation."""
        path = environ.get("PBS_NODEFILE")
        if not path:
            return None
        return read_nodefile(Path(path))
