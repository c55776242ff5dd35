"""Starting points for ``site init --platform``: generic schedulers and four well-known machines.

Each template is a partial ``site.yml``; ``site init`` fills in the name, server and site id. The
figures (cores, GPUs, launchers, queue names, module lines) are what each facility documents; edit the
file after ``init`` for your project and allocation.
"""

from __future__ import annotations

from typing import Any

PLATFORM_TEMPLATES: dict[str, dict[str, Any]] = {
    "local": {
        "scheduler": "local",
        "launcher": {"mpi_launcher": "mpirun", "idle_timeout_s": 30},
        "elastic_queue": {"max_nodes": 1, "max_total_nodes": 1, "max_queued_jobs": 1, "wall_time_min": 60},
    },
    "slurm": {
        "scheduler": "slurm",
        "launcher": {"mpi_launcher": "srun"},
        "elastic_queue": {"queue": "debug", "max_nodes": 4, "max_total_nodes": 8, "wall_time_min": 30},
    },
    "pbs": {
        "scheduler": "pbs",
        "launcher": {"mpi_launcher": "mpiexec"},
        "elastic_queue": {"queue": "debug", "max_nodes": 2, "max_total_nodes": 4, "wall_time_min": 30},
    },
    "lsf": {
        "scheduler": "lsf",
        "launcher": {"mpi_launcher": "mpirun"},
        "elastic_queue": {"queue": "batch", "max_nodes": 2, "max_total_nodes": 4, "wall_time_min": 30},
    },
    # NERSC Perlmutter GPU nodes: 64 cores, 4 A100s, Slurm, srun.
    "perlmutter": {
        "scheduler": "slurm",
        "setup_lines": ["module load python"],
        "launcher": {"mpi_launcher": "srun", "cores_per_node": 64, "gpus_per_node": 4},
        "elastic_queue": {
            "queue": "debug",
            "max_nodes": 4,
            "max_total_nodes": 8,
            "wall_time_min": 30,
            "optional_params": {"constraint": "gpu", "qos": "debug"},
        },
    },
    # ALCF Polaris: 32 cores, 4 A100s, PBS Pro, Cray PALS mpiexec.
    "polaris": {
        "scheduler": "pbs",
        "setup_lines": ["module use /soft/modulefiles", "module load conda"],
        "launcher": {"mpi_launcher": "mpiexec", "cores_per_node": 32, "gpus_per_node": 4},
        "elastic_queue": {
            "queue": "debug",
            "max_nodes": 2,
            "max_total_nodes": 2,
            "wall_time_min": 60,
            "optional_params": {"filesystems": "home:eagle"},
        },
    },
    # ALCF Aurora: 104 cores, 6 Intel GPUs (12 tiles), PBS Pro, mpiexec.
    "aurora": {
        "scheduler": "pbs",
        "setup_lines": ["module load frameworks"],
        "launcher": {
            "mpi_launcher": "mpiexec",
            "cores_per_node": 104,
            "gpus_per_node": 12,
            "gpu_variable": "ZE_AFFINITY_MASK",
        },
        "elastic_queue": {
            "queue": "debug",
            "max_nodes": 2,
            "max_total_nodes": 2,
            "wall_time_min": 60,
            "optional_params": {"filesystems": "home:flare"},
        },
    },
    # OLCF Frontier: 56 usable cores, 8 MI250X GCDs, Slurm, srun.
    "frontier": {
        "scheduler": "slurm",
        "setup_lines": ["module load cray-python"],
        "launcher": {
            "mpi_launcher": "srun",
            "cores_per_node": 56,
            "gpus_per_node": 8,
            "gpu_variable": "ROCR_VISIBLE_DEVICES",
        },
        "elastic_queue": {"queue": "batch", "max_nodes": 4, "max_total_nodes": 8, "wall_time_min": 30},
    },
}
