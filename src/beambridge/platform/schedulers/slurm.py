"""Slurm adapter: ``sbatch``, ``squeue``, ``scontrol``, ``scancel`` and (when it works) ``sacct``.

Statuses come from one ``squeue -t all --jobs=…`` call; ids it does not list, and finished ones (for their
exit code), are asked of ``scontrol -o show job ID`` one by one. Only when the controller says it has never
heard of a job ("Invalid job id specified") is ``sacct --json`` consulted; without accounting storage
(no slurmdbd) it answers "accounting storage is disabled", and the job is then reported as finished and
unknown to the scheduler. Every parser here is a pure function of the command's text, so it can be tested
on recorded outputs.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

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

"""``PilotStatus.reason`` of a pilot the scheduler said, in words, it does not know."""

SQUEUE_FORMAT = "%i|%T|%N|%S|%e|%r"
"""``squeue -o`` format: id, state, node list, start time, end time and, last (free text), the reason."""

#: Slurm's job state words (``squeue``, ``scontrol``, ``sacct``) → pilot state. A suspended or stopped job
#: still holds its place but runs nothing: queued. Any other word is not a definite answer.
JOB_STATES: Mapping[str, PilotState] = {
    "PENDING": PilotState.QUEUED,
    "CONFIGURING": PilotState.QUEUED,
    "REQUEUED": PilotState.QUEUED,
    "REQUEUE_HOLD": PilotState.QUEUED,
    "REQUEUE_FED": PilotState.QUEUED,
    "RESV_DEL_HOLD": PilotState.QUEUED,
    "SPECIAL_EXIT": PilotState.QUEUED,
    "SUSPENDED": PilotState.QUEUED,
    "STOPPED": PilotState.QUEUED,
    "RUNNING": PilotState.RUNNING,
    "COMPLETING": PilotState.RUNNING,
    "SIGNALING": PilotState.RUNNING,
    "STAGE_OUT": PilotState.RUNNING,
    "RESIZING": PilotState.RUNNING,
    "COMPLETED": PilotState.FINISHED,
    "FAILED": PilotState.FINISHED,
    "CANCELLED": PilotState.FINISHED,
    "TIMEOUT": PilotState.FINISHED,
    "NODE_FAIL": PilotState.FINISHED,
    "OUT_OF_MEMORY": PilotState.FINISHED,
    "PREEMPTED": PilotState.FINISHED,
    "BOOT_FAIL": PilotState.FINISHED,
    "DEADLINE": PilotState.FINISHED,
    "REVOKED": PilotState.FINISHED,
}

INVALID_JOB_ID = "Invalid job id specified"
ACCOUNTING_DISABLED = "accounting storage is disabled"
ALREADY_DONE = ("already completing or completed", "Invalid job id")
SBATCH_TRANSIENT = (
    "unable to contact slurm controller",
    "socket timed out",
    "communication connection failure",
    "zero bytes were transmitted",
    "temporarily unable",
    "resource temporarily unavailable",
    "connection refused",
    "connection reset",
    "could not establish a configuration source",
    "fetch_config",
    "controller not responding",
    "slurmctld not responding",
    "unable to establish",
    "protocol authentication error",
    "munge",
)
"""Words in a failed ``sbatch``'s output that mean "no answer" rather than "refused"."""

_JOB_ID = re.compile(r"^\d+(?:_\d+)?(?:\+\d+)?$")
_SBATCH_ID = re.compile(r"^(\d+)(?:;\S+)?$")
_OPTION_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_SCONTROL_KEY = re.compile(r"^([A-Za-z][A-Za-z0-9_:/]*)=(.*)$")
_NO_TIME = frozenset({"", "N/A", "NONE", "UNKNOWN", "(NULL)", "0"})
_NO_NODES = frozenset({"", "(null)", "None assigned", "(None)"})
_SQUEUE_CHUNK = 200
_MAX_HOSTS = 1_000_000


class SlurmOutputError(ValueError):
    """A Slurm command printed something these parsers do not understand."""


# ---------------------------------------------------------------------------------------------------
# pure parsers
# ---------------------------------------------------------------------------------------------------


