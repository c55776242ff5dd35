"""An XPCS job over two Slurm nodes: the pilot's MPI launcher (Open MPI's mpirun inside the pilot's
allocation) starts four ranks of the XpcsMultiTau app, two on each of two fake nodes of the tests' own
Slurm; the ranks share the pixels and rank 0 writes the result, the same bits as one process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from beambridge.states import JobState
from beambridge.xpcs.pipeline import run_multitau
from beambridge.xpcs.simulate import SpeckleParameters, simulate_speckle
from tests.servers import unavailable
from tests.site.harness import System
from tests.slurm_cluster import SlurmCluster
from tests.xpcs.test_mpi import datasets, mpirun

pytestmark = [pytest.mark.xdist_group("slurm"), pytest.mark.slow]

# fake nodes share one machine: Open MPI's shared-memory transport crashes between them, so the ranks
# talk TCP, on the loopback interface only
LOOPBACK_TCP = [
    "--mca",
    "btl",
    "tcp,self",
    "--mca",
    "btl_tcp_if_include",
    "lo",
    "--mca",
    "oob_tcp_if_include",
    "lo",
]


def test_xpcs_job_over_two_slurm_nodes_gives_the_same_bits_as_one_process(
    system: System, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    mpirun()  # Open MPI must be there (an error in CI)
    if len(slurm_cluster.nodes) < 2:
        unavailable(f"the Slurm cluster has {len(slurm_cluster.nodes)} node(s); this test needs two")
    params = SpeckleParameters(
        shape=(128, 128), n_frames=200, photons_per_pixel=0.3, beam_center=(64, 64), r_min=8, r_max=60, seed=5
    )
    paths = simulate_speckle(tmp_path / "raw.h5", params)
    reference = tmp_path / "one-process.hdf"
    run_multitau(paths["raw"], paths["qmap"], reference, mpi=False)  # also warms numba's cache

    site, config = system.make_site(
        "slurm-xpcs-mpi",
        "slurm",
        launcher={
            "cores_per_node": 4,
            "idle_timeout_s": 4,
            "mpi_launcher": "mpirun",
            "mpi_args": LOOPBACK_TCP,
        },
        elastic_queue={
            "queue": slurm_cluster.partition,
            "job_mode": "mpi",
            "max_nodes": 2,
            "max_total_nodes": 2,
            "max_queued_jobs": 1,
            "wall_time_min": 10,
        },
    )
    shutil.copy(Path(__file__).with_name("apps_e2e.py"), site.apps / "e2e.py")  # what app_ids waits for
    system.start_agent(site)
    apps = system.app_ids(config.site_id)
    (job,) = system.client.jobs.bulk_create(
        [
            {
                "app_id": apps["XpcsMultiTau"],
                "workdir": "xpcs/mpi",
                "num_nodes": 2,
                "ranks_per_node": 2,
                "parameters": {"raw": paths["raw"], "qmap": paths["qmap"], "output": "result.hdf"},
            }
        ]
    )
    (done,) = system.wait_all([job.id], timeout_s=420, poll_s=1)
    assert done.state == JobState.JOB_FINISHED, system.logs()
    assert isinstance(done.result, dict)
    assert done.result["mpi_ranks"] == 4, done.result
    per_host = done.result["mpi_ranks_per_host"]
    assert isinstance(per_host, dict) and sorted(per_host.values()) == [2, 2], per_host
    assert set(per_host) <= set(slurm_cluster.nodes), per_host  # two different Slurm nodes

    got, want = datasets(site.data / "xpcs/mpi/result.hdf"), datasets(reference)
    assert got.keys() == want.keys()
    assert [key for key in want if got[key] != want[key]] == []
