"""PBS Pro / OpenPBS adapter, against outputs recorded on real systems (``tests/data/pbs``, see
``tests/data/SOURCES-pbs-lsf.md``). PBS itself cannot run here, so commands go to a fake runner that
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
from beambridge.platform.schedulers.pbs import (
    PbsScheduler,
    load_pbs_json,
    parse_exec_host,
    parse_exec_vnode,
    parse_pbs_time,
    parse_qstat,
    parse_qsub_output,
    pilot_status,
    qsub_argv,
    rejection_reason,
    walltime,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "pbs"
#: ALCF's login nodes print qstat times in US Central time; the server comments are in UTC.
CHICAGO = ZoneInfo("America/Chicago")

POLARIS = ".polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov"
AURORA = ".aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"


def data(name: str) -> str:
    return (DATA / name).read_text()


def result(
    stdout: str = "", stderr: str = "", returncode: int = 0, argv: Sequence[str] = ("qstat",)
) -> CommandResult:
    return CommandResult(tuple(argv), returncode, stdout, stderr)


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


def all_ids(name: str) -> list[str]:
    return list(json.loads(data(name))["Jobs"])


# ---------------------------------------------------------------------------------------------------
# parsers


def test_walltime_is_hh_mm_ss_and_hours_may_pass_a_day() -> None:
    assert walltime(1) == "00:01:00"
    assert walltime(90) == "01:30:00"
    assert walltime(1500) == "25:00:00"
    with pytest.raises(ValueError):
        walltime(0)


def test_qsub_output_is_the_job_id() -> None:
    # the id format as recorded in qsub-interactive-polaris.stderr.txt
    assert parse_qsub_output(f"308834{POLARIS}\n") == f"308834{POLARIS}"
    assert parse_qsub_output("157.pbs\n") == "157.pbs"
    assert parse_qsub_output("1234\n") == "1234"


def test_qsub_interactive_messages_are_not_a_job_id() -> None:
    assert parse_qsub_output(data("qsub-interactive-polaris.stderr.txt")) is None
    assert parse_qsub_output("") is None


@pytest.mark.parametrize("line", data("qsub-errors-alcf.txt").splitlines())
def test_every_alcf_qsub_error_is_a_rejection(line: str) -> None:
    reason = rejection_reason(line)
    assert reason == line.removeprefix("qsub: ")


def test_unknown_queue_is_a_rejection() -> None:
    assert rejection_reason(data("qsub-unknown-queue.stderr.txt")) == "Unknown queue"


@pytest.mark.parametrize(
    "text",
    [
        data("qstat-connection-refused.stderr.txt"),
        data("qstat-no-route-to-host.stderr.txt"),
        *data("qstat-cannot-connect-variants.txt").split("\n\n"),
    ],
)
def test_unreachable_server_is_never_a_rejection(text: str) -> None:
    assert rejection_reason(text) is None
    with pytest.raises(SchedulerUnavailable):
        parse_qstat(result(data("qstat-connection-refused.stdout.json"), text, 255), ["1.pbs"])


def test_aurora_history_finished_and_held_jobs() -> None:
    statuses = parse_qstat(
        result(data("qstat-x-f-json-aurora-finished.json")),
        all_ids("qstat-x-f-json-aurora-finished.json"),
        CHICAGO,
    )

    walltime_killed = statuses[f"6617175{AURORA}"]
    assert walltime_killed.state is PilotState.FINISHED
    assert walltime_killed.reason == "F"
    assert walltime_killed.exit_code == -29
    assert len(walltime_killed.nodes) == 40
    assert walltime_killed.nodes[:2] == ("x4618c0s0b0n0", "x4618c0s1b0n0")
    # stime "Wed Jul 23 15:35:36 2025" (Central) = the comment's "Job run at Wed Jul 23 at 20:35" (UTC)
    assert walltime_killed.start_time == datetime(2025, 7, 23, 20, 35, 36, tzinfo=UTC)
    # obittime "Wed Jul 23 21:37:59 2025"
    assert walltime_killed.end_time == datetime(2025, 7, 24, 2, 37, 59, tzinfo=UTC)

    assert statuses[f"6617182{AURORA}"].exit_code == -29
    assert statuses[f"6617182{AURORA}"].start_time == datetime(2025, 7, 24, 2, 40, 1, tzinfo=UTC)

    succeeded = statuses[f"6631289{AURORA}"]
    assert (succeeded.state, succeeded.exit_code, len(succeeded.nodes)) == (PilotState.FINISHED, 0, 30)
    assert succeeded.start_time == datetime(2025, 7, 24, 2, 30, 39, tzinfo=UTC)

    held = statuses[f"4905472{AURORA}"]
    assert (held.state, held.reason, held.exit_code, held.nodes) == (PilotState.QUEUED, "H", None, ())
    assert held.start_time is None and held.end_time is None


def test_polaris_queued_held_and_running_jobs() -> None:
    statuses = parse_qstat(
        result(data("qstat-f-json-polaris.json")), all_ids("qstat-f-json-polaris.json"), CHICAGO
    )

    queued = statuses[f"359322{POLARIS}"]
    assert (queued.state, queued.reason, queued.nodes) == (PilotState.QUEUED, "Q", ())

    # held after 21 failed starts: PBS keeps Exit_status -3, stime and obittime of the last attempt,
    # but the pilot is waiting, not finished
    held = statuses[f"412020{POLARIS}"]
    assert (held.state, held.reason, held.exit_code) == (PilotState.QUEUED, "H", None)
    assert held.start_time is None and held.end_time is None

    running = statuses[f"1147579{POLARIS}"]
    assert (running.state, running.reason, running.exit_code) == (PilotState.RUNNING, "R", None)
    assert len(running.nodes) == 160
    assert running.nodes[0] == "x3006c0s31b1n0"
    assert running.nodes[-1] == "x3002c0s19b1n0"
    # "Thu Nov  9 13:05:50 2023" (Central) = comment "Job run at Thu Nov 09 at 19:05" (UTC)
    assert running.start_time == datetime(2023, 11, 9, 19, 5, 50, tzinfo=UTC)
    assert running.end_time is None


def test_metacentrum_running_job_nodes_from_exec_host_and_vnode() -> None:
    job_id = "12860476.meta-pbs.metacentrum.cz"
    prague = ZoneInfo("Europe/Prague")
    status = parse_qstat(result(data("qstat-xf-json-metacentrum-running.json")), [job_id], prague)[job_id]
    assert status.state is PilotState.RUNNING
    assert status.nodes == ("charon24", "charon21")
    # "Tue Oct  4 21:23:33 2022" in Prague (CEST)
    assert status.start_time == datetime(2022, 10, 4, 19, 23, 33, tzinfo=UTC)
    job = json.loads(data("qstat-xf-json-metacentrum-running.json"))["Jobs"][job_id]
    assert parse_exec_host(job["exec_host"]) == ("charon24", "charon21")
    assert parse_exec_vnode(job["exec_vnode"]) == ("charon24", "charon21")


def test_nodes_fall_back_to_exec_vnode() -> None:
    job = json.loads(data("qstat-xf-json-metacentrum-running.json"))["Jobs"][
        "12860476.meta-pbs.metacentrum.cz"
    ]
    del job["exec_host"]
    status = pilot_status("12860476.meta-pbs.metacentrum.cz", job)
    assert status is not None and status.nodes == ("charon24", "charon21")


def test_openpbs_user_held_job_is_queued() -> None:
    status = parse_qstat(result(data("qstat-x-f-json-held-docker.json")), ["157.pbs"])["157.pbs"]
    assert (status.state, status.reason, status.exit_code, status.nodes) == (PilotState.QUEUED, "H", None, ())


def test_unknown_job_id_is_finished_unknown_to_the_scheduler() -> None:
    job_id = f"412635{POLARIS}"
    # non-zero exit; stdout is only the header
    answer = result(
        data("qstat-unknown-job-polaris.stdout.json"), data("qstat-unknown-job-polaris.stderr.txt"), 153
    )
    status = parse_qstat(answer, [job_id])[job_id]
    assert status.state is PilotState.FINISHED
    assert status.reason == "unknown to the scheduler"
    assert status.exit_code is None


def test_unknown_job_id_among_known_ones_affects_only_that_id() -> None:
    # the Polaris listing and Polaris's "Unknown Job Id" line, as one qstat call over four ids returns them
    wanted = [*all_ids("qstat-f-json-polaris.json"), f"412635{POLARIS}"]
    answer = result(data("qstat-f-json-polaris.json"), data("qstat-unknown-job-polaris.stderr.txt"), 153)
    statuses = parse_qstat(answer, wanted, CHICAGO)
    assert set(statuses) == set(wanted)
    assert statuses[f"412635{POLARIS}"].reason == "unknown to the scheduler"
    assert statuses[f"1147579{POLARIS}"].state is PilotState.RUNNING
    assert statuses[f"359322{POLARIS}"].state is PilotState.QUEUED


def test_unknown_job_line_from_the_table_transcript() -> None:
    line = data("qstat-x-table-and-unknown-job.txt").splitlines()[-1]
    assert line == "qstat: Unknown Job Id 256.sod-pbs"
    statuses = parse_qstat(result("", line, 153), ["256.sod-pbs", "282.sod-pbs"])
    assert statuses == {"256.sod-pbs": statuses["256.sod-pbs"]}
    assert statuses["256.sod-pbs"].reason == "unknown to the scheduler"


def test_job_finished_without_history_is_finished() -> None:
    job_id = f"5487654{POLARIS}"
    answer = result(
        data("qstat-job-finished-polaris.stdout.json"), data("qstat-job-finished-polaris.stderr.txt"), 35
    )
    status = parse_qstat(answer, [job_id])[job_id]
    assert (status.state, status.reason, status.exit_code) == (PilotState.FINISHED, "Job has finished", None)


@pytest.mark.parametrize("stem", ["qstat-connection-refused", "qstat-no-route-to-host"])
def test_unreachable_server_with_a_valid_json_header_is_unavailable(stem: str) -> None:
    # PBS still prints a well-formed header (no "Jobs") when it cannot reach the server
    stdout = data(f"{stem}.stdout.json")
    assert "Jobs" not in load_pbs_json(stdout)
    with pytest.raises(SchedulerUnavailable, match="unreachable"):
        parse_qstat(result(stdout, data(f"{stem}.stderr.txt"), 255), ["1.pbs"])


@pytest.mark.parametrize(
    "stdout",
    [
        data("qstat-f-json-polaris.json")[:5000],  # cut off mid-stream
        data("qstat-f-json-polaris.json").replace('"job_state":"R"', '"job_state":R'),
        "[]",
        '{"timestamp":1,"Jobs":["1.pbs"]}',
        '{"timestamp":1,"Jobs":{"1.pbs":"R"}}',
        "qstat: something else entirely",
    ],
)
def test_garbled_json_is_unavailable(stdout: str) -> None:
    with pytest.raises(SchedulerUnavailable):
        parse_qstat(result(stdout), [f"1147579{POLARIS}"])


def test_failure_exit_with_an_unexplained_message_is_unavailable() -> None:
    with pytest.raises(SchedulerUnavailable):
        parse_qstat(result("", "qstat: Error (15031) returned from server", 1), ["1.pbs"])
    with pytest.raises(SchedulerUnavailable):  # no message at all
        parse_qstat(result(data("qstat-x-f-json-held-docker.json"), "", 2), ["157.pbs"])
    with pytest.raises(SchedulerUnavailable):  # an "Unknown Job Id" alongside an unexplained failure
        parse_qstat(result("", "qstat: Unknown Job Id 1.pbs\nqstat: pbs_statjob failed", 153), ["1.pbs"])


def test_empty_output_is_unavailable() -> None:
    with pytest.raises(SchedulerUnavailable):
        parse_qstat(result(""), ["1.pbs"])


def test_tolerates_unescaped_backslashes_and_control_characters() -> None:
    # not from a recording: PBS writes Variable_List values verbatim, so a backslash in a user's
    # environment yields an invalid JSON escape, and a tab a raw control character
    text = data("qstat-x-f-json-held-docker.json").replace(
        '"PBS_O_SYSTEM":"Linux"', '"PBS_O_SYSTEM":"Linux","PS1":"\\u@\\h:\\w\\$ ","TABBED":"a\tb"'
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    variables = load_pbs_json(text)["Jobs"]["157.pbs"]["Variable_List"]
    assert variables["PS1"] == "\\u@\\h:\\w\\$ "
    assert variables["TABBED"] == "a\tb"
    assert parse_qstat(result(text), ["157.pbs"])["157.pbs"].state is PilotState.QUEUED


def test_huge_numbers_parse() -> None:
    # the Aurora server record holds "max_job_sequence_id": 999999999999; jobs hold similar counters
    text = data("qstat-x-f-json-held-docker.json").replace(
        '"Priority":0', '"Priority":99999999999999999999999'
    )
    assert load_pbs_json(text)["Jobs"]["157.pbs"]["Priority"] == 99999999999999999999999


def test_ids_outside_the_request_are_ignored_and_short_ids_match() -> None:
    statuses = parse_qstat(result(data("qstat-f-json-polaris.json")), ["1147579"], CHICAGO)
    assert list(statuses) == ["1147579"]
    assert statuses["1147579"].scheduler_id == "1147579"
    assert statuses["1147579"].state is PilotState.RUNNING


def test_a_state_that_is_not_definite_is_left_out() -> None:
    text = data("qstat-x-f-json-held-docker.json").replace('"job_state":"H"', '"job_state":"M"')
    assert parse_qstat(result(text), ["157.pbs"]) == {}


@pytest.mark.parametrize(
    ("letter", "state"),
    [
        ("Q", "queued"),
        ("H", "queued"),
        ("W", "queued"),
        ("T", "queued"),
        ("S", "queued"),
        ("R", "running"),
        ("E", "running"),
        ("B", "running"),
        ("F", "finished"),
        ("X", "finished"),
    ],
)
def test_state_letters(letter: str, state: str) -> None:
    job = json.loads(data("qstat-x-f-json-held-docker.json"))["Jobs"]["157.pbs"]
    job["job_state"] = letter
    status = pilot_status("157.pbs", job)
    assert status is not None and status.state == state and status.reason == letter


def test_finished_without_obittime_ends_at_mtime() -> None:
    job = json.loads(data("qstat-x-f-json-held-docker.json"))["Jobs"]["157.pbs"]
    job["job_state"] = "F"  # e.g. deleted while queued: no stime, no obittime, no Exit_status
    status = pilot_status("157.pbs", job, UTC)
    assert status is not None
    assert (status.exit_code, status.start_time) == (None, None)
    assert status.end_time == datetime(2021, 8, 20, 23, 14, 8, tzinfo=UTC)


def test_pbs_time_parsing() -> None:
    assert parse_pbs_time("Sat Dec  3 20:25:38 2022", CHICAGO) == datetime(2022, 12, 4, 2, 25, 38, tzinfo=UTC)
    assert parse_pbs_time("Sun Jul 20 11:46:27 2025", UTC) == datetime(2025, 7, 20, 11, 46, 27, tzinfo=UTC)
    assert parse_pbs_time("", CHICAGO) is None
    assert parse_pbs_time("yesterday", CHICAGO) is None
    local = parse_pbs_time("Sun Jul 20 11:46:27 2025")  # this machine's zone
    assert local is not None and local.tzinfo is UTC


# ---------------------------------------------------------------------------------------------------
# the adapter


BASE_REQUEST = PilotRequest(
    script=Path("pilots/pilot-7.sh"),
    job_name="bb-pilot-7",
    num_nodes=4,
    wall_time_min=90,
    workdir=Path("pilots/7"),
)


def request(**overrides: Any) -> PilotRequest:
    return replace(BASE_REQUEST, **overrides)


def test_submit_minimal_argv() -> None:
    runner = FakeRunner(reply(f"308834{POLARIS}\n"))
    assert PbsScheduler(runner).submit(request()) == f"308834{POLARIS}"
    assert runner.calls == [
        (
            "qsub", "-N", "bb-pilot-7", "-l", "select=4", "-l", "walltime=01:30:00",
            "-o", "pilots/7/", "-j", "oe", "pilots/pilot-7.sh",
        )
    ]  # fmt: skip


def test_submit_full_argv() -> None:
    runner = FakeRunner(reply("157.pbs\n"))
    pilot = request(
        project="XPCS_Analysis",
        queue="debug",
        optional_params={
            "select": "ngpus=4:system=polaris",
            "filesystems": "home:eagle",
            "place": "scatter",
            "-W": "depend=afterok:12",
        },
        environment={"BEAMBRIDGE_SITE": "polaris", "HOSTS": "a,b"},
    )
    assert PbsScheduler(runner).submit(pilot) == "157.pbs"
    assert runner.calls == [
        (
            "qsub", "-N", "bb-pilot-7", "-l", "select=4:ngpus=4:system=polaris", "-l", "walltime=01:30:00",
            "-o", "pilots/7/", "-j", "oe", "-A", "XPCS_Analysis", "-q", "debug",
            "-l", "filesystems=home:eagle", "-l", "place=scatter", "-W", "depend=afterok:12",
            "-v", "BEAMBRIDGE_SITE=polaris,HOSTS='a,b'", "pilots/pilot-7.sh",
        )
    ]  # fmt: skip
    assert qsub_argv(pilot) == list(runner.calls[0])


@pytest.mark.parametrize(
    "message", [data("qsub-unknown-queue.stderr.txt"), *data("qsub-errors-alcf.txt").splitlines()]
)
def test_submit_rejected_names_the_reason(message: str) -> None:
    runner = FakeRunner(reply("", message, 170))
    with pytest.raises(SubmitRejected) as caught:
        PbsScheduler(runner).submit(request(queue="debug5"))
    assert message.strip().removeprefix("qsub: ") in str(caught.value)


@pytest.mark.parametrize(
    "stderr",
    [
        # the PBS client library prints the same words for qsub as for these qstat recordings
        data("qstat-connection-refused.stderr.txt").replace("qstat:", "qsub:"),
        data("qstat-no-route-to-host.stderr.txt").replace("qstat:", "qsub:"),
    ],
)
def test_submit_to_an_unreachable_server_is_unavailable(stderr: str) -> None:
    with pytest.raises(SchedulerUnavailable):
        PbsScheduler(FakeRunner(reply("", stderr, 255))).submit(request())


def test_submit_without_a_job_id_or_with_an_unexplained_failure_is_unavailable() -> None:
    with pytest.raises(SchedulerUnavailable):
        PbsScheduler(FakeRunner(reply("", data("qsub-interactive-polaris.stderr.txt"), 0))).submit(request())
    with pytest.raises(SchedulerUnavailable):
        PbsScheduler(FakeRunner(reply("", "qsub: Error (15031) returned from server", 49))).submit(request())


@pytest.mark.parametrize(
    "error", [CommandTimeout("`qsub` did not finish in 60 s"), FileNotFoundError("qsub")]
)
def test_submit_timeout_or_missing_command_is_unavailable(error: Exception) -> None:
    with pytest.raises(SchedulerUnavailable):
        PbsScheduler(FakeRunner(error)).submit(request())


def test_statuses_runs_one_qstat_over_all_ids() -> None:
    wanted = [*all_ids("qstat-f-json-polaris.json"), f"412635{POLARIS}"]
    runner = FakeRunner(
        reply(data("qstat-f-json-polaris.json"), data("qstat-unknown-job-polaris.stderr.txt"), 153)
    )
    statuses = PbsScheduler(runner, timezone=CHICAGO).statuses(wanted)
    assert runner.calls == [("qstat", "-f", "-F", "json", "-x", *wanted)]
    assert [statuses[i].state for i in wanted] == ["queued", "queued", "running", "finished"]
    assert statuses[f"1147579{POLARIS}"].start_time == datetime(2023, 11, 9, 19, 5, 50, tzinfo=UTC)


def test_statuses_of_nothing_runs_nothing() -> None:
    runner = FakeRunner()
    assert PbsScheduler(runner).statuses([]) == {}
    assert runner.calls == []


def test_statuses_unreachable_or_timeout_is_unavailable() -> None:
    refused = reply(
        data("qstat-connection-refused.stdout.json"), data("qstat-connection-refused.stderr.txt"), 255
    )
    with pytest.raises(SchedulerUnavailable):
        PbsScheduler(FakeRunner(refused)).statuses(["1.pbs"])
    with pytest.raises(SchedulerUnavailable):
        PbsScheduler(FakeRunner(CommandTimeout("slow"))).statuses(["1.pbs"])


@pytest.mark.parametrize(
    ("stderr", "returncode"),
    [
        ("", 0),
        # qdel's wording for these cases (the same "Unknown Job Id" words as qstat's recordings)
        (f"qdel: Job has finished 5487654{POLARIS}", 35),
        (f"qdel: Unknown Job Id 412635{POLARIS}", 153),
    ],
)
def test_cancel_finished_or_unknown_is_fine(stderr: str, returncode: int) -> None:
    runner = FakeRunner(reply("", stderr, returncode))
    PbsScheduler(runner).cancel(f"412635{POLARIS}")
    assert runner.calls == [("qdel", f"412635{POLARIS}")]


def test_cancel_failures_are_unavailable() -> None:
    refused = reply("", data("qstat-connection-refused.stderr.txt").replace("qstat:", "qdel:"), 255)
    with pytest.raises(SchedulerUnavailable):
        PbsScheduler(FakeRunner(refused)).cancel("1.pbs")
    with pytest.raises(SchedulerUnavailable):
        PbsScheduler(FakeRunner(reply("", "qdel: Request invalid for state of job 1.pbs", 168))).cancel(
            "1.pbs"
        )


def test_find_by_name_lists_live_jobs_with_that_name() -> None:
    runner = FakeRunner(reply(data("qstat-f-json-polaris.json")))
    assert PbsScheduler(runner).find_by_name("xgc1_core") == [f"1147579{POLARIS}"]
    assert runner.calls == [("qstat", "-f", "-F", "json")]
    # finished jobs are not re-attached to
    finished = FakeRunner(reply(data("qstat-x-f-json-aurora-finished.json")))
    assert PbsScheduler(finished).find_by_name("aurora_plinko_mov_r2_sim5") == []
    assert PbsScheduler(FakeRunner(reply(data("qstat-f-json-polaris.json")))).find_by_name("nope") == []


def test_find_by_name_failure_is_empty() -> None:
    refused = reply(
        data("qstat-connection-refused.stdout.json"), data("qstat-connection-refused.stderr.txt"), 255
    )
    assert PbsScheduler(FakeRunner(refused)).find_by_name("xgc1_core") == []
    assert PbsScheduler(FakeRunner(CommandTimeout("slow"))).find_by_name("xgc1_core") == []
    assert PbsScheduler(FakeRunner(reply("{garbled"))).find_by_name("xgc1_core") == []


def test_allocation_nodes_from_the_nodefile(tmp_path: Path) -> None:
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("x3006c0s31b1n0\nx3006c0s31b1n0\nx3006c0s37b0n0\n\nx3006c0s37b0n0\nx3006c0s7b0n0\n")
    nodes = PbsScheduler.allocation_nodes({"PBS_NODEFILE": str(nodefile)})
    assert nodes == ["x3006c0s31b1n0", "x3006c0s37b0n0", "x3006c0s7b0n0"]
    assert PbsScheduler.allocation_nodes({}) is None


def test_registry_builds_the_pbs_adapter() -> None:
    scheduler = get_scheduler("pbs", FakeRunner())
    assert isinstance(scheduler, PbsScheduler)
    assert scheduler.name == "pbs"