def pilot_state(slurm_state: str) -> PilotState:
    """Our state for Slurm's job state word (``CANCELLED by 0`` counts as ``CANCELLED``)."""
    state = JOB_STATES.get(state_word(slurm_state))
    if state is None:
        raise SlurmOutputError(f"unknown Slurm job state {slurm_state!r}")
    return state


def state_word(slurm_state: str) -> str:
    """Slurm's state without decorations: ``CANCELLED by 0`` → ``CANCELLED``."""
    return slurm_state.strip().split(" ", 1)[0].rstrip("+").upper()


def parse_time(text: str) -> datetime | None:
    """A Slurm timestamp (``2023-06-20T07:07:34``, the controller's local time) as an aware datetime;
    None for ``N/A``, ``Unknown``, ``None`` and the like."""
    text = text.strip()
    if text.upper() in _NO_TIME:
        return None
    try:
        return datetime.fromisoformat(text).astimezone()
    except ValueError as exc:
        raise SlurmOutputError(f"not a Slurm time: {text!r}") from exc


def parse_epoch(value: Any) -> datetime | None:
    """A ``sacct --json`` time (seconds since the epoch, 0 = unset; or ``{"set":…, "number":…}``)."""
    number = _json_number(value)
    if not number:
        return None
    return datetime.fromtimestamp(number, tz=UTC)


def parse_exit_code(text: str) -> int | None:
    """Slurm's ``ExitCode=status:signal`` as one shell-style code: the status, or ``128 + signal`` when
    a signal ended the job (``0:15`` → 143). None when absent."""
    text = text.strip()
    if not text or text.upper() in ("N/A", "(NULL)"):
        return None
    status, sep, signal = text.partition(":")
    if not status.isdigit() or (sep and not signal.isdigit()):
        raise SlurmOutputError(f"not a Slurm exit code: {text!r}")
    if sep and int(signal):
        return 128 + int(signal)
    return int(status)


