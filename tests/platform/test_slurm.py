"""The Slurm adapter: parsers on recorded outputs, error handling with scripted commands, and a real
cluster (``slurm_cluster`` fixture: several fake nodes on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

import pytest

from beambridge.platform.commands import CommandResult, CommandRunner, CommandTimeout
from beambridge.platform.schedulers import get_scheduler
from beambridge.platform.schedulers.base import (
    PilotRequest,
    PilotState,
    PilotStatus,
    SchedulerUnavailable,
    SubmitRejected,
)
from beambridge.platform.schedulers.slurm import (
    UNKNOWN_REASON,
    SlurmOutputError,
    SlurmScheduler,
    expand_hostlist,
    parse_exit_code,
    parse_sacct_json,
    parse_sbatch_output,
    parse_scontrol_job,
    parse_squeue,
    pilot_state,
)
from tests.servers import unavailable
from tests.slurm_cluster import SlurmCluster

pytestmark = pytest.mark.xdist_group("slurm")

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


# ---------------------------------------------------------------------------------------------------
# scripted commands
# ---------------------------------------------------------------------------------------------------

Answer: TypeAlias = CommandResult | Exception | Callable[[tuple[str, ...]], CommandResult]


class ScriptedRunner(CommandRunner):
    """Answers each command (by program name) with a recorded result, raises, or computes one."""

    def __init__(self, answers: dict[str, Answer]) -> None:
        super().__init__()
        self.answers = answers
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], **_: Any) -> CommandResult:
        argv = tuple(str(arg) for arg in argv)
        self.calls.append(argv)
        answer = self.answers[argv[0]]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(argv)
        return CommandResult(argv, answer.returncode, answer.stdout, answer.stderr)

    def programs(self) -> list[str]:
        return [argv[0] for argv in self.calls]


def result(returncode: int = 0, stdout: str = "", stderr: str = "") -> CommandResult:
    return CommandResult(("recorded",), returncode, stdout, stderr)


INVALID_ID = result(1, stderr=recorded("scontrol-show-job-22.05-unknown-id.stderr"))
NO_ACCOUNTING = result(1, stderr=recorded("sacct-22.05-no-accounting.stderr"))


def scontrol_from_files(files: dict[str, str]) -> Callable[[tuple[str, ...]], CommandResult]:
    """``scontrol -o show job ID`` answered from recorded files, 'Invalid job id' for the others."""

    def answer(argv: tuple[str, ...]) -> CommandResult:
        job_id = argv[-1]
        if job_id in files:
            return result(0, recorded(files[job_id]))
        return INVALID_ID

    return answer


# ---------------------------------------------------------------------------------------------------
# parsers on recorded outputs
# ---------------------------------------------------------------------------------------------------


def test_squeue_recorded_all_states() -> None:
    statuses = parse_squeue(recorded("squeue-22.05-all-states.txt"))
    assert {job_id: (s.state, s.reason) for job_id, s in statuses.items()} == {
        "10": (PilotState.QUEUED, "PENDING"),
        "11": (PilotState.RUNNING, "RUNNING"),
        "1": (PilotState.FINISHED, "COMPLETED"),
        "2": (PilotState.FINISHED, "FAILED"),
        "3": (PilotState.FINISHED, "CANCELLED"),
        "9": (PilotState.FINISHED, "TIMEOUT"),
    }
    pending, running, cancelled = statuses["10"], statuses["11"], statuses["3"]
    assert pending.nodes == () and pending.start_time is None and pending.end_time is None
    assert running.nodes == ("n1", "n2", "n3")
    assert running.start_time == datetime.fromisoformat("2026-11-29T23:47:48").astimezone()
    assert running.end_time is None  # squeue prints the expected end: not a fact yet
    assert cancelled.nodes == ("n1", "n2")
    assert cancelled.end_time == datetime.fromisoformat("2026-11-29T23:45:29").astimezone()
    assert all(status.exit_code is None for status in statuses.values())  # squeue has none


@pytest.mark.parametrize(
    ("name", "job_id", "state", "reason", "exit_code", "nodes"),
    [
        ("pending", "10", PilotState.QUEUED, "PENDING", None, ()),
        ("running-3-nodes", "11", PilotState.RUNNING, "RUNNING", None, ("n1", "n2", "n3")),
        ("completed", "1", PilotState.FINISHED, "COMPLETED", 0, ("n1",)),
        ("failed", "2", PilotState.FINISHED, "FAILED", 3, ("n1",)),
        ("cancelled", "3", PilotState.FINISHED, "CANCELLED", 128 + 15, ("n1", "n2")),
        ("timeout", "9", PilotState.FINISHED, "TIMEOUT", 128 + 15, ("n1",)),
        ("running", "267858", PilotState.RUNNING, "RUNNING", None, ("compute038",)),
    ],
)
def test_scontrol_recorded(
    name: str, job_id: str, state: PilotState, reason: str, exit_code: int | None, nodes: tuple[str, ...]
) -> None:
    status = parse_scontrol_job(recorded(f"scontrol-show-job-22.05-{name}.txt"), job_id)
    assert (status.state, status.reason, status.exit_code, status.nodes) == (state, reason, exit_code, nodes)
    assert (status.start_time is not None) == (state is not PilotState.QUEUED)
    assert (status.end_time is not None) == (state is PilotState.FINISHED)


def test_scontrol_times_are_local_and_aware() -> None:
    status = parse_scontrol_job(recorded("scontrol-show-job-22.05-timeout.txt"), "9")
    assert status.start_time == datetime.fromisoformat("2026-11-29T23:45:41").astimezone()
    assert status.end_time == datetime.fromisoformat("2026-11-29T23:47:07").astimezone()
    assert status.end_time.tzinfo is not None


def test_scontrol_other_job_is_garbled() -> None:
    with pytest.raises(SlurmOutputError):
        parse_scontrol_job(recorded("scontrol-show-job-22.05-failed.txt"), "3")


@pytest.mark.parametrize(
    ("name", "job_id", "reason", "exit_code", "nodes"),
    [
        ("completed", "267854", "COMPLETED", 0, ("compute013",)),
        ("requeued", "268210", "TIMEOUT", 0, ("compute015",)),  # latest of its two records
        ("not-started", "275097", "CANCELLED", 0, ()),
    ],
)
def test_sacct_json_recorded(
    name: str, job_id: str, reason: str, exit_code: int, nodes: tuple[str, ...]
) -> None:
    statuses = parse_sacct_json(recorded(f"sacct-json-22.05-{name}.json"))
    assert list(statuses) == [job_id]
    status = statuses[job_id]
    assert (status.state, status.reason, status.exit_code, status.nodes) == (
        PilotState.FINISHED,
        reason,
        exit_code,
        nodes,
    )
    assert status.end_time is not None


def test_sacct_json_newer_nested_numbers() -> None:
    text = (
        '{"jobs": [{"job_id": 5, "state": {"current": ["FAILED"]}, "nodes": "n[1-2]",'
        ' "exit_code": {"status": ["ERROR"], "return_code": {"set": true, "infinite": false, "number": 2},'
        ' "signal": {"id": {"set": false, "number": 0}, "name": ""}},'
        ' "time": {"submission": 10, "start": {"set": true, "number": 1700000000}, "end": 1700000060}}]}'
    )
    status = parse_sacct_json(text)["5"]
    assert (status.reason, status.exit_code, status.nodes) == ("FAILED", 2, ("n1", "n2"))
    assert status.start_time is not None and status.end_time is not None


@pytest.mark.parametrize(
    "text", ["", "not json", '{"meta": {}}', '{"jobs": [{"job_id": 1, "state": {"current": "WEIRD"}}]}']
)
def test_sacct_json_garbled(text: str) -> None:
    with pytest.raises(SlurmOutputError):
        parse_sacct_json(text)


@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        "12|RUNNING|n1|N/A",  # too few fields
        "abc|RUNNING|n1|N/A|N/A|None",  # not an id
        "12|BOGUS_STATE|n1|N/A|N/A|None",
        "12|RUNNING|n[1-|2026-01-01T00:00:00|N/A|None",  # broken host list
        "12|RUNNING|n1|yesterday|N/A|None",  # broken time
        "<html>502 Bad Gateway</html>",
    ],
)
def test_squeue_garbled(text: str) -> None:
    with pytest.raises(SlurmOutputError):
        parse_squeue(text)


def test_squeue_reason_may_contain_separators() -> None:
    line = "7|PENDING||N/A|N/A|ReqNodeNotAvail,_UnavailableNodes:n[1-2]|odd"
    assert parse_squeue(line)["7"].state is PilotState.QUEUED


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("PENDING", PilotState.QUEUED),
        ("CONFIGURING", PilotState.QUEUED),
        ("REQUEUED", PilotState.QUEUED),
        ("SUSPENDED", PilotState.QUEUED),
        ("RUNNING", PilotState.RUNNING),
        ("COMPLETING", PilotState.RUNNING),
        ("COMPLETED", PilotState.FINISHED),
        ("CANCELLED by 0", PilotState.FINISHED),
        ("NODE_FAIL", PilotState.FINISHED),
        ("OUT_OF_MEMORY", PilotState.FINISHED),
        ("PREEMPTED", PilotState.FINISHED),
        ("BOOT_FAIL", PilotState.FINISHED),
        ("DEADLINE", PilotState.FINISHED),
    ],
)
def test_state_mapping(word: str, state: PilotState) -> None:
    assert pilot_state(word) is state


@pytest.mark.parametrize(("text", "code"), [("0:0", 0), ("3:0", 3), ("0:15", 143), ("0:9", 137), ("", None)])
def test_exit_code(text: str, code: int | None) -> None:
    assert parse_exit_code(text) == code


@pytest.mark.parametrize(
    ("hostlist", "hosts"),
    [
        ("n1", ["n1"]),
        ("n[1-3]", ["n1", "n2", "n3"]),
        ("n[1-3],x7,nid[001-003,010]", ["n1", "n2", "n3", "x7", "nid001", "nid002", "nid003", "nid010"]),
        ("nid[08-11]", ["nid08", "nid09", "nid10", "nid11"]),
        ("nid[8-11]", ["nid8", "nid9", "nid10", "nid11"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
        ("x3000c0s[1-2]b0n0,login-1", ["x3000c0s1b0n0", "x3000c0s2b0n0", "login-1"]),
        ("gpu[1,3,5-6]-ib", ["gpu1-ib", "gpu3-ib", "gpu5-ib", "gpu6-ib"]),
    ],
)
def test_expand_hostlist(hostlist: str, hosts: list[str]) -> None:
    assert expand_hostlist(hostlist) == hosts


@pytest.mark.parametrize("hostlist", ["n[1-3", "n1-3]", "n[3-1]", "n[a-b]", "n[[1]]"])
def test_expand_hostlist_garbled(hostlist: str) -> None:
    with pytest.raises(SlurmOutputError):
        expand_hostlist(hostlist)


def test_allocation_nodes_from_environment() -> None:
    assert SlurmScheduler.allocation_nodes({}) is None
    assert SlurmScheduler.allocation_nodes({"PBS_NODEFILE": "/x"}) is None
    assert SlurmScheduler.allocation_nodes({"SLURM_JOB_NODELIST": "nid[001-002]"}) == ["nid001", "nid002"]
    assert SlurmScheduler.allocation_nodes({"SLURM_NODELIST": "n4"}) == ["n4"]


@pytest.mark.parametrize(("stdout", "job_id"), [("123\n", "123"), ("4567;beambridge\n", "4567")])
def test_sbatch_parsable(stdout: str, job_id: str) -> None:
    assert parse_sbatch_output(stdout) == job_id


@pytest.mark.parametrize("stdout", ["", "Submitted batch job 12\n", "12\n13\n", "12a", "<html>"])
def test_sbatch_parsable_garbled(stdout: str) -> None:
    with pytest.raises(SlurmOutputError):
        parse_sbatch_output(stdout)


# ---------------------------------------------------------------------------------------------------
# the adapter against scripted commands
# ---------------------------------------------------------------------------------------------------


def request_for(tmp_path: Path, **overrides: Any) -> PilotRequest:
    script = tmp_path / "pilot.sh"
    if not script.exists():
        script.write_text("#!/bin/bash\ntrue\n")
    request = PilotRequest(
        script=script, job_name="pilot-1", num_nodes=2, wall_time_min=30, workdir=tmp_path / "work"
    )
    return dataclasses.replace(request, **overrides)


def test_registry_gives_slurm() -> None:
    assert isinstance(get_scheduler("slurm"), SlurmScheduler)
    assert SlurmScheduler.name == "slurm"


def test_sbatch_argv(tmp_path: Path) -> None:
    request = request_for(
        tmp_path, project="XPCS", queue="debug", optional_params={"constraint": "gpu", "exclusive": ""}
    )
    argv = SlurmScheduler.sbatch_argv(request)
    work = str(tmp_path / "work")
    assert argv == [
        "sbatch",
        "--parsable",
        "-J",
        "pilot-1",
        "-N",
        "2",
        "--exclusive",
        "-t",
        "30",
        "-o",
        f"{work}/slurm-%j.out",
        "--chdir",
        work,
        "--export=ALL",
        "-A",
        "XPCS",
        "-p",
        "debug",
        "--constraint=gpu",
        "--exclusive",
        str(tmp_path / "pilot.sh"),
    ]


@pytest.mark.parametrize(
    "overrides", [{"num_nodes": 0}, {"wall_time_min": 0}, {"optional_params": {"bad key; rm": "x"}}]
)
def test_impossible_requests_are_rejected(tmp_path: Path, overrides: dict[str, Any]) -> None:
    runner = ScriptedRunner({})
    with pytest.raises(SubmitRejected):
        SlurmScheduler(runner).submit(request_for(tmp_path, **overrides))
    assert runner.calls == []


def test_submit_passes_environment(tmp_path: Path) -> None:
    seen: dict[str, str] = {}

    class EnvRunner(ScriptedRunner):
        def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
            seen.update(kwargs["env"])
            return super().run(argv)

    runner = EnvRunner({"sbatch": result(0, "77\n")})
    job_id = SlurmScheduler(runner).submit(request_for(tmp_path, environment={"BEAMBRIDGE_X": "1"}))
    assert job_id == "77"
    assert seen["BEAMBRIDGE_X"] == "1" and seen["PATH"] == os.environ["PATH"]
    assert (tmp_path / "work").is_dir()


def test_submit_invalid_partition_is_rejected(tmp_path: Path) -> None:
    runner = ScriptedRunner({"sbatch": result(1, stderr=recorded("sbatch-22.05-invalid-partition.stderr"))})
    with pytest.raises(SubmitRejected, match="nosuch"):
        SlurmScheduler(runner).submit(request_for(tmp_path, queue="nosuch"))
    assert runner.programs() == ["sbatch"]  # never retried


@pytest.mark.parametrize(
    "answer",
    [
        result(1, stderr="sbatch: error: Batch job submission failed: Unable to contact slurm controller"),
        result(
            1, stderr="sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"
        ),
        result(1, stderr="Segmentation fault"),
        result(0, stdout="garbage\n"),
        CommandTimeout("`sbatch` did not finish in 60 s"),
        FileNotFoundError("sbatch"),
    ],
)
def test_submit_without_definite_answer_is_unavailable(tmp_path: Path, answer: Answer) -> None:
    runner = ScriptedRunner({"sbatch": answer})
    with pytest.raises(SchedulerUnavailable):
        SlurmScheduler(runner).submit(request_for(tmp_path))
    assert runner.programs() == ["sbatch"]  # never retried


def test_statuses_from_recorded_outputs() -> None:
    runner = ScriptedRunner(
        {
            "squeue": result(0, recorded("squeue-22.05-all-states.txt")),
            "scontrol": scontrol_from_files(
                {"1": "scontrol-show-job-22.05-completed.txt", "2": "scontrol-show-job-22.05-failed.txt"}
            ),
            "sacct": NO_ACCOUNTING,
        }
    )
    statuses = SlurmScheduler(runner).statuses(["10", "11", "1", "2", "424242"])
    assert {job_id: (s.state, s.reason, s.exit_code) for job_id, s in statuses.items()} == {
        "10": (PilotState.QUEUED, "PENDING", None),
        "11": (PilotState.RUNNING, "RUNNING", None),
        "1": (PilotState.FINISHED, "COMPLETED", 0),
        "2": (PilotState.FINISHED, "FAILED", 3),
        "424242": (PilotState.FINISHED, UNKNOWN_REASON, None),
    }
    squeue_calls = [argv for argv in runner.calls if argv[0] == "squeue"]
    assert len(squeue_calls) == 1 and "--jobs=10,11,1,2,424242" in squeue_calls[0]
    assert runner.programs().count("sacct") == 1


def test_single_unknown_id_fails_squeue_then_scontrol_decides() -> None:
    runner = ScriptedRunner(
        {
            "squeue": result(1, stderr=recorded("squeue-22.05-unknown-id.stderr")),
            "scontrol": INVALID_ID,
            "sacct": NO_ACCOUNTING,
        }
    )
    scheduler = SlurmScheduler(runner)
    assert scheduler.statuses(["424242"]) == {
        "424242": PilotStatus("424242", PilotState.FINISHED, reason=UNKNOWN_REASON)
    }
    scheduler.statuses(["424242"])
    assert runner.programs().count("sacct") == 1  # "accounting storage is disabled" is remembered


def test_forgotten_job_found_in_accounting() -> None:
    runner = ScriptedRunner(
        {
            "squeue": result(0, ""),
            "scontrol": INVALID_ID,
            "sacct": result(0, recorded("sacct-json-22.05-completed.json")),
        }
    )
    status = SlurmScheduler(runner).statuses(["267854"])["267854"]
    assert (status.state, status.reason, status.exit_code) == (PilotState.FINISHED, "COMPLETED", 0)


def test_failing_accounting_keeps_the_controllers_answer() -> None:
    runner = ScriptedRunner(
        {"squeue": result(0, ""), "scontrol": INVALID_ID, "sacct": CommandTimeout("sacct hung")}
    )
    status = SlurmScheduler(runner).statuses(["5"])["5"]
    assert (status.state, status.reason) == (PilotState.FINISHED, UNKNOWN_REASON)


@pytest.mark.parametrize(
    "answers",
    [
        {"squeue": result(0, "garbage\n")},
        {"squeue": result(0, "12|EXPLODED|n1|N/A|N/A|None\n")},
        {"squeue": result(1, stderr="squeue: error: Unable to contact slurm controller (connect failure)")},
        {"squeue": CommandTimeout("`squeue` did not finish in 60 s")},
        {"squeue": FileNotFoundError("squeue")},
        {"squeue": result(0, ""), "scontrol": result(0, "<html>oops</html>")},
        {"squeue": result(0, ""), "scontrol": result(1, stderr="slurm_load_jobs error: Socket timed out")},
        {"squeue": result(0, ""), "scontrol": CommandTimeout("`scontrol` did not finish in 60 s")},
    ],
)
def test_statuses_without_definite_answer_are_unavailable(answers: dict[str, Answer]) -> None:
    with pytest.raises(SchedulerUnavailable):
        SlurmScheduler(ScriptedRunner(answers)).statuses(["12"])


def test_statuses_ignores_non_slurm_ids() -> None:
    runner = ScriptedRunner({"squeue": result(0, "")})
    assert SlurmScheduler(runner).statuses(["", "not-an-id"]) == {}
    assert runner.calls == []


@pytest.mark.parametrize(
    "answer",
    [
        result(0),
        result(1, stderr="scancel: error: Kill job error on job id 5: Invalid job id specified"),
        result(
            1, stderr="scancel: error: Kill job error on job id 5: Job/step already completing or completed"
        ),
    ],
)
def test_cancel_finished_or_unknown_is_fine(answer: CommandResult) -> None:
    SlurmScheduler(ScriptedRunner({"scancel": answer})).cancel("5")


@pytest.mark.parametrize(
    "answer", [result(1, stderr="scancel: error: Unable to contact slurm controller"), CommandTimeout("hung")]
)
def test_cancel_without_answer_is_unavailable(answer: Answer) -> None:
    with pytest.raises(SchedulerUnavailable):
        SlurmScheduler(ScriptedRunner({"scancel": answer})).cancel("5")


def test_find_by_name_parses_and_rejects_garbage() -> None:
    assert SlurmScheduler(ScriptedRunner({"squeue": result(0, "12\n15\n")})).find_by_name("p") == ["12", "15"]
    with pytest.raises(SchedulerUnavailable):
        SlurmScheduler(ScriptedRunner({"squeue": result(0, "JOBID\n12\n")})).find_by_name("p")


# ---------------------------------------------------------------------------------------------------
# broken commands on PATH (real processes, no cluster needed)
# ---------------------------------------------------------------------------------------------------


def fake_commands(tmp_path: Path, body: str, names: Sequence[str]) -> Path:
    """A directory of executables ``names`` that all run ``body`` (bash)."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("body", "timeout_s"),
    [
        ("echo 'Welcome to the cluster! Jobs are great.'", 10.0),
        ("echo '%% ###'; exit 2", 10.0),
        ("exec sleep 30", 1.0),
    ],
)
def test_broken_commands_on_path_are_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, timeout_s: float
) -> None:
    bin_dir = fake_commands(tmp_path, body, ["sbatch", "squeue", "scontrol", "scancel"])
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    scheduler = SlurmScheduler(CommandRunner(timeout_s=timeout_s))
    started = time.monotonic()
    with pytest.raises(SchedulerUnavailable):
        scheduler.submit(request_for(tmp_path))
    with pytest.raises(SchedulerUnavailable):
        scheduler.statuses(["12", "13"])
    with pytest.raises(SchedulerUnavailable):
        scheduler.find_by_name("pilot-1")
    assert time.monotonic() - started < 3 * timeout_s + 5


