"""Apps for the end-to-end tests (copied into a site's apps folder)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from beambridge.apps.base import ApplicationDefinition
from beambridge.schemas.apps import TransferDirection, TransferSlot
from beambridge.states import JobState


class Hello(ApplicationDefinition):
    """Say hello."""

    command_template = "echo hello, {{ name }}"


class Add(ApplicationDefinition):
    """Add two numbers."""

    def run(self, a: float, b: float) -> float:
        return a + b


class Fail(ApplicationDefinition):
    """Exit with the given code."""

    command_template = "echo failing >&2; exit {{ code }}"


class Sleep(ApplicationDefinition):
    """Sleep (for wall-time and kill tests); records each start in the workdir."""

    command_template = "echo start >> starts.txt; sleep {{ seconds }}; echo done >> done.txt"


class MpiRanks(ApplicationDefinition):
    """Each rank writes its rank and host (an MPI job)."""

    command_template = 'echo "rank=${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-${SLURM_PROCID:-0}}} node=${SLURMD_NODENAME:-$(hostname)}" >> ranks.txt'


class Retried(ApplicationDefinition):
    """Fails on its first run; its handle_error asks for one more; the second run succeeds."""

    command_template = "if [ -e first-run ]; then echo ok; else touch first-run; exit 7; fi"

    def handle_error(self) -> JobState:
        if self.job.retry_count < self.job.retry_limit:
            self.state_data["reason"] = "retrying once"
            return JobState.RESTART_READY
        return JobState.FAILED


def _counted_run(succeed_on: int) -> int:
    runs = Path("runs.txt")
    count = (int(runs.read_text()) if runs.exists() else 0) + 1
    runs.write_text(str(count))
    print(f"run {count} of a counted app")
    if count < succeed_on:
        raise RuntimeError(f"run {count} failed on purpose")
    return count


class Flaky(ApplicationDefinition):
    """A Python app that raises until its ``succeed_on``-th run (it counts its runs in the workdir)."""

    def run(self, succeed_on: int) -> int:
        return _counted_run(succeed_on)


class Fragile(ApplicationDefinition):
    """Like Flaky, but a failed run must not be repeated automatically."""

    retry_on_error = False

    def run(self, succeed_on: int) -> int:
        return _counted_run(succeed_on)


class Post(ApplicationDefinition):
    """Writes a file; its postprocess reads it back into a marker, and cleans scratch files."""

    command_template = "echo 42 > answer.txt; echo scratch > scratch.tmp"
    cleanup_files: ClassVar[list[str]] = ["*.tmp"]

    def postprocess(self) -> JobState:
        answer = (self.workdir / "answer.txt").read_text().strip()
        (self.workdir / "postprocessed.txt").write_text(answer)
        self.state_data["answer"] = answer
        return JobState.POSTPROCESSED


class WhereAmI(ApplicationDefinition):
    """Python app reporting its environment (affinity variables)."""

    def run(self) -> dict[str, str]:
        keys = ("BEAMBRIDGE_JOB_ID", "BEAMBRIDGE_CPU_IDS", "OMP_NUM_THREADS", "BEAMBRIDGE_NODES")
        return {key: os.environ.get(key, "") for key in keys} | {"cwd": Path.cwd().name}


class Count(ApplicationDefinition):
    """Counts the bytes of its input into its output (both staged)."""

    command_template = "wc -c < raw.dat > result.txt"
    transfer_slots: ClassVar[dict[str, TransferSlot]] = {
        "raw": TransferSlot(direction=TransferDirection.IN, local_path="raw.dat"),
        "result": TransferSlot(direction=TransferDirection.OUT, local_path="result.txt"),
    }
