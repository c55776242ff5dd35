"""One call from raw frames + q partition to a pyXPCSViewer result file.

:func:`run_multitau` and :func:`run_twotime` are what an orchestration app calls for one dataset; each
returns a JSON-able summary. Both stream the stack once: memory is the correlator state plus one block.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from beambridge.xpcs.errors import EmptyBinError, OptionError, XpcsError
from beambridge.xpcs.io import FrameReader, open_frames
from beambridge.xpcs.multitau import Mode, MultiTauCorrelator
from beambridge.xpcs.multitau.bins import BinLabels, G2Result, chunk_bounds
from beambridge.xpcs.multitau.correlator import held_itemsize
from beambridge.xpcs.preprocess import Corrections, FrameSelection, FrameStream
from beambridge.xpcs.qmap import QMap, read_qmap
from beambridge.xpcs.result_file import as_f32, atomic_h5, write_config, write_metadata, write_qmap
from beambridge.xpcs.twotime import TwoTimeCollector

Progress = Callable[[int, int], None]
"""Called as ``progress(frames_done, frames_total)`` after every block."""

BLOCK_BYTES = 64 << 20
"""Frames are read at least this many bytes (as uint16) at a time."""
LARGE_BLOCK_BYTES = 256 << 20
"""… and up to this many to reach ``BLOCK_FRAMES`` frames on a large detector."""
BLOCK_FRAMES = 128
"""Frames per block worth reaching: the correlator loads and stores its whole state (hundreds of bytes
per pixel) once per block, so at 1 Mpx 32-frame blocks spent more time on that than on the frames
(200 frames of 1 Mpx: 470 ms in 32-frame blocks, 370 ms in 128-frame ones, on two cores)."""
IN_PLACE_BLOCK_FRAMES = 512
"""Frames per block when the reader fills one reused buffer (raw HDF5 frames, no correction), up to
:data:`IN_PLACE_BLOCK_BYTES`. Fed from memory, bigger blocks are cheaper (1 Mpx × 1000 frames, two
threads, CPU s to add the frames: 128-frame blocks 1.36-1.63, 512-frame ones 1.05-1.11, 2026-12-06);
read into fresh arrays they were not: the whole `xpcs corr` on a 2 GB file took 4.6-4.8 s in fresh
512-frame blocks against 2.7-2.9 s in 128-frame ones (3.5 s of system time faulting in 1 GiB blocks,
against 0.8). One buffer for every block pays its page faults once."""
IN_PLACE_BLOCK_BYTES = 1 << 30
"""… and at most this many bytes of frames (1 Mpx of uint16: 512 frames)."""


FOLLOW_BLOCK_FRAMES = 32
"""Frames per block when following a growing file: short, so that little is left after the last frame;
a block grows up to the usual size when more frames are already on disk (catching up is then as cheap
per frame as correlating a finished file: at 128×128, 32-frame blocks cost 3× as much)."""


def frames_per_block(n_detector: int, n_frames: int, *, in_place: bool = False, itemsize: int = 2) -> int:
    """How many frames to read and feed at a time: memory bounded, and long enough to amortise the
    correlator's per-block state traffic; longer ``in_place`` (one buffer reused for every block), as
    long as such a block of ``itemsize``-byte values stays within :data:`IN_PLACE_BLOCK_BYTES`."""
    frame_bytes = max(1, n_detector * 2)
    wanted = max(BLOCK_BYTES // frame_bytes, min(BLOCK_FRAMES, LARGE_BLOCK_BYTES // frame_bytes))
    if in_place:
        wanted = max(
            wanted, min(IN_PLACE_BLOCK_FRAMES, IN_PLACE_BLOCK_BYTES // max(1, n_detector * itemsize))
        )
    return max(1, min(n_frames, wanted))


def _labels(qmap: QMap) -> tuple[np.ndarray, BinLabels]:
    dq, sq = qmap.dqmap.ravel(), qmap.sqmap.ravel()
    pixels = np.flatnonzero(dq > 0)
    labels = BinLabels(
        static=sq[pixels].astype(np.int64) - 1,
        dynamic=dq[pixels].astype(np.int64) - 1,
        n_static=qmap.n_static,
        n_dynamic=qmap.n_dynamic,
        static_to_dynamic=qmap.static_to_dynamic() - 1,
    )
    return pixels, labels


def correlate(
    raw: str | Path,
    qmap: str | Path | QMap,
    out: str | Path,
    *,
    multitau: bool = True,
    twotime_bins: list[int] | None = None,
    frames: str | None = None,
    avg: int = 1,
    dark: tuple[int, int] | None = None,
    lld: float = 0.0,
    sigma: float = 0.0,
    flat: np.ndarray | None = None,
    normalize_frames: bool = False,
    delays_per_level: int = 4,
    mode: Mode = "auto",
    frame_time: float | None = None,
    count_time: float | None = None,
    force_frame_time: bool = False,
    start_time: str | None = None,
    rigaku_shape: tuple[int, int] | None = None,
    rigaku_frames: int | None = None,
    follow: bool = False,
    follow_frames: int | None = None,
    follow_timeout: float = 30.0,
    twotime_segments: int = 5,
    progress: Progress | None = None,
    pixel_spread: bool = False,
    mpi: bool | None = None,
) -> dict[str, Any]:
    """Correlate ``raw`` over the q partition ``qmap`` and write ``out``; return a summary.

    ``normalized_g2_err`` is the jackknife error bar (with ``normalized_g2_cov``); ``pixel_spread=True``
    also writes XPCS-Eigen's error bar, the spread of the per-pixel ratios, as
    ``normalized_g2_err_pixel_spread`` (a ratio per pixel and delay: on photon-counting data it costs
    more than the rest of the pass to g2).

    The frame time (s) comes from the raw file's metadata when it has some (see
    :func:`resolve_frame_time`); ``frame_time`` that contradicts the file is an error unless
    ``force_frame_time``. With neither, delays stay in frames (frame time 1) and the summary says so.

    ``follow=True`` correlates an HDF5 file **while the detector writes it** (SWMR, see
    :mod:`beambridge.xpcs.io.live`): frames are fed as they land, in short blocks, so the result is
    written a fraction of a second after the last frame (``last_frame_to_result_s`` in the summary).
    N comes from the file's ``expected_frames`` or ``follow_frames``; a writer silent for
    ``follow_timeout`` seconds is an error. The result is the same bits as correlating the finished file.

    Under an MPI launcher with several ranks (or ``mpi=True``; ``mpi=False`` never uses MPI) the pixels
    are shared out between the ranks, each reading only its detector rows, and the result is the same
    bits as one process's (:mod:`beambridge.xpcs.mpi`); rank 0 writes ``out``, every rank returns the
    summary. Two-time maps, ``normalize_frames`` and ``follow`` are refused there.

    Raises:
        XpcsError subclasses, each naming the offending file: missing/truncated inputs, shape
        mismatches, empty bins, bad options. ``out`` is never left half-written.
    """
    t_start = time.perf_counter()
    from beambridge.xpcs import mpi as mpi_mode

    comm = mpi_mode.world(mpi)
    if comm is not None:
        refused = [
            name
            for name, on in (("two-time maps", twotime_bins), ("normalize_frames", normalize_frames),
                             ("follow", follow))
            if on
        ]  # fmt: skip
        if refused:
            raise OptionError(f"{', '.join(refused)} need whole frames: not available over MPI ranks")
    qm = qmap if isinstance(qmap, QMap) else read_qmap(qmap)
    reader: FrameReader
    if follow:
        from beambridge.xpcs.io.live import FollowingHdf5Frames

        reader = FollowingHdf5Frames(raw, follow_frames, timeout=follow_timeout)
    else:
        reader = open_frames(raw, rigaku_shape, rigaku_frames)
    share: mpi_mode.Share | None = None
    hosts: dict[str, int] | None = None
    try:
        qm.check_frame_shape(reader.shape, reader.path)
        frame_time, time_source = resolve_frame_time(reader, frame_time, force_frame_time)
        if count_time is None:
            count_time = reader.count_time if reader.count_time is not None else frame_time
        selection = FrameSelection.parse(frames, avg)
        _, n = selection.resolve(reader.n_frames)
        pixels, labels = _labels(qm)
        shape = reader.shape
        n_det = shape[0] * shape[1]
        corr = MultiTauCorrelator(n, pixels, n_det, delays_per_level, mode=mode) if multitau else None
        if corr is not None:
            bounds = chunk_bounds(labels, corr.schedule.n_tau, corr.n_segments)
            if comm is not None:
                share = mpi_mode.plan(pixels, bounds, comm.Get_size(), shape[1])[comm.Get_rank()]
                reader = mpi_mode.RowSlab(reader, share.rows)
                first = share.rows[0] * shape[1]
                local = pixels[share.lo : share.hi] - first
                corr = MultiTauCorrelator(n, local, reader.shape[0] * shape[1], delays_per_level, mode=mode)
                bounds = bounds[share.chunks[0] : share.chunks[1] + 1] - share.lo
                if flat is not None and flat.shape == shape:
                    flat = flat[share.rows[0] : share.rows[1]]
            if not (share is not None and share.idle):
                corr.group_frame_sums(bounds)
        stream = FrameStream(
            reader,
            selection,
            Corrections(dark=dark, lld=lld, sigma=sigma, flat=flat, normalize_frames=normalize_frames),
        )
        collector = None
        if twotime_bins:
            bad = [b for b in twotime_bins if not 1 <= b <= qm.n_dynamic]
            if bad:
                raise EmptyBinError(
                    qm.source or "q partition", f"two-time bin {bad[0]} does not exist (1 … {qm.n_dynamic})"
                )
            sel = {b: pixels[labels.dynamic == b - 1] for b in twotime_bins}
            stat = {b: labels.static[labels.dynamic == b - 1] for b in twotime_bins}
            collector = TwoTimeCollector(n, sel, stat)
        frame_sum = np.zeros(n)
        # one reused buffer for raw HDF5 frames in one process (ranks: the same blocks on every rank)
        in_place = comm is None and not follow and stream.reads_in_place
        itemsize = held_itemsize(getattr(reader, "dtype", np.uint16))
        per_block = most = frames_per_block(n_det, n, in_place=in_place, itemsize=itemsize)
        ready = None
        if follow:
            per_block = min(per_block, FOLLOW_BLOCK_FRAMES)
            ready = getattr(reader, "available", None)
        t_corr = time.perf_counter()
        blocks = (
            stream.blocks(per_block, most=most, ready=ready, reuse=in_place)
            if not (share and share.idle)
            else iter(())
        )
        if comm is not None and comm.Get_rank() > 0:
            progress = None
        res: G2Result | None = None
        with mpi_mode.abort_on_error(comm):  # a rank failing mid-way ends the job, never a hang
            for j0, block in blocks:
                if isinstance(block, tuple):
                    ptr, pix, val = block
                    b = ptr.size - 1
                    if corr is not None:
                        corr.add_events(ptr, pix, val)
                    else:
                        np.add.at(frame_sum, np.repeat(np.arange(b), np.diff(ptr)) + j0, val)
                    if collector is not None:
                        collector.add_events(j0, ptr, pix, val)
                else:
                    b = block.shape[0]
                    if corr is not None:
                        corr.add_frames(block)
                    else:
                        frame_sum[j0 : j0 + b] = block.reshape(b, -1)[:, pixels].sum(axis=1)
                    if collector is not None:
                        collector.add_dense(j0, block)
                del block  # before the next is read: one block in memory at a time (or the one buffer)
                if progress is not None:
                    progress(j0 + b, n)
                if follow and corr is not None and j0 == 0:  # the bins' sums, ready before the last frame
                    corr.prepare_g2(labels)
            t_fed = time.perf_counter()
            if corr is not None and comm is not None and share is not None:
                partials = (
                    None if share.idle else corr.g2_partials(labels, pixel_spread, (share.lo, share.hi))
                )
                parts = None if share.idle else corr.frame_sum_parts()
                reduced = mpi_mode.reduce_g2(comm, partials, parts, corr.schedule.tau, pixel_spread)
                if reduced is not None:
                    res, hosts = reduced
            elif corr is not None:
                res = corr.g2(labels, pixel_spread)
        t_done = time.perf_counter()
        sel_ = stream.selection
        if comm is not None and comm.Get_rank() > 0:
            from_root = mpi_mode.share_summary(comm, None)
            if "error" in from_root:
                raise XpcsError(f"rank 0 could not write the result: {from_root['error']}")
            return from_root
        try:
            with atomic_h5(out) as f:
                write_metadata(
                    f,
                    energy=qm.energy,
                    frame_time=frame_time,
                    count_time=count_time,
                    start_time=start_time or datetime.now(UTC).isoformat(timespec="seconds"),
                )
                write_qmap(f, qm)
                f["/xpcs/rawdata_path"] = str(raw)
                sample = getattr(reader, "sample", None)
                if sample:
                    f["/entry/sample/name"] = sample
                common = {
                    "stride_frame": sel_.stride,
                    "avg_frame": sel_.avg,
                    "begin_frame": stream.start,
                    "num_frames": n,
                    "frame_time_source": time_source,
                }
                if res is not None:
                    g = f.create_group("/xpcs/multitau")
                    g["delay_list"] = res.tau.astype(np.int64)
                    g["normalized_g2"] = as_f32(res.g2)
                    honest = res.g2_err_resampled
                    assert honest is not None, "MultiTauCorrelator.g2 gives the covariance"
                    g["normalized_g2_err"] = as_f32(honest)
                    if res.g2_err is not None:
                        g["normalized_g2_err_pixel_spread"] = as_f32(res.g2_err)
                    if res.g2_cov is not None:
                        g["normalized_g2_cov"] = res.g2_cov
                    write_config(
                        g.create_group("config"),
                        {
                            **common,
                            "delays_per_level": delays_per_level,
                            "error_bars": "jackknife over pixel groups of every static bin",
                            "correlator_mode": corr.mode if corr else "none",
                            "dark_frames": dark,
                            "lld": lld,
                            "sigma": sigma,
                            "flat_field": flat is not None,
                            "normalize_frames": normalize_frames,
                        },
                    )
                    img = np.zeros(n_det)
                    img[pixels] = res.mean_intensity
                    f["/xpcs/temporal_mean/scattering_2d"] = as_f32(img.reshape(1, *shape))
                    f["/xpcs/temporal_mean/scattering_1d"] = as_f32(res.scattering_1d[None, :])
                    f["/xpcs/temporal_mean/scattering_1d_segments"] = as_f32(res.scattering_1d_segments)
                    frame_sum = res.frame_sum
                f["/xpcs/spatial_mean/intensity_vs_time"] = as_f32(
                    np.stack([np.arange(n), frame_sum / max(pixels.size, 1)])
                )
                summary_tt: list[int] = []
                if collector is not None:
                    g2s, segs = [], []
                    tt = f.create_group("/xpcs/twotime")
                    cmap = tt.create_group("correlation_map")
                    for k, item in enumerate(collector.results(twotime_segments), start=1):
                        cmap.create_dataset(
                            f"c2_{k:05d}",
                            data=as_f32(np.triu(item.c2)),
                            compression="gzip",
                            compression_opts=1,
                        )
                        g2s.append(item.g2)
                        segs.append(item.g2_segments)
                        summary_tt.append(item.bin)
                    tt["normalized_g2"] = as_f32(np.stack(g2s, axis=1))
                    tt["normalized_g2_segments"] = as_f32(np.stack(segs, axis=2))
                    tt["processed_bins"] = np.asarray(summary_tt, dtype=np.int64)
                    write_config(tt.create_group("config"), {**common, "smoothing": "static_bin_mean"})
                    if "/xpcs/temporal_mean/scattering_2d" not in f:
                        img = np.zeros(n_det)
                        f["/xpcs/temporal_mean/scattering_2d"] = as_f32(img.reshape(1, *shape))
                        f["/xpcs/temporal_mean/scattering_1d"] = as_f32(np.zeros((1, qm.n_static)))
                        f["/xpcs/temporal_mean/scattering_1d_segments"] = as_f32(np.zeros((1, qm.n_static)))
        except Exception as exc:
            if comm is not None:  # the other ranks wait for the summary: give them the error instead
                mpi_mode.share_summary(comm, {"error": str(exc)})
            raise
    finally:
        reader.close()
    t_end = time.perf_counter()
    elapsed = t_end - t_start
    summary: dict[str, Any] = {
        "raw": str(raw),
        "qmap": qm.source,
        "output": str(out),
        "frames": n,
        "pixels": int(pixels.size),
        "dynamic_bins": qm.n_dynamic,
        "correlator_mode": corr.mode if corr is not None else None,
        "correlation_seconds": round(t_done - t_corr, 4),
        "total_seconds": round(elapsed, 4),
        "frames_per_second": round(n / max(t_done - t_corr, 1e-9), 1),
        "twotime_bins": summary_tt,
        "frame_time": frame_time,
        "frame_time_source": time_source,
    }
    if res is not None:
        summary["n_tau"] = int(res.tau.size)
    if comm is not None:
        summary["mpi_ranks"] = comm.Get_size()
        summary["mpi_ranks_per_host"] = hosts
        mpi_mode.share_summary(comm, summary)
    seen = getattr(reader, "last_frame_seen_at", None)
    if follow and seen is not None:
        summary["last_frame_to_result_s"] = round(t_end - seen, 4)
        summary["after_last_frame_s"] = {  # where the time after the last frame went
            "last_blocks": round(t_fed - seen, 4),
            "g2_and_error_bars": round(t_done - t_fed, 4),
            "result_file": round(t_end - t_done, 4),
        }
    return summary


FRAME_TIME_RTOL = 1e-6
"""A given frame time agrees with the file's if within this relative difference (float32 storage)."""