def test_broken_sbatch_via_request_environment(tmp_path: Path) -> None:
    bin_dir = fake_commands(tmp_path, "echo 'Submitted to the void'", ["sbatch"])
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    with pytest.raises(SchedulerUnavailable, match="no job id"):
        SlurmScheduler().submit(request_for(tmp_path, environment={"PATH": path}))


def test_missing_commands_are_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    scheduler = SlurmScheduler()
    with pytest.raises(SchedulerUnavailable):
        scheduler.statuses(["1"])
    with pytest.raises(SchedulerUnavailable):
        scheduler.cancel("1")


# ---------------------------------------------------------------------------------------------------
# the real cluster
# ---------------------------------------------------------------------------------------------------


def unique_name(prefix: str) -> str:
    return f"bb-{prefix}-{uuid.uuid4().hex[:8]}"


def write_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / f"pilot-{uuid.uuid4().hex[:6]}.sh"
    script.write_text(f"#!/bin/bash\nset -e\n{body}\n")
    script.chmod(0o755)
    return script


def submit(
    scheduler: SlurmScheduler, tmp_path: Path, body: str, *, nodes: int = 1, **overrides: Any
) -> tuple[str, PilotRequest]:
    request = PilotRequest(
        script=write_script(tmp_path, body),
        job_name=unique_name("t"),
        num_nodes=nodes,
        wall_time_min=5,
        workdir=tmp_path / "work",
    )
    request = dataclasses.replace(request, **overrides)
    return scheduler.submit(request), request


