"""NodePool: packing single-node jobs, whole nodes for MPI jobs, CPU and GPU ids."""

from __future__ import annotations

from dataclasses import dataclass

from beambridge.launcher.jobs import command_argv
from beambridge.launcher.resources import NodePool


@dataclass
class Need:
    num_nodes: int = 1
    ranks_per_node: int = 1
    gpus_per_rank: float = 0
    node_packing_count: int = 1


def test_packed_jobs_share_nodes_and_get_disjoint_cpus() -> None:
    pool = NodePool(["a", "b"], cores_per_node=8, gpus_per_node=4)
    placed = [pool.place(Need(node_packing_count=4, gpus_per_rank=1)) for _ in range(8)]
    assert all(p is not None for p in placed)
    assert pool.place(Need(node_packing_count=4)) is None
    assert not pool.has_room()
    on_a = [p for p in placed if p and p.node_indexes == (0,)]
    assert len(on_a) == 4  # the fullest node that fits is filled first
    cpus = [c for p in on_a for c in p.cpu_ids]
    assert sorted(cpus) == list(range(8)) and all(len(p.gpu_ids) == 1 for p in on_a)
    pool.release(on_a[0])
    again = pool.place(Need(node_packing_count=4))
    assert again is not None and again.node_indexes == (0,) and set(again.cpu_ids) == set(on_a[0].cpu_ids)


def test_multi_node_jobs_need_wholly_free_nodes() -> None:
    pool = NodePool(["a", "b", "c"], cores_per_node=4)
    small = pool.place(Need(node_packing_count=2))
    assert small is not None
    assert pool.place(Need(num_nodes=3)) is None
    big = pool.place(Need(num_nodes=2))
    assert big is not None and big.node_indexes == (1, 2)
    assert pool.free_fractions() == [0.5, 0.0, 0.0]
    pool.release(big)
    pool.release(small)
    assert pool.idle()


def test_plain_commands_skip_the_shell_and_the_rest_use_bash() -> None:
    assert command_argv("true", []) == ["true"]
    assert command_argv("echo 'a b' c", []) == ["echo", "a b", "c"]
    assert command_argv("echo a > f", []) == ["bash", "-c", "echo a > f"]
    assert command_argv("run $HOME", []) == ["bash", "-c", "run $HOME"]
    assert command_argv("true", ["module load x"]) == ["bash", "-c", "module load x\ntrue"]
