"""IBM Spectrum LSF adapter (Summit / Frontier-era ``-nnodes`` style): ``bsub``, ``bjobs -json``, ``bkill``.

Submission maps a :class:`PilotRequest` onto ``bsub`` options like this::

    bsub -J NAME -nnodes N -W MINUTES -o WORKDIR/lsf-%J.out [-P PROJECT] [-q QUEUE] [-KEY VALUE ...] SCRIPT

- ``optional_params`` become flags: ``{"alloc_flags": "gpumps"}`` → ``-alloc_flags gpumps``; a key may
  carry its own dash (``{"-G": "grp"}``); an empty value passes the flag alone.
- ``SCRIPT`` is given as the job's command, so it must be executable; LSF runs it on the launch node.
- ``environment`` is merged into ``bsub``'s own environment, which LSF copies into the job by default.

``bjobs`` prints times like ``"Dec 28 19:56"`` (local time, no year; a finish time may carry a suffix
such as ``" L"``). They are read in the given ``timezone`` (default: this machine's), the year being the
latest that does not put the time in the future, and returned as aware UTC datetimes. A finish time is
only used for finished jobs: for others LSF may print an *estimated* finish.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
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


#: The ``-o`` field list of the status query (``job_name`` rather than its alias ``name``, so that the
#: JSON key is the documented ``JOB_NAME``).
BJOBS_FIELDS = "jobid stat exit_code submit_time start_time finish_time exec_host job_name"

#: ``STAT`` → pilot state. Suspended jobs count as not running. UNKWN (mbatchd lost the execution host)
#: and ZOMBI (killed while its host was unreachable) are not definite answers.
JOB_STATES: Mapping[str, PilotState] = {
    "PEND": PilotState.QUEUED,
    "WAIT": PilotState.QUEUED,
    "PROV": PilotState.QUEUED,
    "PSUSP": PilotState.QUEUED,
    "USUSP": PilotState.QUEUED,
    "SSUSP": PilotState.QUEUED,
    "RUN": PilotState.RUNNING,
    "DONE": PilotState.FINISHED,
    "EXIT": PilotState.FINISHED,
}
#: States of a job that has never started (their START_TIME, if any, is an estimate).
_NOT_STARTED = frozenset({"PEND", "WAIT", "PROV", "PSUSP"})

#: Messages meaning LSF could not answer (retry later).
_UNREACHABLE = re.compile(
    r"LSF is down|LIM is down|not responding|Failed in an LSF library call|cannot connect"
    r"|Communication time ?out|still trying|Please wait|mbatchd|sbatchd|Connection refused"
    r"|No route to host|Bad file descriptor|Slave LIM|Master LIM",
    re.IGNORECASE,
)
_SUBMITTED = re.compile(r"Job <(\d+(?:\[\d+\])?)> is submitted")
_NOT_FOUND = re.compile(r"Job <([^>]+)> is not found|Job <([^>]+)>: No matching job found", re.IGNORECASE)
_GONE = re.compile(
    r"Job has already finished|is not found|No matching job found|is being signaled|is being terminated",
    re.IGNORECASE,
)
_TIME = re.compile(
    r"^([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s+(\d{4}))?(?:\s+[A-Z])?$"
)
_LAUNCH_NODE = re.compile(r"^(?:batch|login)\d*$")


# ---------------------------------------------------------------------------------------------------
# pure parsers


def parse_bsub_output(stdout: str) -> str | None:
    """The job id in ``"Job <123> is submitted to queue <batch>."``, or None."""
    m = _SUBMITTED.search(stdout)
    return m.group(1) if m else None


def is_unreachable(text: str) -> bool:
    """Whether LSF's message says it could not answer now."""
    return bool(_UNREACHABLE.search(text))


