"""LSF adapter, against outputs recorded on real systems (``tests/data/lsf``, see
``tests/data/SOURCES-pbs-lsf.md``). LSF itself cannot run here, so commands go to a fake runner that
replays those outputs and records the exact argv."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from beambridge.platform.commands import CommandResult, CommandRunner, CommandTimeout
from beambridge.platform.schedulers import get_scheduler
from beambridge.platform.schedulers.base import (
    PilotRequest,
    PilotState,
    SchedulerUnavailable,
    SubmitRejected,
)
from beambridge.platform.schedulers.lsf import (
    BJOBS_FIELDS,
    LsfScheduler,
    bsub_argv,
    hosts_from_environ,
    parse_bjobs,
    parse_bjobs_json,
    parse_bjobs_table,
    parse_bsub_output,
    parse_exec_host,
    parse_lsf_time,
    pilot_status,
    rejection_reason,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "lsf"
BERLIN = ZoneInfo("Europe/Berlin")  # the DKFZ cluster (Heidelberg)
#: "now" for placing LSF's year-less times: shortly after the DKFZ records' dates
NOW = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)


def data(name: str) -> str:
    return (DATA / name).read_text()


def result(stdout: str = "", stderr: str = "", returncode: int = 0) -> CommandResult:
    return CommandResult(("bjobs",), returncode, stdout, stderr)


class FakeRunner(CommandRunner):
    """Replays scripted results (or raises scripted exceptions) and records every call."""

    def __init__(self, *replies: CommandResult | Exception) -> None:
        super().__init__()
        self.replies = list(replies)
        self.calls: list[tuple[str, ...]] = []
        self.envs: list[Mapping[str, str] | None] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
    ) -> CommandResult:
        self.calls.append(tuple(str(a) for a in argv))
        self.envs.append(env)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return CommandResult(tuple(str(a) for a in argv), reply.returncode, reply.stdout, reply.stderr)


def reply(stdout: str = "", stderr: str = "", returncode: int = 0) -> CommandResult:
    return CommandResult((), returncode, stdout, stderr)


def scheduler(*replies: CommandResult | Exception) -> tuple[LsfScheduler, FakeRunner]:
    runner = FakeRunner(*replies)
    return LsfScheduler(runner, timezone=BERLIN, clock=lambda: NOW), runner


# constructed in LSF's documented shape (no recording available): a not-found id in -json output
NOT_FOUND_JSON = json.dumps(
    {"COMMAND": "bjobs", "JOBS": 1, "RECORDS": [{"JOBID": "3386668", "ERROR": "Job <3386668> is not found"}]}
)


# ---------------------------------------------------------------------------------------------------
# parsers


def test_bsub_output_is_the_job_id() -> None:
    assert parse_bsub_output(data("bsub-summit.txt")) == "3386667"
    assert parse_bsub_output("Request aborted by esub. Job not submitted.") is None


def test_done_job_with_finish_time_suffix_and_escaped_paths() -> None:
    statuses = parse_bjobs_json(data("bjobs-o-json-done-dkfz.json"), ["22005"], NOW, BERLIN)
    status = statuses["22005"]
    assert (status.state, status.reason, status.exit_code) == (PilotState.FINISHED, "DONE", 0)
    assert status.nodes == ("tbi-cn019",)  # "tbi-cn019:tbi-cn019": one host, two slots
    # "Dec 28 19:56" (CET, no year) and "Dec 28 19:56 L" (suffix dropped), before NOW
    assert status.start_time == datetime(2024, 12, 28, 18, 56, tzinfo=UTC)
    assert status.end_time == datetime(2024, 12, 28, 18, 56, tzinfo=UTC)


def test_many_exit_and_done_jobs() -> None:
    wanted = ["487641", "487642", "488155", "491861", "491864", "491867"]
    statuses = parse_bjobs_json(data("bjobs-o-json-multi-dkfz.json"), wanted, NOW, BERLIN)
    assert [statuses[i].reason for i in wanted] == ["EXIT", "EXIT", "EXIT", "DONE", "DONE", "DONE"]
    assert all(s.state is PilotState.FINISHED for s in statuses.values())
    # no EXIT_CODE field was asked for: an exited job's code is unknown, a done job's is 0
    assert [statuses[i].exit_code for i in wanted] == [None, None, None, 0, 0, 0]
    assert statuses["487641"].end_time == datetime(2025, 1, 7, 8, 59, tzinfo=UTC)
    assert statuses["491867"].end_time == datetime(2025, 1, 8, 13, 21, tzinfo=UTC)


def test_records_outside_the_request_are_ignored() -> None:
    statuses = parse_bjobs_json(data("bjobs-o-json-multi-dkfz.json"), ["491864", "999"], NOW, BERLIN)
    assert list(statuses) == ["491864"]


def test_suspended_pending_job_is_queued_even_without_a_jobid_field() -> None:
    # this recording's -o list had no jobid; the single record answers the single id asked for
    status = parse_bjobs_json(data("bjobs-o-json-psusp-summit.json"), ["58652"], NOW)["58652"]
    assert (status.state, status.reason, status.exit_code, status.nodes) == (
        PilotState.QUEUED,
        "PSUSP",
        None,
        (),
    )
    assert status.start_time is None and status.end_time is None
    # with two ids asked for, an id-less record answers neither
    assert parse_bjobs_json(data("bjobs-o-json-psusp-summit.json"), ["58652", "58653"], NOW) == {}


def test_not_found_record_is_finished_unknown_to_the_scheduler() -> None:
    statuses = parse_bjobs_json(NOT_FOUND_JSON, ["3386668"], NOW)
    assert statuses["3386668"].state is PilotState.FINISHED
    assert statuses["3386668"].reason == "unknown to the scheduler"


def test_not_found_among_known_jobs_affects_only_that_id() -> None:
    records = json.loads(data("bjobs-o-json-done-dkfz.json"))
    records["RECORDS"] += json.loads(NOT_FOUND_JSON)["RECORDS"]
    records["JOBS"] = 2
    statuses = parse_bjobs(result(json.dumps(records), "", 255), ["22005", "3386668"], NOW, BERLIN)
    assert statuses["22005"].reason == "DONE"
    assert statuses["3386668"].reason == "unknown to the scheduler"


def test_not_found_on_stderr_is_finished_unknown() -> None:
    statuses = parse_bjobs(result("", "Job <3386668> is not found\n", 255), ["3386668"], NOW)
    assert statuses["3386668"].reason == "unknown to the scheduler"


def test_other_error_record_is_unavailable() -> None:
    text = json.dumps(
        {"COMMAND": "bjobs", "JOBS": 1, "RECORDS": [{"JOBID": "1", "ERROR": "mbatchd is busy"}]}
    )
    with pytest.raises(SchedulerUnavailable):
        parse_bjobs(result(text, "", 255), ["1"], NOW)


@pytest.mark.parametrize(
    "stdout",
    [
        data("bjobs-o-json-done-dkfz.json")[:300],
        data("bjobs-o-json-done-dkfz.json").replace('"STAT":"DONE"', '"STAT":DONE'),
        '{"COMMAND":"bjobs","JOBS":1}',
        '{"COMMAND":"bjobs","RECORDS":["22005"]}',
        "[]",
    ],
)
def test_garbled_json_is_unavailable(stdout: str) -> None:
    with pytest.raises(SchedulerUnavailable):
        parse_bjobs(result(stdout), ["22005"], NOW)


@pytest.mark.parametrize(
    ("stdout", "stderr", "returncode"),
    [
        ("", "", 0),
        ("", "", 255),
        ("", "LSF is down. Please wait ...\nbatch system daemon not responding ... still trying", 255),
        ("", "Failed in an LSF library call: Slave LIM configuration is not ready yet.", 255),
        ("bjobs: illegal option -- json", "", 255),
    ],
)
def test_no_definite_answer_is_unavailable(stdout: str, stderr: str, returncode: int) -> None:
    with pytest.raises(SchedulerUnavailable):
        parse_bjobs(result(stdout, stderr, returncode), ["22005"], NOW)


def test_a_busy_daemon_that_then_answers_is_trusted() -> None:
    answer = result(
        data("bjobs-o-json-done-dkfz.json"), "batch system daemon not responding ... still trying\n", 0
    )
    assert parse_bjobs(answer, ["22005"], NOW, BERLIN)["22005"].reason == "DONE"


def test_plain_table_fallback() -> None:
    table = data("bjobs-u-all-cern.txt")
    statuses = parse_bjobs_table(table)
    assert len(statuses) == 10
    assert all(s.state is PilotState.QUEUED and s.reason == "PEND" for s in statuses.values())
    # through the full parser, only the requested ids
    statuses = parse_bjobs(result(table), ["811659815", "811659822", "1"], NOW)
    assert sorted(statuses) == ["811659815", "811659822"]


def test_plain_table_with_running_and_done_rows() -> None:
    # the CERN header with rows in the states that recording lacks (and a continuation line)
    header = data("bjobs-u-all-cern.txt").splitlines()[0]
    table = "\n".join(
        [
            header,
            "811659901 x123    RUN   8nh        lxplus023.c 16*b6a01    run_1.sh   Nov 25 00:42",
            "                                              16*b6a02",
            "811659902 x123    DONE  8nh        lxplus023.c b6a03       run_2.sh   Nov 25 00:42",
            "811659903 x123    EXIT  8nh        lxplus023.c b6a04       run_3.sh   Nov 25 00:42",
        ]
    )
    statuses = parse_bjobs_table(table)
    assert [(s.state, s.exit_code) for s in statuses.values()] == [
        (PilotState.RUNNING, None),
        (PilotState.FINISHED, 0),
        (PilotState.FINISHED, None),
    ]


@pytest.mark.parametrize(
    ("stat", "state"),
    [
        ("PEND", "queued"),
        ("PSUSP", "queued"),
        ("USUSP", "queued"),
        ("SSUSP", "queued"),
        ("WAIT", "queued"),
        ("RUN", "running"),
        ("DONE", "finished"),
        ("EXIT", "finished"),
    ],
)
def test_stat_values(stat: str, state: str) -> None:
    record = json.loads(data("bjobs-o-json-done-dkfz.json"))["RECORDS"][0]
    record["STAT"] = stat
    status = pilot_status("22005", record, NOW, BERLIN)
    assert status is not None and status.state == state and status.reason == stat
    if state != "finished":  # a finish time on a live job is LSF's estimate
        assert status.end_time is None and status.exit_code is None


@pytest.mark.parametrize("stat", ["UNKWN", "ZOMBI", ""])
def test_stat_that_is_not_definite_is_left_out(stat: str) -> None:
    record = json.loads(data("bjobs-o-json-done-dkfz.json"))["RECORDS"][0]
    record["STAT"] = stat
    assert pilot_status("22005", record, NOW) is None


def test_exit_code_of_an_exited_job() -> None:
    record = json.loads(data("bjobs-o-json-done-dkfz.json"))["RECORDS"][0]
    record.update(STAT="EXIT", EXIT_CODE="130")
    status = pilot_status("22005", record, NOW)
    assert status is not None and status.exit_code == 130


def test_lsf_time_parsing() -> None:
    assert parse_lsf_time("Dec 28 19:56", NOW, UTC) == datetime(2024, 12, 28, 19, 56, tzinfo=UTC)
    assert parse_lsf_time("Jan  7 09:59 L", NOW, UTC) == datetime(2025, 1, 7, 9, 59, tzinfo=UTC)
    assert parse_lsf_time("Jan 10 13:30", NOW, UTC) == datetime(2025, 1, 10, 13, 30, tzinfo=UTC)  # clock skew
    assert parse_lsf_time("May 28 12:45", NOW, UTC) == datetime(2024, 5, 28, 12, 45, tzinfo=UTC)
    assert parse_lsf_time("Feb 29 10:00", NOW, UTC) == datetime(2024, 2, 29, 10, 0, tzinfo=UTC)
    assert parse_lsf_time("Dec 28 19:56:07 2021", NOW, UTC) == datetime(2021, 12, 28, 19, 56, 7, tzinfo=UTC)
    assert parse_lsf_time("", NOW, UTC) is None
    assert parse_lsf_time("-", NOW, UTC) is None
    local = parse_lsf_time("May 28 12:45", NOW)  # this machine's zone
    assert local is not None and local.tzinfo is UTC


def test_exec_host_forms() -> None:
    assert parse_exec_host("tbi-cn019:tbi-cn019") == ("tbi-cn019",)
    assert parse_exec_host("1*batch3:42*a01n06:42*a01n07") == ("a01n06", "a01n07")
    assert parse_exec_host("batch3") == ("batch3",)
    assert parse_exec_host("") == ()


def test_allocation_hosts_from_the_hostfile(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("batch3\n" + "a01n06\n" * 42 + "a01n07\n" * 42)
    assert LsfScheduler.allocation_nodes({"LSB_DJOB_HOSTFILE": str(hostfile)}) == ["a01n06", "a01n07"]


def test_allocation_hosts_from_variables() -> None:
    assert hosts_from_environ({"LSB_MCPU_HOSTS": "batch3 1 a01n06 42 a01n07 42"}) == ["a01n06", "a01n07"]
    assert hosts_from_environ({"LSB_HOSTS": "batch3 a01n06 a01n06 a01n07"}) == ["a01n06", "a01n07"]
    assert hosts_from_environ({"LSB_HOSTS": "hostA hostA hostB"}) == ["hostA", "hostB"]
    # a hostfile that cannot be read falls back to the variables
    fallback = {"LSB_DJOB_HOSTFILE": "missing/hostfile", "LSB_MCPU_HOSTS": "hostA 4 hostB 4"}
    assert hosts_from_environ(fallback) == ["hostA", "hostB"]
    assert LsfScheduler.allocation_nodes({}) is None


# ---------------------------------------------------------------------------------------------------
# the adapter


BASE_REQUEST = PilotRequest(
    script=Path("pilots/pilot-7.sh"),
    job_name="bb-pilot-7",
    num_nodes=2,
    wall_time_min=90,
    workdir=Path("pilots/7"),
)


def request(**overrides: Any) -> PilotRequest:
    return replace(BASE_REQUEST, **overrides)


def test_submit_minimal_argv() -> None:
    lsf, runner = scheduler(reply(data("bsub-summit.txt")))
    assert lsf.submit(request()) == "3386667"
    assert runner.calls == [
        (
            "bsub",
            "-J",
            "bb-pilot-7",
            "-nnodes",
            "2",
            "-W",
            "90",
            "-o",
            "pilots/7/lsf-%J.out",
            "pilots/pilot-7.sh",
        )
    ]
    assert runner.envs == [None]


def test_submit_full_argv_and_environment() -> None:
    lsf, runner = scheduler(reply(data("bsub-summit.txt")))
    pilot = request(
        project="GEN014ECPCI",
        queue="batch",
        optional_params={"alloc_flags": "gpumps smt4", "-G": "grp", "-N": ""},
        environment={"BEAMBRIDGE_SITE": "summit"},
    )
    assert lsf.submit(pilot) == "3386667"
    assert runner.calls == [
        (
            "bsub", "-J", "bb-pilot-7", "-nnodes", "2", "-W", "90", "-o", "pilots/7/lsf-%J.out",
            "-P", "GEN014ECPCI", "-q", "batch", "-alloc_flags", "gpumps smt4", "-G", "grp", "-N",
            "pilots/pilot-7.sh",
        )
    ]  # fmt: skip
    assert bsub_argv(pilot) == list(runner.calls[0])
    env = runner.envs[0]
    assert env is not None and env["BEAMBRIDGE_SITE"] == "summit" and "PATH" in env


@pytest.mark.parametrize(
    "stderr",
    [
        # LSF's wording, not recordings: every refusal ends "Job not submitted."
        "debug5: No such queue. Job not submitted.",
        "Bad argument for option -nnodes. Job not submitted.",
        "You must specify a project. Request aborted by esub. Job not submitted.",
    ],
)
def test_submit_rejected_names_the_reason(stderr: str) -> None:
    assert rejection_reason(stderr) == stderr
    lsf, _ = scheduler(reply("", stderr, 255))
    with pytest.raises(SubmitRejected, match="Job not submitted"):
        lsf.submit(request())


@pytest.mark.parametrize(
    ("stdout", "stderr", "returncode"),
    [
        ("", "LSF is down. Please wait ...", 255),
        (
            "",
            "Failed in an LSF library call: Slave LIM configuration is not ready yet. Job not submitted.",
            255,
        ),
        ("", "something unexpected", 1),
        ("", "", 0),
    ],
)
def test_submit_without_a_definite_answer_is_unavailable(stdout: str, stderr: str, returncode: int) -> None:
    lsf, _ = scheduler(reply(stdout, stderr, returncode))
    with pytest.raises(SchedulerUnavailable):
        lsf.submit(request())


def test_submit_that_printed_an_id_is_submitted_whatever_the_exit_code() -> None:
    lsf, _ = scheduler(reply(data("bsub-summit.txt"), "warning: something", 1))
    assert lsf.submit(request()) == "3386667"


@pytest.mark.parametrize(
    "error", [CommandTimeout("`bsub` did not finish in 60 s"), FileNotFoundError("bsub")]
)
def test_submit_timeout_or_missing_command_is_unavailable(error: Exception) -> None:
    lsf, _ = scheduler(error)
    with pytest.raises(SchedulerUnavailable):
        lsf.submit(request())


def test_statuses_runs_one_bjobs_over_all_ids() -> None:
    wanted = ["487641", "491861", "491867"]
    lsf, runner = scheduler(reply(data("bjobs-o-json-multi-dkfz.json")))
    statuses = lsf.statuses(wanted)
    assert runner.calls == [("bjobs", "-o", BJOBS_FIELDS, "-json", *wanted)]
    assert BJOBS_FIELDS == "jobid stat exit_code submit_time start_time finish_time exec_host job_name"
    assert [statuses[i].reason for i in wanted] == ["EXIT", "DONE", "DONE"]
    assert statuses["491867"].end_time == datetime(2025, 1, 8, 13, 21, tzinfo=UTC)


def test_statuses_of_a_suspended_job() -> None:
    lsf, _ = scheduler(reply(data("bjobs-o-json-psusp-summit.json")))
    assert lsf.statuses(["58652"])["58652"].state is PilotState.QUEUED


def test_statuses_of_nothing_runs_nothing() -> None:
    lsf, runner = scheduler()
    assert lsf.statuses([]) == {}
    assert runner.calls == []


def test_statuses_timeout_is_unavailable() -> None:
    lsf, _ = scheduler(CommandTimeout("slow"))
    with pytest.raises(SchedulerUnavailable):
        lsf.statuses(["1"])


@pytest.mark.parametrize(
    ("stdout", "stderr", "returncode"),
    [
        ("", "", 0),
        # non-zero exit even though it worked (equinor/ert #7664)
        (data("bkill-being-signaled.stdout.txt"), "", 255),
        ("", data("bkill-already-finished.stderr.txt"), 255),
        ("", "Job <8057>: No matching job found", 255),
    ],
)
def test_cancel_signalled_finished_or_unknown_is_fine(stdout: str, stderr: str, returncode: int) -> None:
    lsf, runner = scheduler(reply(stdout, stderr, returncode))
    lsf.cancel("8055")
    assert runner.calls == [("bkill", "8055")]


@pytest.mark.parametrize("stderr", ["LSF is down. Please wait ...", "bkill: something unexpected"])
def test_cancel_failures_are_unavailable(stderr: str) -> None:
    lsf, _ = scheduler(reply("", stderr, 255))
    with pytest.raises(SchedulerUnavailable):
        lsf.cancel("8055")


def test_find_by_name_lists_unfinished_jobs_with_that_name() -> None:
    listing = json.loads(data("bjobs-o-json-multi-dkfz.json"))
    listing["RECORDS"][3]["STAT"] = "RUN"  # as if 491861 were still running
    lsf, runner = scheduler(reply(json.dumps(listing)))
    assert lsf.find_by_name("RoddyTest_testScript") == ["491861"]
    assert runner.calls == [("bjobs", "-J", "RoddyTest_testScript", "-o", "jobid stat job_name", "-json")]
    lsf, _ = scheduler(reply(data("bjobs-o-json-multi-dkfz.json")))
    assert lsf.find_by_name("RoddyTest_testScript") == []  # all finished


def test_find_by_name_failure_is_empty() -> None:
    for answer in (
        reply("", "LSF is down. Please wait ...", 255),
        CommandTimeout("slow"),
        reply('{"RECORDS":'),
    ):
        lsf, _ = scheduler(answer)
        assert lsf.find_by_name("bb-pilot-7") == []


def test_registry_builds_the_lsf_adapter() -> None:
    lsf = get_scheduler("lsf", FakeRunner())
    assert isinstance(lsf, LsfScheduler)
    assert lsf.name == "lsf"