def wait_for(
    scheduler: SlurmScheduler, job_id: str, done: Callable[[PilotStatus], bool], timeout_s: float = 60.0
) -> tuple[PilotStatus, list[PilotStatus]]:
    """Poll until ``done(status)``; the final status and every status seen on the way."""
    seen: list[PilotStatus] = []
    deadline = time.monotonic() + timeout_s
    while True:
        status = scheduler.statuses([job_id]).get(job_id)
        if status is not None:
            seen.append(status)
            if done(status):
                return status, seen
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} not done after {timeout_s} s; seen: {seen[-3:]}")
        time.sleep(0.2)


def finished(status: PilotStatus) -> bool:
    return status.state is PilotState.FINISHED


def running(status: PilotStatus) -> bool:
    return status.state is PilotState.RUNNING


def test_real_job_completes(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    scheduler = SlurmScheduler()
    job_id, request = submit(
        scheduler,
        tmp_path,
        'echo "value=$BEAMBRIDGE_TEST_VALUE" > marker.txt\nsleep 1',
        environment={"BEAMBRIDGE_TEST_VALUE": "xpcs-42"},
    )
    first = scheduler.statuses([job_id])[job_id]
    assert first.state in (PilotState.QUEUED, PilotState.RUNNING)
    status, seen = wait_for(scheduler, job_id, finished)
    assert (status.reason, status.exit_code) == ("COMPLETED", 0)
    assert any(s.state is PilotState.RUNNING for s in seen)
    assert len(status.nodes) == 1 and status.nodes[0] in slurm_cluster.nodes
    assert status.start_time is not None and status.end_time is not None
    assert status.end_time >= status.start_time
    assert (request.workdir / "marker.txt").read_text() == "value=xpcs-42\n"
    assert (request.workdir / f"slurm-{job_id}.out").exists()


def test_real_job_fails_with_its_exit_code(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    scheduler = SlurmScheduler()
    job_id, _ = submit(scheduler, tmp_path, "echo failing\nexit 7")
    status, _ = wait_for(scheduler, job_id, finished)
    assert (status.state, status.reason, status.exit_code) == (PilotState.FINISHED, "FAILED", 7)


def test_real_cancel_of_a_running_job(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    scheduler = SlurmScheduler()
    job_id, _ = submit(scheduler, tmp_path, "sleep 300")
    wait_for(scheduler, job_id, running)
    scheduler.cancel(job_id)
    status, _ = wait_for(scheduler, job_id, finished)
    assert status.reason == "CANCELLED"
    # scancel sends SIGTERM and, KillWait seconds later, SIGKILL; a job cancelled while its batch
    # step is still being set up is killed outright. Either way the exit code names the signal.
    assert status.exit_code in (128 + 15, 128 + 9)
    scheduler.cancel(job_id)  # again: already finished is fine
    scheduler.cancel("999999")  # unknown is fine too


def test_real_multi_node_job_spans_nodes(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    if len(slurm_cluster.nodes) < 3:
        unavailable(f"a Slurm cluster of 3 nodes or more (this one has {len(slurm_cluster.nodes)})")
    scheduler = SlurmScheduler()
    job_id, request = submit(
        scheduler,
        tmp_path,
        "srun hostname > hosts.txt\nsrun bash -c 'echo $SLURMD_NODENAME' > names.txt",
        nodes=3,
    )
    status, _ = wait_for(scheduler, job_id, finished)
    assert (status.reason, status.exit_code) == ("COMPLETED", 0)
    assert len(status.nodes) == 3
    assert len((request.workdir / "hosts.txt").read_text().split()) == 3
    names = sorted((request.workdir / "names.txt").read_text().split())
    assert names == sorted(status.nodes)


def test_real_allocation_nodes_inside_a_job(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    scheduler = SlurmScheduler()
    code = (
        "import os; from beambridge.platform.schedulers.slurm import SlurmScheduler; "
        "print(' '.join(SlurmScheduler.allocation_nodes(os.environ)))"
    )
    nodes = min(2, len(slurm_cluster.nodes))
    job_id, request = submit(
        scheduler, tmp_path, f"'{sys.executable}' -c \"{code}\" > nodes.txt", nodes=nodes
    )
    status, _ = wait_for(scheduler, job_id, finished)
    assert (status.reason, status.exit_code) == ("COMPLETED", 0), request.workdir / f"slurm-{job_id}.out"
    inside = (request.workdir / "nodes.txt").read_text().split()
    assert inside == list(status.nodes)
    assert len(inside) == nodes and set(inside) <= set(slurm_cluster.nodes)


def test_real_find_by_name_and_pending_status(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    scheduler = SlurmScheduler()
    name = unique_name("find")
    job_id, _ = submit(scheduler, tmp_path, "true", job_name=name, optional_params={"begin": "now+3600"})
    try:
        assert scheduler.find_by_name(name) == [job_id]
        assert scheduler.find_by_name(unique_name("nobody")) == []
        status = scheduler.statuses([job_id])[job_id]
        assert (status.state, status.reason, status.nodes) == (PilotState.QUEUED, "PENDING", ())
        assert status.start_time is None
    finally:
        scheduler.cancel(job_id)
    wait_for(scheduler, job_id, finished)
    assert scheduler.find_by_name(name) == []


def test_real_unknown_ids(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    scheduler = SlurmScheduler()
    job_id, _ = submit(scheduler, tmp_path, "sleep 30")
    try:
        statuses = scheduler.statuses([job_id, "999998", "999999"])
        assert statuses[job_id].state in (PilotState.QUEUED, PilotState.RUNNING)
        for unknown in ("999998", "999999"):
            assert (statuses[unknown].state, statuses[unknown].reason) == (
                PilotState.FINISHED,
                UNKNOWN_REASON,
            )
        alone = scheduler.statuses(["999999"])["999999"]  # squeue itself fails for a single unknown id
        assert (alone.state, alone.reason) == (PilotState.FINISHED, UNKNOWN_REASON)
    finally:
        scheduler.cancel(job_id)


def test_real_nonexistent_partition_is_rejected(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    scheduler = SlurmScheduler()
    with pytest.raises(SubmitRejected, match="no-such-partition"):
        submit(scheduler, tmp_path, "true", queue="no-such-partition")


def test_real_explicit_partition(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    scheduler = SlurmScheduler()
    job_id, _ = submit(scheduler, tmp_path, "true", queue=slurm_cluster.partition)
    status, _ = wait_for(scheduler, job_id, finished)
    assert status.reason == "COMPLETED"