def rejection_reason(text: str) -> str | None:
    """The reason, when ``bsub``'s message is a definite refusal ("… Job not submitted.")."""
    if is_unreachable(text) or not re.search(
        r"Job not submitted|Request aborted by esub", text, re.IGNORECASE
    ):
        return None
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def parse_lsf_time(text: str, now: datetime, tz: tzinfo | None = None) -> datetime | None:
    """A ``bjobs`` time (``"Dec 28 19:56 L"``) as an aware UTC datetime; None if empty or unparseable.

    Without a year, the latest year that does not put the time more than a day after ``now`` (aware)
    is taken. ``tz=None`` means this machine's local time zone.
    """
    m = _TIME.match(text.strip())
    if not m:
        return None
    month, day, hour, minute, second, year = m.groups()
    try:
        month_no = datetime.strptime(month, "%b").month
    except ValueError:
        return None
    years = [int(year)] if year else [now.year + 1, *range(now.year, now.year - 8, -1)]
    for candidate in years:
        try:
            naive = datetime(candidate, month_no, int(day), int(hour), int(minute), int(second or 0))
        except ValueError:
            continue  # 29 February of a common year, or a bad day
        local = naive.replace(tzinfo=tz) if tz is not None else naive.astimezone()
        when = local.astimezone(UTC)
        if year or when <= now + timedelta(days=1):
            return when
    return None


def dedupe(names: Iterable[str]) -> tuple[str, ...]:
    """Non-empty names, first occurrence kept, order preserved."""
    return tuple(dict.fromkeys(name for name in names if name))


def compute_hosts(hosts: Iterable[str]) -> list[str]:
    """Hosts once each, in order, without Summit-style launch nodes (``batch3``, ``login1``) unless
    those are all there is."""
    unique = list(dedupe(host.strip() for host in hosts))
    compute = [host for host in unique if not _LAUNCH_NODE.match(host)]
    return compute or unique


def parse_exec_host(exec_host: str) -> tuple[str, ...]:
    """Hosts in ``EXEC_HOST`` (``"1*batch3:42*a01n06:42*a01n07"`` or ``"h1:h1"``), launch nodes dropped."""
    hosts = (part.split("*", 1)[-1] for part in re.split(r"[:\s]+", exec_host))
    return tuple(compute_hosts(hosts))


def _exit_code(stat: str, value: str) -> int | None:
    if stat == "DONE":
        return 0
    try:
        return int(value.strip())
    except ValueError:
        return None


def pilot_status(
    job_id: str, record: Mapping[str, Any], now: datetime, tz: tzinfo | None = None
) -> PilotStatus | None:
    """One ``bjobs -json`` record as a :class:`PilotStatus`; None if its ``STAT`` is not definite."""
    stat = str(record.get("STAT", "")).strip()
    state = JOB_STATES.get(stat)
    if state is None:
        log.warning("state_not_definite", scheduler="lsf", scheduler_id=job_id, stat=stat)
        return None
    started = stat not in _NOT_STARTED
    return PilotStatus(
        scheduler_id=job_id,
        state=state,
        reason=stat,
        exit_code=_exit_code(stat, str(record.get("EXIT_CODE", "")))
        if state is PilotState.FINISHED
        else None,
        nodes=parse_exec_host(str(record.get("EXEC_HOST", ""))) if started else (),
        start_time=parse_lsf_time(str(record.get("START_TIME", "")), now, tz) if started else None,
        end_time=(
            parse_lsf_time(str(record.get("FINISH_TIME", "")), now, tz)
            if state is PilotState.FINISHED
            else None
        ),
    )


def not_found_ids(text: str) -> list[str]:
    """Ids named in ``Job <x> is not found`` messages."""
    return [a or b for a, b in _NOT_FOUND.findall(text)]