def parse_sbatch_output(stdout: str) -> str:
    """The job id ``sbatch --parsable`` printed (``123`` or ``123;cluster``)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if len(lines) != 1:
        raise SlurmOutputError(f"sbatch --parsable printed {len(lines)} lines, not one id: {stdout!r}")
    match = _SBATCH_ID.match(lines[0])
    if match is None:
        raise SlurmOutputError(f"sbatch --parsable printed no job id: {stdout!r}")
    return match.group(1)


def sbatch_refusal(result: CommandResult) -> str | None:
    """For a failed ``sbatch``: the refusal message when Slurm definitely refused the job, None when the
    failure means "no answer" (controller unreachable, timeouts, nothing recognisable printed)."""
    text = f"{result.stderr}\n{result.stdout}"
    lowered = text.lower()
    if any(word in lowered for word in SBATCH_TRANSIENT):
        return None
    errors = [line.strip() for line in text.splitlines() if "error:" in line.lower()]
    if not errors:
        return None
    return "; ".join(errors)


def parse_squeue(stdout: str) -> dict[str, PilotStatus]:
    """Statuses from ``squeue -h -o SQUEUE_FORMAT`` output (exit codes are not in it: None)."""
    statuses: dict[str, PilotStatus] = {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", 5)
        if len(fields) != 6 or not _JOB_ID.match(fields[0].strip()):
            raise SlurmOutputError(f"unexpected squeue line: {line!r}")
        job_id, state, nodes, start, end, _reason = (field.strip() for field in fields)
        statuses[job_id] = make_status(job_id, state, nodes=nodes, start=start, end=end)
    return statuses


def make_status(
    job_id: str,
    slurm_state: str,
    *,
    nodes: str = "",
    start: str = "",
    end: str = "",
    exit_code: str = "",
) -> PilotStatus:
    """A :class:`PilotStatus` from Slurm's words. Start time only once running, end time and exit code
    only once finished (before that Slurm prints estimates and placeholders there)."""
    state = pilot_state(slurm_state)
    return PilotStatus(
        scheduler_id=job_id,
        state=state,
        reason=state_word(slurm_state),
        exit_code=parse_exit_code(exit_code) if state is PilotState.FINISHED else None,
        nodes=tuple(expand_hostlist(nodes)) if nodes not in _NO_NODES else (),
        start_time=parse_time(start) if state is not PilotState.QUEUED else None,
        end_time=parse_time(end) if state is PilotState.FINISHED else None,
    )


def parse_scontrol_jobs(stdout: str) -> list[dict[str, str]]:
    """The jobs in ``scontrol show job`` output (one-line ``-o`` form or the default multi-line form) as
    ``key → value`` dicts. Values that contain spaces (``Command=…``) keep them."""
    records: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    last_key = ""
    for token in stdout.split():
        match = _SCONTROL_KEY.match(token)
        if match is None:
            if current is None:
                raise SlurmOutputError(f"scontrol output does not start with JobId=: {stdout[:200]!r}")
            current[last_key] += " " + token
            continue
        key, value = match.groups()
        if key == "JobId":
            current = {}
            records.append(current)
        elif current is None:
            raise SlurmOutputError(f"scontrol output does not start with JobId=: {stdout[:200]!r}")
        current[key] = value
        last_key = key
    return records


def status_from_scontrol(record: Mapping[str, str]) -> PilotStatus:
    """A :class:`PilotStatus` from one ``scontrol show job`` record."""
    try:
        job_id, slurm_state = record["JobId"], record["JobState"]
    except KeyError as exc:
        raise SlurmOutputError(f"scontrol record without {exc.args[0]}") from exc
    return make_status(
        job_id,
        slurm_state,
        nodes=record.get("NodeList", ""),
        start=record.get("StartTime", ""),
        end=record.get("EndTime", ""),
        exit_code=record.get("ExitCode", ""),
    )


def parse_scontrol_job(stdout: str, job_id: str) -> PilotStatus:
    """The status of ``job_id`` from ``scontrol -o show job JOB_ID`` output."""
    records = parse_scontrol_jobs(stdout)
    for record in records:
        if record.get("JobId") == job_id:
            return status_from_scontrol(record)
    raise SlurmOutputError(f"scontrol show job {job_id} did not describe job {job_id}: {stdout[:200]!r}")


def parse_sacct_json(text: str) -> dict[str, PilotStatus]:
    """Statuses from ``sacct --json`` output (Slurm 22.05 and the newer nested number/list forms). A job
    listed more than once (requeued) is taken from its latest record."""
    try:
        document = json.loads(text)
        jobs = document["jobs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SlurmOutputError(f"not sacct --json output: {text[:200]!r}") from exc
    latest: dict[str, tuple[float, int, Mapping[str, Any]]] = {}
    for index, job in enumerate(jobs):
        try:
            job_id = str(job["job_id"])
            submitted = _json_number(job.get("time", {}).get("submission"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise SlurmOutputError(f"sacct --json job without job_id: {str(job)[:200]}") from exc
        key = (submitted, index)
        if job_id not in latest or key >= latest[job_id][:2]:
            latest[job_id] = (submitted, index, job)
    return {job_id: _status_from_sacct_job(job_id, job) for job_id, (_, _, job) in latest.items()}


def _status_from_sacct_job(job_id: str, job: Mapping[str, Any]) -> PilotStatus:
    try:
        current = job["state"]["current"]
        if isinstance(current, list):  # 23.11+: a list of flags, the base state first
            current = current[0] if current else ""
        state = pilot_state(str(current))
        times = job.get("time", {})
        nodes = str(job.get("nodes") or "")
        return PilotStatus(
            scheduler_id=job_id,
            state=state,
            reason=state_word(str(current)),
            exit_code=_sacct_exit_code(job.get("exit_code")) if state is PilotState.FINISHED else None,
            nodes=tuple(expand_hostlist(nodes)) if nodes not in _NO_NODES else (),
            start_time=parse_epoch(times.get("start")) if state is not PilotState.QUEUED else None,
            end_time=parse_epoch(times.get("end")) if state is PilotState.FINISHED else None,
        )
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise SlurmOutputError(f"unexpected sacct --json job {job_id}: {exc!r}") from exc


def _sacct_exit_code(exit_code: Any) -> int | None:
    """Exit code of a ``sacct --json`` job: return code, or 128 + signal when signalled."""
    if not isinstance(exit_code, Mapping):
        return None
    signal = exit_code.get("signal")
    if isinstance(signal, Mapping):
        number = _json_number(signal.get("signal_id", signal.get("id")))
        if number:
            return 128 + int(number)
    if "return_code" not in exit_code:
        return None
    return int(_json_number(exit_code["return_code"]))


def _json_number(value: Any) -> float:
    """A number from sacct JSON: plain, or ``{"set": true, "number": n}`` (unset → 0)."""
    if isinstance(value, Mapping):
        return float(value.get("number", 0)) if value.get("set", True) else 0.0
    if value is None:
        return 0.0
    return float(value)


def parse_id_lines(stdout: str) -> list[str]:
    """Job ids printed one per line (``squeue -h -o %i``)."""
    ids = [line.strip() for line in stdout.splitlines() if line.strip()]
    for job_id in ids:
        if not _JOB_ID.match(job_id):
            raise SlurmOutputError(f"not a Slurm job id: {job_id!r}")
    return ids


# ---------------------------------------------------------------------------------------------------
# host lists
# ---------------------------------------------------------------------------------------------------


def expand_hostlist(hostlist: str) -> list[str]:
    """Expand a Slurm host list: ``n[1-3],x7,nid[001-003,010]`` → n1 n2 n3 x7 nid001 … nid010. Zero
    padding follows the range's first number (``[08-11]`` → 08 09 10 11); several bracket groups in one
    name multiply (``r[1-2]n[1-2]``)."""
    hosts: list[str] = []
    for expression in _split_top_level(hostlist.strip()):
        hosts.extend(_expand_expression(expression))
        if len(hosts) > _MAX_HOSTS:
            raise SlurmOutputError(f"host list expands to more than {_MAX_HOSTS} hosts: {hostlist[:100]!r}")
    return hosts


def _split_top_level(hostlist: str) -> Iterator[str]:
    """Split at commas outside brackets."""
    depth = 0
    start = 0
    for index, char in enumerate(hostlist):
        if char == "[":
            depth += 1
            if depth > 1:
                raise SlurmOutputError(f"nested brackets in host list {hostlist!r}")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise SlurmOutputError(f"unbalanced ']' in host list {hostlist!r}")
        elif char == "," and depth == 0:
            if index > start:
                yield hostlist[start:index]
            start = index + 1
    if depth != 0:
        raise SlurmOutputError(f"unbalanced '[' in host list {hostlist!r}")
    if start < len(hostlist):
        yield hostlist[start:]


def _expand_expression(expression: str) -> list[str]:
    """One host expression (no top-level commas): literal parts and bracket groups, multiplied out."""
    parts: list[list[str]] = []
    for literal, group in re.findall(r"([^\[\]]*)(?:\[([^\]]*)\])?", expression):
        if literal:
            parts.append([literal])
        if group:
            parts.append(_expand_group(group, expression))
    return ["".join(combination) for combination in itertools.product(*parts)]


def _expand_group(group: str, expression: str) -> list[str]:
    """The inside of one bracket group: ``001-003,010``."""
    items: list[str] = []
    for item in group.split(","):
        low, sep, high = item.strip().partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise SlurmOutputError(f"bad range {item!r} in host list {expression!r}")
        if not sep:
            items.append(low)
            continue
        if int(high) < int(low):
            raise SlurmOutputError(f"descending range {item!r} in host list {expression!r}")
        if int(high) - int(low) > _MAX_HOSTS:
            raise SlurmOutputError(f"range {item!r} is too large in host list {expression!r}")
        width = len(low)
        items.extend(f"{number:0{width}d}" for number in range(int(low), int(high) + 1))
    return items


# ---------------------------------------------------------------------------------------------------
# the adapter
# ---------------------------------------------------------------------------------------------------


class SlurmScheduler(Scheduler):
    """Slurm through its command-line tools. ``sbatch`` is never retried here: a submission whose
    outcome is unknown raises :class:`SchedulerUnavailable`, and the caller looks for the pilot with
    :meth:`find_by_name` before submitting again."""

    name = "slurm"

    def __init__(self, runner: CommandRunner | None = None) -> None:
        super().__init__(runner)
        self._accounting_disabled = False
        """Set once ``sacct`` said accounting storage is disabled: it is not asked again."""

    # -- submit ---------------------------------------------------------------------------------------

    def submit(self, request: PilotRequest) -> str:
        """Submit the pilot with ``sbatch --parsable``; its job id."""
        argv = self.sbatch_argv(request)
        try:
            request.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SubmitRejected(f"cannot create the workdir of pilot {request.job_name!r}: {exc}") from exc
        env = {**os.environ, **request.environment}
        result = self._run(argv, env=env)
        if not result.ok:
            refusal = sbatch_refusal(result)
            if refusal is None:
                raise SchedulerUnavailable(f"sbatch gave no definite answer: {result.describe()}")
            raise SubmitRejected(f"Slurm refused pilot {request.job_name!r}: {refusal}")
        try:
            return parse_sbatch_output(result.stdout)
        except SlurmOutputError as exc:
            raise SchedulerUnavailable(f"{exc} ({result.describe()})") from exc

    @staticmethod
    def sbatch_argv(request: PilotRequest) -> list[str]:
        """The ``sbatch`` command line for ``request`` (:class:`SubmitRejected` for impossible ones)."""
        if request.num_nodes < 1:
            raise SubmitRejected(f"pilot {request.job_name!r} asks for {request.num_nodes} nodes")
        if request.wall_time_min < 1:
            raise SubmitRejected(f"pilot {request.job_name!r} asks for {request.wall_time_min} minutes")
        workdir = str(request.workdir)
        argv = [
            "sbatch",
            "--parsable",
            "-J",
            request.job_name,
            "-N",
            str(request.num_nodes),
            "--exclusive",  # a pilot owns its nodes: its launcher places jobs on every core
            "-t",
            str(request.wall_time_min),
            "-o",
            os.path.join(workdir, "slurm-%j.out"),
            "--chdir",
            workdir,
            "--export=ALL",
        ]
        if request.project:
            argv += ["-A", request.project]
        if request.queue:
            argv += ["-p", request.queue]
        for key, value in request.optional_params.items():
            argv.append(_sbatch_option(key, value))
        argv.append(str(request.script))
        return argv

    # -- statuses -------------------------------------------------------------------------------------

    def statuses(self, scheduler_ids: Sequence[str]) -> dict[str, PilotStatus]:
        """Definite statuses: ``squeue`` for all, ``scontrol`` for finished and unlisted ids, ``sacct``
        (if accounting is on) for ids the controller has forgotten."""
        ids = list(dict.fromkeys(str(job_id).strip() for job_id in scheduler_ids))
        for bad in [job_id for job_id in ids if not _JOB_ID.match(job_id)]:
            log.warning("not_a_job_id", scheduler="slurm", scheduler_id=bad)
        ids = [job_id for job_id in ids if _JOB_ID.match(job_id)]
        listed: dict[str, PilotStatus] = {}
        for start in range(0, len(ids), _SQUEUE_CHUNK):
            listed.update(self._squeue(ids[start : start + _SQUEUE_CHUNK]))
        answer: dict[str, PilotStatus] = {}
        forgotten: list[str] = []
        for job_id in ids:
            known = listed.get(job_id)
            if known is not None and known.state is not PilotState.FINISHED:
                answer[job_id] = known
                continue
            detailed = self._scontrol(job_id)
            if detailed is not None:
                answer[job_id] = detailed
            elif known is not None:  # squeue listed it as finished a moment ago: keep that
                answer[job_id] = known
            else:
                forgotten.append(job_id)
        if forgotten:
            answer.update(self._forgotten(forgotten))
        return answer

    def _squeue(self, ids: Sequence[str]) -> dict[str, PilotStatus]:
        """The listed jobs among ``ids``; an id not listed is not known to be anything."""
        result = self._run(["squeue", "-h", "-t", "all", f"--jobs={','.join(ids)}", "-o", SQUEUE_FORMAT])
        if not result.ok:
            if INVALID_JOB_ID in result.stderr + result.stdout:
                return {}  # some versions fail the whole call for one unknown id: ask per id
            raise SchedulerUnavailable(f"squeue failed: {result.describe()}")
        try:
            return {job_id: status for job_id, status in parse_squeue(result.stdout).items() if job_id in ids}
        except SlurmOutputError as exc:
            raise SchedulerUnavailable(f"{exc} ({result.describe()})") from exc

    def _scontrol(self, job_id: str) -> PilotStatus | None:
        """The job as ``scontrol`` describes it; None when the controller does not know it."""
        result = self._run(["scontrol", "-o", "show", "job", job_id])
        if not result.ok:
            if INVALID_JOB_ID in result.stderr + result.stdout:
                return None
            raise SchedulerUnavailable(f"scontrol failed: {result.describe()}")
        try:
            return parse_scontrol_job(result.stdout, job_id)
        except SlurmOutputError as exc:
            raise SchedulerUnavailable(f"{exc} ({result.describe()})") from exc

    def _forgotten(self, ids: Sequence[str]) -> dict[str, PilotStatus]:
        """Ids the controller said it does not know: sacct's record when accounting has one, otherwise
        finished and unknown to the scheduler."""
        answer = {job_id: PilotStatus(job_id, PilotState.FINISHED, reason=UNKNOWN_REASON) for job_id in ids}
        if self._accounting_disabled:
            return answer
        try:
            result = self._run(["sacct", "--json", "-j", ",".join(ids)])
        except SchedulerUnavailable as exc:
            log.warning(
                "sacct_unavailable",
                scheduler="slurm",
                effect="the controller's invalid job id stands",
                error=exc,
            )
            return answer
        if not result.ok:
            if ACCOUNTING_DISABLED in (result.stderr + result.stdout).lower():
                self._accounting_disabled = True
            else:
                log.warning(
                    "sacct_failed",
                    scheduler="slurm",
                    effect="the controller's invalid job id stands",
                    error=result.describe(),
                )
            return answer
        try:
            recorded = parse_sacct_json(result.stdout)
        except SlurmOutputError as exc:
            log.warning(
                "sacct_not_understood", scheduler="slurm", effect="the controller's answer stands", error=exc
            )
            return answer
        answer.update({job_id: status for job_id, status in recorded.items() if job_id in answer})
        return answer

    # -- cancel, find ---------------------------------------------------------------------------------

    def cancel(self, scheduler_id: str) -> None:
        """``scancel ID``; a job that already ended or is unknown is fine."""
        result = self._run(["scancel", str(scheduler_id)])
        if result.ok:
            return
        text = result.stderr + result.stdout
        if any(phrase in text for phrase in ALREADY_DONE):
            return
        raise SchedulerUnavailable(f"scancel failed: {result.describe()}")

    def find_by_name(self, job_name: str) -> list[str]:
        """Ids of this user's pending or running jobs called ``job_name``."""
        result = self._run(["squeue", "-h", "-u", str(os.getuid()), "-n", job_name, "-o", "%i"])
        if not result.ok:
            raise SchedulerUnavailable(f"squeue failed: {result.describe()}")
        try:
            return parse_id_lines(result.stdout)
        except SlurmOutputError as exc:
            raise SchedulerUnavailable(f"{exc} ({result.describe()})") from exc

    # -- inside an allocation -------------------------------------------------------------------------

    @staticmethod
    def allocation_nodes(environ: Mapping[str, str]) -> list[str] | None:
        """The allocation's node names from ``SLURM_JOB_NODELIST`` (expanded here: no ``scontrol``
        needed on compute nodes); None outside a Slurm allocation."""
        hostlist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
        if not hostlist:
            return None
        return expand_hostlist(hostlist)

    # -- helpers --------------------------------------------------------------------------------------


def _sbatch_option(key: str, value: str) -> str:
    """``{"constraint": "gpu"}`` → ``--constraint=gpu``; an empty value gives a bare flag."""
    name = key.lstrip("-")
    if not _OPTION_KEY.match(name):
        raise SubmitRejected(f"not a valid sbatch option name: {key!r}")
    return f"--{name}={value}" if value != "" else f"--{name}"
