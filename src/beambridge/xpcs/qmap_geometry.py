"""Build a q partition from the scattering geometry.

Every pixel's momentum transfer and azimuth follow from the beam centre ``(x0, y0)`` (pixels), the
sample–detector distance ``L`` (m), the pixel size ``p`` (m) and the energy ``E`` (keV):

    r = p·hypot(col - x0, row - y0),   2θ = arctan(r / L),   q = 4π sin θ / λ,   λ = 12.398 / E  (Å)
    φ = atan2(-(row - y0), col - x0) in degrees (counter-clockwise, 0 along +x; rows grow downwards)

Dynamic bins are ``n_q × n_phi`` equal-width q rings × φ sectors spanning ``[q_min, q_max]``;
static bins subdivide each dynamic bin ``static_q_per_dynamic × static_phi_per_dynamic`` times, so
every static bin lies in exactly one dynamic bin. Bins with no unmasked pixel are dropped and the
remaining ones numbered compactly (1-based), with their grid positions in ``*_index_mapping``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from beambridge.xpcs.errors import OptionError
from beambridge.xpcs.qmap import HC_KEV_ANGSTROM, QMap


def pixel_q_phi(
    shape: tuple[int, int],
    beam_center: tuple[float, float],
    detector_distance: float,
    pixel_size: float,
    energy: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return (q in Å⁻¹, φ in degrees) for every pixel of a detector of ``shape`` (rows, cols).

    ``beam_center`` is (x, y) = (column, row) in pixels.
    """
    rows, cols = np.indices(shape, dtype=np.float64)
    dx = cols - beam_center[0]
    dy = rows - beam_center[1]
    r = np.hypot(dx, dy) * pixel_size
    q = 4.0 * np.pi * np.sin(0.5 * np.arctan2(r, detector_distance)) / (HC_KEV_ANGSTROM / energy)
    phi = np.degrees(np.arctan2(-dy, dx))
    return q, phi


def _digitize(values: npt.NDArray[np.float64], lo: float, hi: float, n: int) -> npt.NDArray[np.int64]:
    """0-based bin of each value in n equal bins over [lo, hi]; -1 outside."""
    idx = np.floor((values - lo) / (hi - lo) * n).astype(np.int64)
    idx[values == hi] = n - 1
    idx[(values < lo) | (values > hi)] = -1
    return idx


def _compact(grid_index: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Renumber grid positions (-1 = excluded) to compact 1-based labels; return (labels, mapping)."""
    used = np.unique(grid_index[grid_index >= 0])
    labels = np.zeros(grid_index.shape, dtype=np.int32)
    sel = grid_index >= 0
    labels[sel] = np.searchsorted(used, grid_index[sel]).astype(np.int32) + 1
    return labels, used.astype(np.int64)


def build_qmap(
    shape: tuple[int, int],
    beam_center: tuple[float, float],
    detector_distance: float,
    pixel_size: float,
    energy: float,
    n_q: int = 9,
    n_phi: int = 1,
    static_q_per_dynamic: int = 4,
    static_phi_per_dynamic: int = 1,
    q_range: tuple[float, float] | None = None,
    mask: npt.ArrayLike | None = None,
) -> QMap:
    """Build a q partition of ``n_q`` rings × ``n_phi`` sectors from geometry.

    Args:
        shape: detector (rows, cols).
        beam_center: (x, y) in pixels; may lie off the detector.
        detector_distance: metres. pixel_size: metres. energy: keV.
        n_q, n_phi: dynamic grid size. static_q_per_dynamic, static_phi_per_dynamic: subdivision.
        q_range: (q_min, q_max) in Å⁻¹; default: the q range of the unmasked pixels.
        mask: (rows, cols), nonzero = usable; default all pixels.

    Raises:
        OptionError: for non-positive sizes or an empty q range.
    """
    if min(n_q, n_phi, static_q_per_dynamic, static_phi_per_dynamic) < 1:
        raise OptionError("numbers of q and phi bins must be >= 1")
    if detector_distance <= 0 or pixel_size <= 0 or energy <= 0:
        raise OptionError("detector distance, pixel size and energy must be positive")
    mask_a = np.ones(shape, dtype=np.uint8) if mask is None else (np.asarray(mask) != 0).astype(np.uint8)
    if mask_a.shape != tuple(shape):
        raise OptionError(f"mask shape {mask_a.shape} differs from detector shape {tuple(shape)}")
    q, phi = pixel_q_phi(shape, beam_center, detector_distance, pixel_size, energy)
    usable = mask_a != 0
    if not usable.any():
        raise OptionError("the mask excludes every pixel")
    q_lo, q_hi = (float(q[usable].min()), float(q[usable].max())) if q_range is None else q_range
    if not q_hi > q_lo:
        raise OptionError(f"empty q range [{q_lo}, {q_hi}]")

    nsq, nsp = n_q * static_q_per_dynamic, n_phi * static_phi_per_dynamic
    iq_s = _digitize(q, q_lo, q_hi, nsq)
    ip_s = _digitize(phi, -180.0, 180.0, nsp)
    inside = usable & (iq_s >= 0) & (ip_s >= 0)
    static_grid = np.where(inside, iq_s * nsp + ip_s, -1)
    dynamic_grid = np.where(
        inside, (iq_s // static_q_per_dynamic) * n_phi + ip_s // static_phi_per_dynamic, -1
    )
    sq, s_map = _compact(static_grid)
    dq, d_map = _compact(dynamic_grid)

    def centres(lo: float, hi: float, n: int) -> npt.NDArray[np.float64]:
        edges = np.linspace(lo, hi, n + 1)
        return 0.5 * (edges[:-1] + edges[1:])

    return QMap(
        dqmap=dq,
        sqmap=sq,
        mask=mask_a,
        dynamic_q=centres(q_lo, q_hi, n_q),
        dynamic_phi=centres(-180.0, 180.0, n_phi),
        static_q=centres(q_lo, q_hi, nsq),
        static_phi=centres(-180.0, 180.0, nsp),
        dynamic_index_mapping=d_map,
        static_index_mapping=s_map,
        beam_center_x=float(beam_center[0]),
        beam_center_y=float(beam_center[1]),
        detector_distance=float(detector_distance),
        pixel_size=float(pixel_size),
        energy=float(energy),
    )
