"""``beambridge xpcs …``: simulate, correlate, fit and plot XPCS data (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer

app = typer.Typer(
    help="XPCS analysis: simulate speckle, correlate (multi-tau / two-time), fit, plot.", no_args_is_help=True
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _parse_pair(text: str | None, what: str) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        _fail(f"{what} must look like start:stop, got {text!r}")
    return a, b


@app.command()
def simulate(
    out: Path = typer.Argument(..., help="raw HDF5 file to write (also <name>_qmap.h5, <name>_truth.json)"),
    frames: int = typer.Option(1000, help="number of frames"),
    size: int = typer.Option(256, help="detector rows = cols"),
    photons: float = typer.Option(0.1, help="mean photons per pixel per frame"),
    diffusion: float = typer.Option(2.0e6, help="D in Å²/s"),
    frame_time: float = typer.Option(1e-3, help="s"),
    modes: int = typer.Option(1, help="speckle modes M (contrast 1/M)"),
    seed: int = typer.Option(0),
) -> None:
    """Simulate speckle with known dynamics: g2 = 1 + β·exp(-2·D·q²·τ)."""
    from beambridge.xpcs.errors import XpcsError
    from beambridge.xpcs.simulate import SpeckleParameters, simulate_speckle

    c = size / 2.0
    params = SpeckleParameters(
        shape=(size, size),
        n_frames=frames,
        photons_per_pixel=photons,
        diffusion=diffusion,
        frame_time=frame_time,
        modes=modes,
        seed=seed,
        beam_center=(c, c),
        r_min=size / 16,
        r_max=size * 0.4375,
    )
    try:
        paths = simulate_speckle(out, params)
    except XpcsError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(paths))


@app.command()
def corr(
    raw: Path = typer.Argument(..., help="raw frames: .h5 (/entry/data/data), .imm or Rigaku .bin"),
    qmap: Path = typer.Option(..., "--qmap", help="q-partition file (APS layout, /qmap)"),
    out: Path = typer.Option(..., "-o", "--out", help="result file (pyXPCSViewer layout)"),
    twotime: str = typer.Option("", help="two-time dynamic bins, e.g. 1,3,5"),
    frames: str = typer.Option("", help="start:stop:stride (0-based, stop exclusive)"),
    avg: int = typer.Option(1, help="average this many frames into one"),
    dark: str = typer.Option("", help="dark frames start:stop of the raw file"),
    lld: float = typer.Option(0.0, help="lower threshold after dark subtraction"),
    sigma: float = typer.Option(0.0, help="threshold in dark standard deviations"),
    normalize_frames: bool = typer.Option(False, help="divide each frame by its relative mean"),
    frame_time: float = typer.Option(
        None, help="s between frames; default: the raw file's own (an error if the two disagree)"
    ),
    force_frame_time: bool = typer.Option(
        False, "--force-frame-time", help="use --frame-time even where the raw file records another"
    ),
    mode: str = typer.Option(
        "auto",
        help="correlator: auto (dense; events at <= 0.01 photons/pixel/frame: sparse), dense, or sparse (event-driven)",
    ),
    rigaku_shape: str = typer.Option("512x1024", help="detector shape of Rigaku .bin files"),
    follow: bool = typer.Option(
        False, "--follow", help="correlate an HDF5 file while the detector writes it (SWMR)"
    ),
    follow_timeout: float = typer.Option(
        30.0, help="with --follow: give up after this many s without a frame"
    ),
    rigaku_frames: int = typer.Option(
        None, help="frames of the acquisition (Rigaku .bin stores no count: trailing empty frames are lost)"
    ),
    pixel_spread: bool = typer.Option(
        False,
        "--pixel-spread",
        help="also write XPCS-Eigen's error bar (spread of per-pixel ratios; slower on photon-counting data)",
    ),
    mpi: bool = typer.Option(
        None,
        "--mpi/--no-mpi",
        help="share the pixels among MPI ranks (default: when started by mpirun/srun with several ranks)",
    ),
) -> None:
    """Correlate RAW over the q partition and write OUT (multi-tau, optional two-time)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from beambridge.xpcs.errors import XpcsError
    from beambridge.xpcs.mpi import this_rank
    from beambridge.xpcs.mpi_launch import launched_rank
    from beambridge.xpcs.pipeline import correlate

    try:
        bins = [int(b) for b in twotime.split(",") if b.strip()]
        rs = tuple(int(v) for v in rigaku_shape.lower().split("x"))
    except ValueError:
        _fail("--twotime must be a comma-separated list of bins and --rigaku-shape look like 512x1024")
    if mode not in ("auto", "dense", "sparse"):
        _fail(f"--mode must be auto, dense or sparse, got {mode!r}")
    with Progress(
        TextColumn("correlating"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} frames"),
        TimeRemainingColumn(),
        transient=True,
        disable=launched_rank() > 0,  # the other ranks of an MPI run stay quiet
    ) as bar:
        task = bar.add_task("corr", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            summary = correlate(
                raw,
                qmap,
                out,
                twotime_bins=bins or None,
                frames=frames or None,
                avg=avg,
                dark=_parse_pair(dark, "--dark"),
                lld=lld,
                sigma=sigma,
                normalize_frames=normalize_frames,
                frame_time=frame_time,
                force_frame_time=force_frame_time,
                mode=mode,  # type: ignore[arg-type]
                rigaku_shape=(rs[0], rs[1]),
                rigaku_frames=rigaku_frames,
                follow=follow,
                follow_timeout=follow_timeout,
                progress=progress,
                pixel_spread=pixel_spread,
                mpi=mpi,
            )
        except XpcsError as exc:
            if this_rank() > 0:  # every rank meets the same bad input: rank 0 says it
                raise typer.Exit(2) from None
            _fail(str(exc))
    if this_rank() > 0:
        return
    typer.echo(
        f"wrote {out}: {summary['frames']} frames, {summary['dynamic_bins']} q bins, "
        f"{summary['correlator_mode']} correlator"
    )
    if "last_frame_to_result_s" in summary:
        typer.echo(f"last frame -> result written: {summary['last_frame_to_result_s']:.3f} s")
    if summary["frame_time_source"] == "unknown":
        typer.echo("note: the raw file records no frame time and none was given: delays are in frames")
    typer.echo(
        f"{summary['frames']} frames in {summary['correlation_seconds']:.3f} s: "
        f"{summary['frames_per_second']:.0f} frames/s"
        + (f" over {summary['mpi_ranks']} MPI ranks" if "mpi_ranks" in summary else "")
    )


@app.command()
def fit(
    result: Path = typer.Argument(..., help="result file written by `corr`"),
    model: str = typer.Option("single", help="single or stretched"),
    plot: Path = typer.Option(None, help="write g2 curves with fits and Γ vs q² (.png or .svg)"),
    json_out: Path = typer.Option(None, "--json", help="write the fit report as JSON"),
) -> None:
    """Fit g2 per q (single/stretched exponential) and D from Γ vs q²."""
    from beambridge.xpcs.errors import XpcsError
    from beambridge.xpcs.fitting import fit_result
    from beambridge.xpcs.result_file import read_multitau

    if model not in ("single", "stretched"):
        _fail(f"--model must be single or stretched, got {model!r}")
    try:
        res = read_multitau(result)
        report = fit_result(res, model)
    except XpcsError as exc:
        _fail(str(exc))
    for b in report.bins:
        typer.echo(
            f"bin {b.bin:3d}  q={b.q:.4e} 1/A  Gamma={b.gamma:.5g} ± {b.gamma_err:.2g} 1/s  "
            f"beta={b.contrast:.3f}  alpha={b.alpha:.2f}"
        )
    if report.from_rates is not None:
        typer.echo(f"D (Gamma vs q^2) = {report.from_rates.D:.6g} ± {report.from_rates.err:.2g} A^2/s")
    if report.exact is not None:
        typer.echo(
            f"D (exact joint model) = {report.exact.D:.6g} ± {report.exact.err:.2g} A^2/s "
            f"(chi2_red {report.exact.chi2_red:.2f})"
        )
    if json_out is not None:
        json_out.write_text(json.dumps(report.as_dict(), indent=2))
    if plot is not None:
        from beambridge.xpcs.plotting import plot_g2

        typer.echo(f"wrote {plot_g2(res, plot, report)}")


@app.command("plot")
def plot_cmd(
    result: Path = typer.Argument(..., help="result file written by `corr`"),
    out: Path = typer.Option(None, "-o", "--out", help="g2 figure (.png or .svg); default <result>_g2.png"),
    twotime_out: Path = typer.Option(
        None, "--twotime-out", help="two-time figure, when the result has maps; default <result>_twotime.png"
    ),
    fit: bool = typer.Option(False, "--fit", help="add fitted curves, their residuals and Γ vs q²"),
) -> None:
    """Plot g2 curves with error bars, and the two-time maps C(t1, t2) when `corr --twotime` made them."""
    from beambridge.xpcs.errors import MissingDatasetError, XpcsError
    from beambridge.xpcs.fitting import fit_result
    from beambridge.xpcs.plotting import plot_g2, plot_twotime
    from beambridge.xpcs.result_file import read_multitau, read_twotime

    wrote = []
    try:
        tt = read_twotime(result)
        try:
            res = read_multitau(result)
        except MissingDatasetError:
            if tt is None:
                raise
            res = None
        if res is not None:
            report = fit_result(res) if fit else None
            wrote.append(plot_g2(res, out or result.with_name(result.stem + "_g2.png"), report))
        if tt is not None:
            wrote.append(plot_twotime(tt, twotime_out or result.with_name(result.stem + "_twotime.png")))
    except XpcsError as exc:
        _fail(str(exc))
    for path in wrote:
        typer.echo(f"wrote {path}")


@app.command()
def warmup(
    force: bool = typer.Option(False, "--force", help="compile again even if this machine's cache is warm"),
) -> None:
    """Compile the XPCS kernels into numba's cache now, so that the first job does not (site agents and
    pilots do this when they start; `launcher.warm_xpcs: false` in site.yml turns that off)."""
    import time

    from beambridge.cli.output import console
    from beambridge.xpcs.warmup import cache_root, is_warm, warm_up

    if is_warm() and not force:
        typer.echo(f"the XPCS kernels are already compiled for this machine (cache: {cache_root()})")
        return
    started = time.perf_counter()
    message = "compiling the XPCS kernels (up to a minute of CPU, once per machine)"
    with console.status(message) as status:
        warm_up(lambda step: status.update(f"{message}: {step}"), force=force)
    typer.echo(f"compiled the XPCS kernels in {time.perf_counter() - started:.1f} s (cache: {cache_root()})")
