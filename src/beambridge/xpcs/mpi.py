"""One dataset correlated by several MPI ranks, with the same bits as one process.

The analysed pixels are cut into the chunks that :class:`~beambridge.xpcs.multitau.bins.BinPartials`
uses anyway (a function of the shapes only: :func:`~beambridge.xpcs.multitau.bins.chunk_pixels`), and
every rank takes a run of whole chunks (:func:`plan`). A rank reads only the detector rows that hold
its pixels (:class:`RowSlab`: HDF5 reads that row slab of each block of frames), correlates them, and
computes its chunks' partial bin sums exactly as a single process computes those chunks: the same
pixels, in the same order, from the same zero. What one process then does with all chunks is repeated
across ranks (:func:`reduce_g2`):

* the static-bin sums behind g2, its jackknife covariance and the intensities are the chunks' sums
  added **in chunk order** (:func:`~beambridge.xpcs.multitau.bins.fold`); rank r receives the running
  sum of the chunks before its own from rank r − 1, adds its chunks one by one and passes it on, so
  the additions are the single process's, in its order. Counts are summed in integers (exact in any
  order); float frames (dark, flat field, averaging) need the order, and get it;
* the per-chunk sums of XPCS-Eigen's error bar, each pixel's mean and the per-group frame sums are
  gathered on rank 0 in rank order, which is chunk order, and merged there by the single process's
  own code.

An all-reduce (MPI_SUM) would have been simpler, but its order of additions is the MPI library's
(and changes with the number of ranks), so float sums would differ in their last bits from one
process's; gathering every pixel's G2/IP/IF instead would move hundreds of megabytes at 1 Mpx. The
ordered fold moves one set of bin sums per rank (a few MB) and costs one hop per rank.

Rank 0 writes the result file; every rank returns the same summary. Two-time maps, frame-sum
normalisation and following a growing file need whole frames and are refused in MPI mode.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from beambridge.xpcs.errors import OptionError
from beambridge.xpcs.events import Events
from beambridge.xpcs.io.base import FrameReader
from beambridge.xpcs.mpi_launch import launched_ranks
from beambridge.xpcs.multitau.bins import BinPartials, G2Result, fold


def world(mpi: bool | None = None) -> Any | None:
    """MPI's world communicator when this process is one of several ranks, else None.

    ``mpi=None`` decides from the launcher's variables (a run under ``mpirun -n 4`` is MPI), ``True``
    asks for MPI (one rank is then an ordinary run), ``False`` never touches MPI.

    Raises:
        OptionError: MPI is wanted but mpi4py (or an MPI library) is missing, or the launcher started
            several processes that MPI does not see as one job (``srun`` without ``--mpi=pmix``).
    """
    if mpi is False:
        return None
    expected = launched_ranks()
    if mpi is None and expected <= 1:
        return None
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as exc:  # no mpi4py, or no MPI library for it
        raise OptionError(
            f"MPI mode needs mpi4py and an MPI library ({exc}); install beambridge[mpi]"
        ) from None
    comm = MPI.COMM_WORLD
    if comm.Get_size() < expected:
        raise OptionError(
            f"the launcher started {expected} processes but MPI sees {comm.Get_size()}: "
            "start them with an MPI launcher (mpirun, or srun --mpi=pmix)"
        )
    return comm if comm.Get_size() > 1 else None


def this_rank() -> int:
    """This process's MPI rank if MPI has been started here (by :func:`world`), else 0."""
    mod = sys.modules.get("mpi4py.MPI")
    if mod is None or not mod.Is_initialized() or mod.Is_finalized():
        return 0
    rank: int = mod.COMM_WORLD.Get_rank()
    return rank


