"""One dataset over several MPI ranks (real ``mpirun``, Open MPI): the same bits as one process.

Every rank reads only the detector rows of its pixels and correlates them; the bin sums are added in
the single process's order across ranks (``beambridge.xpcs.mpi``). The result files of 1, 2, 3 and 4
ranks must agree in every byte of every dataset: g2, its jackknife covariance and error bar,
XPCS-Eigen's pixel-spread error bar, intensities, frame sums.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from beambridge.xpcs.io.hdf5 import Hdf5Frames
from beambridge.xpcs.mpi import RowSlab, plan
from beambridge.xpcs.multitau.bins import CHUNK_PIXELS, chunk_bounds
from beambridge.xpcs.pipeline import _labels, run_multitau
from beambridge.xpcs.qmap import read_qmap
from beambridge.xpcs.simulate import SpeckleParameters, simulate_speckle
from tests.servers import IN_CI

pytestmark = pytest.mark.slow


def mpirun() -> str:
    path = shutil.which("mpirun")
    if path is None:
        if IN_CI:
            pytest.fail("CI needs Open MPI's mpirun (scripts/system-deps.sh installs openmpi-bin)")
        pytest.skip("Open MPI's mpirun is not installed here (in CI this is an error)")
    return path


def mpi_corr(ranks: int, raw: Path, qmap: Path, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``mpirun -n RANKS beambridge xpcs corr …`` (the command line, as a user starts it)."""
    argv = [mpirun(), "-n", str(ranks), "--oversubscribe", "--bind-to", "none"]
    # ranks on one machine: shared memory between them, and Open MPI's own daemon traffic on loopback only
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMPI_MCA_btl": "self,vader"}
    env.update(OMPI_MCA_oob_tcp_if_include="lo", OMPI_MCA_btl_tcp_if_include="lo")
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    # the console script, as a user types it, with the warm worker allowed (the tests' default turns it
    # off): a rank must never hand its job to the worker, which is no rank of the job
    runtime = Path(tempfile.mkdtemp(prefix="bbw-mpi-"))
    runtime.chmod(0o700)
    env.update(BEAMBRIDGE_XPCS_WORKER="1", BEAMBRIDGE_RUNTIME_DIR=str(runtime))
    argv += [str(Path(sys.executable).with_name("beambridge")), "xpcs", "corr", str(raw)]
    argv += ["--qmap", str(qmap), "-o", str(out), *options]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
        started = sorted(path.name for path in runtime.iterdir())
        assert started == [], f"a rank started or used a warm worker: {started}"
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    return done


def datasets(path: Path) -> dict[str, bytes]:
    """Every dataset's bytes (and dtype/shape), except the wall-clock start time."""
    found: dict[str, bytes] = {}
    with h5py.File(path) as f:

        def visit(name: str, node: object) -> None:
            if isinstance(node, h5py.Dataset) and name != "entry/start_time":
                value = np.asarray(node[()])
                found[name] = f"{value.dtype}{value.shape}".encode() + value.tobytes()

        f.visititems(visit)
    return found


