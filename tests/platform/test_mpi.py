"""MPI launch command lines, and a real Open MPI run on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from beambridge.platform.mpi import LaunchSpec, MpiLauncher, get_mpi_launcher
from beambridge.platform.mpi.mpich import MpichLauncher
from beambridge.platform.mpi.openmpi import OpenMpiLauncher
from beambridge.platform.mpi.srun import SrunLauncher

CMD = ["python", "-m", "app", "--flag"]


def test_the_registry_knows_the_three_launchers() -> None:
    assert isinstance(get_mpi_launcher("mpirun"), OpenMpiLauncher)
    assert isinstance(get_mpi_launcher("mpiexec"), MpichLauncher)
    assert isinstance(get_mpi_launcher("srun"), SrunLauncher)
    launcher = get_mpi_launcher("srun", "/opt/slurm/bin/srun", ["--mpi=pmix"])
    assert launcher.argv(LaunchSpec(["a"], ["n1"]))[0] == "/opt/slurm/bin/srun"
    with pytest.raises(ValueError, match="known: mpirun, mpiexec, srun"):
        get_mpi_launcher("aprun")


def test_openmpi_argv() -> None:
    launcher = OpenMpiLauncher(extra_args=["--mca", "btl", "self,vader"], allow_run_as_root=False)
    spec = LaunchSpec(CMD, ["n1", "n2"], ranks_per_node=4, threads_per_rank=2, environment={"A": "x,y z"})
    assert launcher.argv(spec) == [
        "mpirun",
        "-n",
        "8",
        "--map-by",
        "ppr:4:node",
        "--host",
        "n1:4,n2:4",
        "--bind-to",
        "none",
        "--oversubscribe",
        "-x",
        "OMP_NUM_THREADS=2",
        "-x",
        "A=x,y z",
        "--mca",
        "btl",
        "self,vader",
        *CMD,
    ]


def test_openmpi_as_root_and_repeated_hosts() -> None:
    launcher = OpenMpiLauncher("/usr/bin/mpirun", allow_run_as_root=True)
    argv = launcher.argv(LaunchSpec(["hostname"], ["localhost"] * 3, ranks_per_node=2))
    assert argv[:7] == ["/usr/bin/mpirun", "-n", "6", "--map-by", "slot", "--host", "localhost:6"]
    assert "--allow-run-as-root" in argv
    assert argv[-1] == "hostname"
    assert OpenMpiLauncher().allow_run_as_root == (os.geteuid() == 0)


def test_the_spec_environment_wins_over_the_thread_count() -> None:
    spec = LaunchSpec(["a"], ["n1"], threads_per_rank=4, environment={"OMP_NUM_THREADS": "1"})
    argv = OpenMpiLauncher(allow_run_as_root=False).argv(spec)
    assert "OMP_NUM_THREADS=1" in argv and "OMP_NUM_THREADS=4" not in argv


def test_mpich_argv() -> None:
    spec = LaunchSpec(CMD, ["x1", "x2", "x3"], ranks_per_node=4, threads_per_rank=8, environment={"A": "1"})
    assert MpichLauncher().argv(spec) == [
        "mpiexec",
        "-n",
        "12",
        "--ppn",
        "4",
        "--hosts",
        "x1,x2,x3",
        "--depth",
        "8",
        "--cpu-bind",
        "depth",
        "--env",
        "OMP_NUM_THREADS=8",
        "--env",
        "A=1",
        *CMD,
    ]
    merged = MpichLauncher().argv(LaunchSpec(["a"], ["localhost", "localhost"], ranks_per_node=3))
    assert merged[:7] == ["mpiexec", "-n", "6", "--ppn", "6", "--hosts", "localhost"]
    with pytest.raises(ValueError, match="same number of slots"):
        MpichLauncher().argv(LaunchSpec(["a"], ["a", "a", "b"]))


def test_srun_argv() -> None:
    spec = LaunchSpec(
        CMD,
        ["nid1", "nid2"],
        ranks_per_node=4,
        threads_per_rank=16,
        gpus_per_rank=1,
        environment={"A": "1", "HOSTS": "a,b"},
    )
    assert SrunLauncher(extra_args=["--mpi=pmix"]).argv(spec) == [
        "srun",
        "-N",
        "2",
        "-n",
        "8",
        "--ntasks-per-node",
        "4",
        "--cpus-per-task",
        "16",
        "--nodelist",
        "nid1,nid2",
        "--overlap",
        "--export=ALL,OMP_NUM_THREADS=16,A=1",
        "--gpus-per-task",
        "1",
        "--mpi=pmix",
        # Slurm splits --export at commas: such a value goes through `env` instead.
        "env",
        "HOSTS=a,b",
        *CMD,
    ]
    fractional = SrunLauncher().argv(LaunchSpec(["a"], ["n1"], gpus_per_rank=0.5))
    assert not any(arg.startswith("--gpus") for arg in fractional)
    assert fractional[-1] == "a"


@pytest.mark.parametrize("launcher", [OpenMpiLauncher(), MpichLauncher(), SrunLauncher()])
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (LaunchSpec([], ["n1"]), "no command"),
        (LaunchSpec(["a"], []), "no nodes"),
        (LaunchSpec(["a"], ["n1"], ranks_per_node=0), "ranks_per_node"),
        (LaunchSpec(["a"], ["n1"], threads_per_rank=0), "threads_per_rank"),
        (LaunchSpec(["a"], ["n1"], gpus_per_rank=-1), "gpus_per_rank"),
    ],
)
def test_impossible_specs_are_refused(launcher: MpiLauncher, spec: LaunchSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        launcher.argv(spec)


@pytest.fixture
def mpirun() -> str:
    path = shutil.which("mpirun")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs Open MPI's mpirun (scripts/system-deps.sh installs openmpi-bin)")
        pytest.skip("Open MPI's mpirun is not installed here (in CI this is an error)")
    return path


# each rank writes its own file: ranks printing to one shared stdout interleave their lines
WRITE_RANK = (
    "import os, pathlib; r = os.environ['OMPI_COMM_WORLD_RANK']; "
    "pathlib.Path(f'rank{r}.txt').write_text(' '.join(['rank', r, os.environ['OMP_NUM_THREADS'], os.environ['BB_TEST']]))"
)


@pytest.mark.parametrize(("nodes", "ranks_per_node"), [(["localhost"], 2), (["localhost", "localhost"], 1)])
def test_a_real_open_mpi_run(mpirun: str, nodes: list[str], ranks_per_node: int, tmp_path: Path) -> None:
    spec = LaunchSpec(
        [sys.executable, "-c", WRITE_RANK],
        nodes,
        ranks_per_node=ranks_per_node,
        threads_per_rank=3,
        environment={"BB_TEST": "seen"},
    )
    argv = OpenMpiLauncher(mpirun).argv(spec)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    written = sorted(path.read_text() for path in tmp_path.glob("rank*.txt"))
    assert written == ["rank 0 3 seen", "rank 1 3 seen"]