def load_bjobs_json(text: str) -> list[dict[str, Any]]:
    """The ``RECORDS`` of ``bjobs -o … -json``; :class:`SchedulerUnavailable` if garbled."""
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise SchedulerUnavailable(f"bjobs printed invalid JSON: {exc}") from exc
    records = data.get("RECORDS") if isinstance(data, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise SchedulerUnavailable(f"bjobs printed JSON without a RECORDS list: {text[:200]!r}")
    return records


def parse_bjobs_json(
    text: str, wanted: Sequence[str], now: datetime, tz: tzinfo | None = None
) -> dict[str, PilotStatus]:
    """Definite statuses in ``bjobs -o … -json ID...`` output, keyed by the requested ids.

    A record ``{"JOBID": "x", "ERROR": "Job <x> is not found"}`` makes x finished ("unknown to the
    scheduler"); any other ``ERROR`` raises :class:`SchedulerUnavailable`. A record without ``JOBID``
    (its ``-o`` list lacked it) is attributed to the one requested id when only one was asked for.
    """
    records = load_bjobs_json(text)
    statuses: dict[str, PilotStatus] = {}
    for record in records:
        job_id = str(record.get("JOBID", "")).strip()
        if not job_id and len(wanted) == 1 and len(records) == 1:
            job_id = wanted[0]
        if error := str(record.get("ERROR", "")).strip():
            missing = not_found_ids(error)
            if not missing:
                raise SchedulerUnavailable(f"bjobs said: {error}")
            for found in missing:
                if found in wanted:
                    statuses[found] = PilotStatus(found, PilotState.FINISHED, reason=UNKNOWN_REASON)
            continue
        if job_id not in wanted:
            continue
        status = pilot_status(job_id, record, now, tz)
        if status is not None:
            statuses[job_id] = status
    return statuses


def parse_bjobs_table(text: str, wanted: Sequence[str] | None = None) -> dict[str, PilotStatus]:
    """Statuses from the plain ``bjobs`` table (``JOBID USER STAT QUEUE …``), the fallback when no JSON.

    Only the id and ``STAT`` are read: the table truncates names (``*016E0078_``), leaves ``EXEC_HOST``
    blank for pending jobs and has no exit code (DONE means 0). Continuation lines (more hosts) are
    skipped. ``wanted=None`` keeps every row.
    """
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if line.split()[:3] == ["JOBID", "USER", "STAT"]), None)
    if header is None:
        raise SchedulerUnavailable(f"bjobs printed no job table: {text[:200]!r}")
    statuses: dict[str, PilotStatus] = {}
    for line in lines[header + 1 :]:
        if not line.strip() or line[0].isspace():
            continue
        fields = line.split()
        if len(fields) < 3 or not re.fullmatch(r"\d+(?:\[\d+\])?", fields[0]):
            continue
        job_id, stat = fields[0], fields[2]
        state = JOB_STATES.get(stat)
        if state is None or (wanted is not None and job_id not in wanted):
            continue
        exit_code = 0 if stat == "DONE" else None
        statuses[job_id] = PilotStatus(job_id, state, reason=stat, exit_code=exit_code)
    return statuses


def parse_bjobs(
    result: CommandResult, wanted: Sequence[str], now: datetime, tz: tzinfo | None = None
) -> dict[str, PilotStatus]:
    """Definite statuses in one ``bjobs`` run: JSON records, ``Job <x> is not found`` lines on
    stderr, or (fallback) the plain table. Anything else raises :class:`SchedulerUnavailable`.

    A successful exit is trusted even if LSF complained on stderr first ("… still trying"): it prints
    those while it waits for a busy ``mbatchd`` and then answers.
    """
    stdout = result.stdout.strip()
    is_json = stdout.startswith("{")
    if not result.ok and is_unreachable(result.stderr + ("" if is_json else "\n" + stdout)):
        raise SchedulerUnavailable(f"LSF unreachable: {result.describe()}")
    statuses: dict[str, PilotStatus] = {}
    if is_json:
        statuses = parse_bjobs_json(stdout, wanted, now, tz)
    elif stdout:
        statuses = parse_bjobs_table(stdout, wanted)
    missing = [job_id for job_id in not_found_ids(result.stderr) if job_id in wanted]
    if not stdout and not missing:
        raise SchedulerUnavailable(f"bjobs printed nothing: {result.describe()}")
    if not result.ok and not (statuses or missing):
        raise SchedulerUnavailable(f"bjobs failed: {result.describe()}")
    for job_id in missing:
        statuses.setdefault(job_id, PilotStatus(job_id, PilotState.FINISHED, reason=UNKNOWN_REASON))
    return statuses


def hosts_from_environ(environ: Mapping[str, str]) -> list[str] | None:
    """Allocation hosts from ``LSB_DJOB_HOSTFILE`` (a file, one line per slot), else ``LSB_MCPU_HOSTS``
    (``"batch3 1 a01n06 42"``), else ``LSB_HOSTS`` (one word per slot); None if none is set."""
    if path := environ.get("LSB_DJOB_HOSTFILE"):
        try:
            return compute_hosts(Path(path).read_text().split())
        except OSError:
            log.warning(
                "hostfile_unreadable", scheduler="lsf", path=path, fallback="LSB_MCPU_HOSTS/LSB_HOSTS"
            )
    if mcpu := environ.get("LSB_MCPU_HOSTS", "").split():
        return compute_hosts(mcpu[0::2])
    if hosts := environ.get("LSB_HOSTS", "").split():
        return compute_hosts(hosts)
    return None