def resolve_frame_time(reader: FrameReader, given: float | None, force: bool = False) -> tuple[float, str]:
    """The frame time to use and where it came from: ``"file"``, ``"argument"`` (the file says
    nothing, or ``force``), or ``"unknown"`` (1.0: delays in frames).

    Raises:
        OptionError: ``given`` is not a positive number, or contradicts the file without ``force``.
    """
    if given is not None and not (math.isfinite(given) and given > 0):
        raise OptionError(f"frame time must be a positive number of seconds, got {given}")
    recorded = reader.frame_time
    if given is None:
        return (recorded, "file") if recorded is not None else (1.0, "unknown")
    if recorded is None or math.isclose(given, recorded, rel_tol=FRAME_TIME_RTOL):
        return given, "file" if recorded is not None else "argument"
    if not force:
        raise OptionError(
            f"{reader.path}: the file records a frame time of {recorded:g} s but {given:g} s was given; "
            "leave the frame time out to use the file's, or force it"
        )
    return given, "argument"


def run_multitau(raw: str | Path, qmap: str | Path, out: str | Path, **options: Any) -> dict[str, Any]:
    """Multi-tau g2 of ``raw`` over ``qmap`` into ``out`` (options as :func:`correlate`)."""
    return correlate(raw, qmap, out, multitau=True, **options)


def run_twotime(
    raw: str | Path, qmap: str | Path, out: str | Path, bins: list[int], **options: Any
) -> dict[str, Any]:
    """Two-time C(t1, t2) for dynamic ``bins`` (1-based) into ``out``, with multi-tau alongside."""
    if not bins:
        raise OptionError("two-time analysis needs at least one dynamic bin")
    return correlate(raw, qmap, out, multitau=options.pop("multitau", True), twotime_bins=bins, **options)