@dataclass(frozen=True)
class Share:
    """What one rank correlates: analysed pixels ``pixels[lo:hi]`` (whole chunks ``chunks``), held in
    detector rows ``rows`` (start, stop)."""

    rank: int
    lo: int
    hi: int
    chunks: tuple[int, int]
    rows: tuple[int, int]

    @property
    def idle(self) -> bool:
        """A rank without pixels (more ranks than chunks)."""
        return self.hi == self.lo


def plan(pixels: npt.NDArray[np.int64], bounds: npt.NDArray[np.int64], ranks: int, width: int) -> list[Share]:
    """Cut the chunks ``bounds`` (first pixel of each chunk and the end) into ``ranks`` runs of whole
    chunks with about equal pixel counts, in order; ranks beyond the number of chunks get none.

    ``pixels`` are the analysed pixels' flat detector indices (sorted), ``width`` the detector's row
    length: each rank's rows are those from its first pixel's to its last's."""
    n_chunks = bounds.size - 1
    active = max(1, min(ranks, n_chunks))
    cuts = [0]
    for r in range(1, active):
        nearest = int(np.abs(bounds - bounds[-1] * r / active).argmin())
        cuts.append(min(max(nearest, cuts[-1] + 1), n_chunks - (active - r)))
    cuts += [n_chunks] * (ranks - active + 1)
    shares = []
    for r in range(ranks):
        c0, c1 = cuts[r], cuts[r + 1]
        lo, hi = int(bounds[c0]), int(bounds[c1])
        rows = (int(pixels[lo]) // width, int(pixels[hi - 1]) // width + 1) if hi > lo else (0, 0)
        shares.append(Share(r, lo, hi, (int(c0), int(c1)), rows))
    return shares


class RowSlab:
    """Rows ``r0 … r1-1`` of every frame of ``reader``: a :class:`FrameReader` of shape (r1 - r0, W).

    HDF5 reads only the slab (``read_rows``); other formats read whole frames and keep the rows."""

    def __init__(self, reader: FrameReader, rows: tuple[int, int]) -> None:
        self._reader = reader
        self.rows = rows
        self.path = reader.path
        self.n_frames = reader.n_frames
        self.is_sparse = reader.is_sparse
        self.frame_time = reader.frame_time
        self.count_time = reader.count_time
        self.sample = getattr(reader, "sample", None)
        self.full_shape = reader.shape
        self.shape = (rows[1] - rows[0], reader.shape[1])

    def read_dense(self, start: int, stop: int) -> npt.NDArray[np.generic]:
        """Frames ``start … stop-1`` of the slab, shape (stop-start, r1-r0, W)."""
        read_rows = getattr(self._reader, "read_rows", None)
        if read_rows is not None:
            out: npt.NDArray[np.generic] = read_rows(start, stop, *self.rows)
            return out
        return np.ascontiguousarray(self._reader.read_dense(start, stop)[:, self.rows[0] : self.rows[1]])

    def read_events(self, start: int, stop: int) -> Events:
        """The events of the slab's pixels (indices within the slab)."""
        ptr, pixel, value = self._reader.read_events(start, stop)
        first, end = self.rows[0] * self.shape[1], self.rows[1] * self.shape[1]
        keep = (pixel >= first) & (pixel < end)
        kept = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
        return kept[np.asarray(ptr, dtype=np.int64)], pixel[keep] - first, value[keep]

    def close(self) -> None:
        """Close the file."""
        self._reader.close()


POLL_MAX_S = 0.005
"""Longest pause between two looks at a message a rank waits for (see :func:`recv`)."""
TAG_FOLD, TAG_GATHER, TAG_SUMMARY = 1, 2, 3


def _wait(request: Any) -> Any:
    """Wait for a non-blocking operation by testing it with pauses: a waiting rank leaves the cores to
    the ranks still working (MPI's own waits spin, which with more ranks than idle cores, or on a shared
    node, takes the CPU from the very rank being waited for)."""
    delay = 1e-4
    while True:
        done, value = request.test()
        if done:
            return value
        time.sleep(delay)
        delay = min(2 * delay, POLL_MAX_S)


def send(comm: Any, obj: Any, dest: int, tag: int) -> None:
    """``comm.send`` that waits politely (:func:`_wait`)."""
    _wait(comm.isend(obj, dest=dest, tag=tag))


def recv(comm: Any, source: int, tag: int) -> Any:
    """``comm.recv`` that waits politely for the message to arrive (:func:`_wait`)."""
    delay = 1e-4
    while not comm.iprobe(source=source, tag=tag):
        time.sleep(delay)
        delay = min(2 * delay, POLL_MAX_S)
    return comm.recv(source=source, tag=tag)


def share_summary(comm: Any, summary: dict[str, Any] | None) -> dict[str, Any]:
    """Rank 0's ``summary`` on every rank (rank 0 passes it, the others ``None``)."""
    if comm.Get_rank() == 0:
        assert summary is not None
        for dest in range(1, comm.Get_size()):
            send(comm, summary, dest, TAG_SUMMARY)
        return summary
    got: dict[str, Any] = recv(comm, 0, TAG_SUMMARY)
    return got


def reduce_g2(
    comm: Any,
    partials: BinPartials | None,
    frame_sum_parts: np.ndarray | None,
    tau: np.ndarray,
    spread: bool,
) -> tuple[G2Result, dict[str, int]] | None:
    """g2 of all ranks' chunks on rank 0, with how many ranks ran on each host (None on the others): the bin sums folded in rank order,
    the per-chunk and per-pixel rest gathered in rank order (see the module's docstring). Every rank
    calls it, an idle one with ``None``s."""
    rank, size = comm.Get_rank(), comm.Get_size()
    # the ring: 0 → 1 → … → size-1 → 0, each adding its chunks onto the running sum (one hop at a time,
    # so no send waits on a rank that is itself waiting elsewhere)
    running = recv(comm, rank - 1, TAG_FOLD) if rank > 0 else None
    if partials is not None:
        running = partials.folded(running)
    send(comm, running, (rank + 1) % size, TAG_FOLD)
    mine = None
    if partials is not None and frame_sum_parts is not None:
        mine = (partials.dynamic_sums, partials.valid, partials.pixel_mean, frame_sum_parts)
    if rank != 0:
        send(comm, (mine, host_name()), 0, TAG_GATHER)
        return None
    running = recv(comm, size - 1, TAG_FOLD)
    gathered = [(mine, host_name())] + [recv(comm, r, TAG_GATHER) for r in range(1, size)]
    assert partials is not None and running is not None, "rank 0 always holds the first chunk"
    static_sums, static_intensity = running
    hosts: dict[str, int] = {}
    for _, host in gathered:
        hosts[host] = hosts.get(host, 0) + 1
    parts = [g for g, _ in gathered if g is not None]
    frame_sum = fold(np.concatenate([g[3] for g in parts])).astype(np.float64)
    result = partials.result(
        static_sums,
        static_intensity,
        np.concatenate([g[0] for g in parts]),
        np.concatenate([g[1] for g in parts]),
        np.concatenate([g[2] for g in parts]),
        tau,
        frame_sum,
        spread,
    )
    return result, hosts


def host_name() -> str:
    """Where this rank runs: Slurm's node name when Slurm started it, else the MPI processor name."""
    from mpi4py import MPI

    return os.environ.get("SLURMD_NODENAME") or MPI.Get_processor_name()


@contextmanager
def abort_on_error(comm: Any | None) -> Iterator[None]:
    """Inside, an exception on one rank ends the whole job (MPI_Abort) rather than leaving the other
    ranks waiting for it in a collective forever."""
    if comm is None:
        yield
        return
    try:
        yield
    except BaseException as exc:
        print(f"rank {comm.Get_rank()}: {''.join(traceback.format_exception(exc)).strip()}", file=sys.stderr)
        sys.stderr.flush()
        comm.Abort(1)
        raise