@pytest.fixture(scope="module")
def speckle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """128² × 300 frames at 0.3 photons/pixel/frame: 11,096 analysed pixels, 11 chunks."""
    tmp = tmp_path_factory.mktemp("mpi")
    params = SpeckleParameters(
        shape=(128, 128), n_frames=300, photons_per_pixel=0.3, beam_center=(64, 64), r_min=8, r_max=60, seed=1
    )
    paths = simulate_speckle(tmp / "raw.h5", params)
    # the same rings, each also owning five pixels scattered down the detector (rows 0, 25, … 100): a
    # pixel group of the jackknife then has pixels in several ranks' chunks, whose float sums differ in
    # their last bits unless added in one order (a reduction by rank totals fails this case)
    qm = read_qmap(paths["qmap"])
    sq, dq = qm.sqmap.copy(), qm.dqmap.copy()
    for s in range(1, qm.n_static + 1):
        d = dq[sq == s][0]
        for k, row in enumerate(range(0, 128, 25)):
            col = (3 * s + 41 * k) % 128
            sq[row, col], dq[row, col] = s, d
    scattered = dataclasses.replace(qm, sqmap=sq, dqmap=dq, mask=((sq > 0) & (dq > 0)).astype(np.uint8))
    with h5py.File(tmp / "scattered_qmap.h5", "w") as f:
        scattered.write_group(f.create_group("qmap"))
    return {"raw": Path(paths["raw"]), "qmap": Path(paths["qmap"]), "scattered": tmp / "scattered_qmap.h5",
            "dir": tmp}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "qmap", "options", "ranks"),
    [
        ("counts", "qmap", ["--pixel-spread"], (2, 3, 4)),
        # float frames (dark subtraction, averaging) over scattered bins: sums that only an ordered
        # reduction repeats
        ("float", "scattered", ["--dark", "0:10", "--frames", "10:", "--avg", "2", "--pixel-spread"], (4,)),
        ("events", "qmap", ["--mode", "sparse", "--pixel-spread"], (3,)),
    ],
)
def test_ranks_give_the_same_bits_as_one_process(
    speckle: dict[str, Path], name: str, qmap: str, options: list[str], ranks: tuple[int, ...]
) -> None:
    tmp = speckle["dir"]
    one = tmp / f"{name}-1.hdf"
    single = subprocess.run(
        [sys.executable, "-m", "beambridge.cli.main", "xpcs", "corr", str(speckle["raw"]), "--qmap",
         str(speckle[qmap]), "-o", str(one), "--no-mpi", *options],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    reference = datasets(one)
    assert "xpcs/multitau/normalized_g2_cov" in reference
    assert "xpcs/multitau/normalized_g2_err_pixel_spread" in reference
    for n in ranks:
        out = tmp / f"{name}-{n}.hdf"
        done = mpi_corr(n, speckle["raw"], speckle[qmap], out, *options)
        assert done.returncode == 0, done.stderr
        assert f"over {n} MPI ranks" in done.stdout, done.stdout  # rank 0 alone reports
        assert done.stdout.count("wrote ") == 1, done.stdout
        got = datasets(out)
        assert got.keys() == reference.keys()
        differ = [key for key in reference if got[key] != reference[key]]
        assert differ == [], f"{n} ranks: {differ}"


def test_options_that_need_whole_frames_are_refused_once_with_a_clear_error(speckle: dict[str, Path]) -> None:
    out = speckle["dir"] / "refused.hdf"
    done = mpi_corr(2, speckle["raw"], speckle["qmap"], out, "--twotime", "1")
    assert done.returncode != 0
    assert done.stderr.count("error: two-time maps need whole frames") == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_ranks_share_whole_chunks_in_order_and_read_only_their_rows(speckle: dict[str, Path]) -> None:
    qm = read_qmap(speckle["qmap"])
    pixels, labels = _labels(qm)
    bounds = chunk_bounds(labels, n_tau=30, n_seg=10)
    assert bounds.size - 1 == -(-pixels.size // CHUNK_PIXELS)  # 11 chunks of ≤ 1,024 pixels
    reader = Hdf5Frames(speckle["raw"])
    try:
        whole = reader.read_dense(5, 9)
        for ranks in (1, 2, 3, 4, 12, 13):
            shares = plan(pixels, bounds, ranks, qm.shape[1])
            assert next(s.chunks for s in shares)[0] == 0 and shares[-1].chunks[1] == bounds.size - 1
            assert all(a.chunks[1] == b.chunks[0] for a, b in itertools.pairwise(shares))
            busy = [s for s in shares if not s.idle]
            assert len(busy) == min(ranks, bounds.size - 1)
            assert all(s.idle for s in shares[len(busy) :])  # spare ranks only at the end
            for s in busy:
                r0, r1 = s.rows
                rows_of_pixels = pixels[s.lo : s.hi] // qm.shape[1]
                assert r0 == rows_of_pixels.min() and r1 == rows_of_pixels.max() + 1
                slab = RowSlab(reader, s.rows).read_dense(5, 9)
                assert slab.shape == (4, r1 - r0, qm.shape[1])
                assert np.array_equal(slab, whole[:, r0:r1])
    finally:
        reader.close()


def test_one_rank_is_an_ordinary_run(speckle: dict[str, Path]) -> None:
    out = speckle["dir"] / "one-rank.hdf"
    summary = run_multitau(speckle["raw"], speckle["qmap"], out, mpi=True)
    assert "mpi_ranks" not in summary
    assert json.loads(json.dumps(summary))["frames"] == 300