def bsub_argv(request: PilotRequest) -> list[str]:
    """The exact ``bsub`` command for ``request`` (see the module docstring for the mapping)."""
    if request.wall_time_min < 1:
        raise ValueError(f"wall time must be at least one minute, got {request.wall_time_min}")
    argv = [
        "bsub",
        "-J",
        request.job_name,
        "-nnodes",
        str(request.num_nodes),
        "-W",
        str(request.wall_time_min),
        "-o",
        f"{request.workdir}/lsf-%J.out",
    ]
    if request.project:
        argv += ["-P", request.project]
    if request.queue:
        argv += ["-q", request.queue]
    for key, value in request.optional_params.items():
        flag = key if key.startswith("-") else f"-{key}"
        argv += [flag, value] if value else [flag]
    argv.append(str(request.script))
    return argv


# ---------------------------------------------------------------------------------------------------
# the adapter


class LsfScheduler(Scheduler):
    """IBM Spectrum LSF through ``bsub``, ``bjobs`` and ``bkill``."""

    name: ClassVar[str] = "lsf"

    def __init__(
        self,
        runner: CommandRunner | None = None,
        *,
        timezone: tzinfo | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(runner)
        self.timezone = timezone
        """Time zone ``bjobs`` prints times in (None: this machine's)."""
        self.clock = clock or (lambda: datetime.now(UTC))
        """Now (aware), to place ``bjobs``' year-less times."""

    def submit(self, request: PilotRequest) -> str:
        """``bsub`` the pilot; its LSF job id (``"3386667"``)."""
        env = {**os.environ, **request.environment} if request.environment else None
        result = self._run(bsub_argv(request), env=env)
        output = result.stdout + "\n" + result.stderr
        job_id = parse_bsub_output(result.stdout)
        if job_id is not None:  # submitted, whatever else it said: never submit the pilot twice
            return job_id
        if is_unreachable(output):
            raise SchedulerUnavailable(f"LSF unreachable: {result.describe()}")
        if not result.ok and (reason := rejection_reason(output)) is not None:
            raise SubmitRejected(f"bsub rejected the pilot: {reason}")
        raise SchedulerUnavailable(f"bsub failed: {result.describe()}")

    def statuses(self, scheduler_ids: Sequence[str]) -> dict[str, PilotStatus]:
        """One ``bjobs -o FIELDS -json ID...``; definite statuses by id."""
        if not scheduler_ids:
            return {}
        result = self._run(["bjobs", "-o", BJOBS_FIELDS, "-json", *scheduler_ids])
        return parse_bjobs(result, list(scheduler_ids), self.clock(), self.timezone)

    def cancel(self, scheduler_id: str) -> None:
        """``bkill ID``; a job already finished, unknown, or already being signalled is fine."""
        result = self._run(["bkill", scheduler_id])
        if result.ok:
            return
        output = result.stdout + "\n" + result.stderr
        if is_unreachable(output):
            raise SchedulerUnavailable(f"LSF unreachable: {result.describe()}")
        if _GONE.search(output):
            return
        raise SchedulerUnavailable(f"bkill failed: {result.describe()}")

    def find_by_name(self, job_name: str) -> list[str]:
        """Ids of unfinished jobs named ``job_name`` (``bjobs -J NAME -o … -json``); [] on any failure."""
        try:
            result = self._run(["bjobs", "-J", job_name, "-o", "jobid stat job_name", "-json"])
            if not result.ok or not result.stdout.strip().startswith("{"):
                return []
            return [
                str(record["JOBID"])
                for record in load_bjobs_json(result.stdout)
                if record.get("JOBID")
                and not record.get("ERROR")
                and record.get("JOB_NAME", record.get("NAME")) == job_name
                and JOB_STATES.get(str(record.get("STAT"))) is not PilotState.FINISHED
            ]
        except Exception:
            log.exception("lookup_by_name_failed", scheduler="lsf", job_name=job_name)
            return []

    @staticmethod
    def allocation_nodes(environ: Mapping[str, str]) -> list[str] | None:
        """Compute hosts of this LSF allocation (launch nodes like ``batch3`` skipped); None outside one."""
        return hosts_from_environ(environ)
