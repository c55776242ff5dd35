"""The q partition of the detector (APS "qmap" layout): which pixels are averaged together.

A q partition assigns every detector pixel a **static** bin (fine, for intensity averages and the
g2 normalisation) and a **dynamic** bin (coarse, one g2 curve each). Both maps are 1-based with
0 = excluded; XPCS-Eigen analyses a pixel when ``dqmap >= 1 and sqmap >= 1`` — we also require
``mask != 0``. Bins enumerate a (q, φ) grid: bin k (compact, 1-based) sits at the flat grid position
``index_mapping[k-1] = i_q * n_phi + i_phi`` of the axes ``v_list_dim0`` (q, Å⁻¹) × ``v_list_dim1``
(φ, degrees).

On disk (APS layout, group ``/qmap``; copied to ``/xpcs/qmap`` in results)::

    mask                 (H, W)   int     1 = use the pixel
    dynamic_roi_map      (H, W)   int     1-based dynamic bin, 0 = excluded
    static_roi_map       (H, W)   int     1-based static bin, 0 = excluded
    dynamic_v_list_dim0/1, static_v_list_dim0/1   (n,) float   q (Å⁻¹) and φ (deg) axes
    dynamic_num_pts, static_num_pts               (2,) int     grid size (n_q, n_phi)
    dynamic_index_mapping, static_index_mapping   (n_bins,) int  grid position of each bin
    beam_center_x, beam_center_y   pixels (x = column, y = row);  detector_distance  m
    pixel_size  m;  energy  keV;  map_names, map_units  byte strings
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt

from beambridge.xpcs.errors import (
    EmptyBinError,
    InputFileError,
    MissingDatasetError,
    ShapeMismatchError,
)

HC_KEV_ANGSTROM = 12.398419843320026
"""h·c in keV·Å: wavelength (Å) = HC_KEV_ANGSTROM / energy (keV)."""

_REQUIRED_MAPS = ("dynamic_roi_map", "static_roi_map")


@dataclass
class QMap:
    """A validated q partition.

    Attributes:
        dqmap, sqmap: (H, W) int32 bin maps, 1-based, 0 = excluded (already combined with ``mask``).
        mask: (H, W) uint8, 1 = pixel used.
        dynamic_q, dynamic_phi, static_q, static_phi: grid axes (Å⁻¹, degrees).
        dynamic_index_mapping, static_index_mapping: flat grid position of each compact bin.
        beam_center_x, beam_center_y: beam position in pixels (x = column, y = row).
        detector_distance: sample–detector distance in m.
        pixel_size: pixel pitch in m.
        energy: X-ray energy in keV.
        source: file the partition was read from ("" if built in memory).
        reassigned_static_bins: static bins whose pixels spanned several dynamic bins and were all
            moved to the dynamic bin holding most of them (XPCS-Eigen ``BuildQMap``).
    """

    dqmap: npt.NDArray[np.int32]
    sqmap: npt.NDArray[np.int32]
    mask: npt.NDArray[np.uint8]
    dynamic_q: npt.NDArray[np.float64]
    dynamic_phi: npt.NDArray[np.float64]
    static_q: npt.NDArray[np.float64]
    static_phi: npt.NDArray[np.float64]
    dynamic_index_mapping: npt.NDArray[np.int64]
    static_index_mapping: npt.NDArray[np.int64]
    beam_center_x: float
    beam_center_y: float
    detector_distance: float
    pixel_size: float
    energy: float
    source: str = ""
    map_names: tuple[str, str] = ("q", "phi")
    map_units: tuple[str, str] = ("1/A", "deg")
    reassigned_static_bins: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dqmap = np.asarray(self.dqmap, dtype=np.int32)
        self.sqmap = np.asarray(self.sqmap, dtype=np.int32)
        self.mask = np.asarray(self.mask != 0, dtype=np.uint8)
        keep = (self.mask != 0) & (self.dqmap >= 1) & (self.sqmap >= 1)
        self.dqmap = np.where(keep, self.dqmap, 0).astype(np.int32)
        self.sqmap = np.where(keep, self.sqmap, 0).astype(np.int32)
        self._fix_nesting()
        self._check_bins()

    # -- derived quantities ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """Detector shape (rows, cols)."""
        return (int(self.dqmap.shape[0]), int(self.dqmap.shape[1]))

    @property
    def n_dynamic(self) -> int:
        """Number of dynamic bins (g2 curves)."""
        return int(self.dynamic_index_mapping.size)

    @property
    def n_static(self) -> int:
        """Number of static bins."""
        return int(self.static_index_mapping.size)

    @property
    def wavelength(self) -> float:
        """X-ray wavelength in Å."""
        return HC_KEV_ANGSTROM / self.energy

    def dynamic_bin_q(self) -> npt.NDArray[np.float64]:
        """q value (Å⁻¹) of each dynamic bin, shape (n_dynamic,)."""
        n_phi = max(int(self.dynamic_phi.size), 1)
        return np.asarray(self.dynamic_q[self.dynamic_index_mapping // n_phi], dtype=np.float64)

    def static_bin_q(self) -> npt.NDArray[np.float64]:
        """q value (Å⁻¹) of each static bin, shape (n_static,)."""
        n_phi = max(int(self.static_phi.size), 1)
        return np.asarray(self.static_q[self.static_index_mapping // n_phi], dtype=np.float64)

    def static_to_dynamic(self) -> npt.NDArray[np.int64]:
        """Dynamic bin (1-based) of every static bin, shape (n_static,)."""
        out = np.zeros(self.n_static, dtype=np.int64)
        sel = self.sqmap > 0
        out[self.sqmap[sel] - 1] = self.dqmap[sel]
        return out

    def pixel_q(self) -> npt.NDArray[np.float64]:
        """Momentum transfer of every pixel in Å⁻¹, shape (H, W).

        ``q = 4π sin(θ)/λ`` with ``2θ = arctan(r / L)``, ``r`` the distance of the pixel centre from
        the beam centre (pixel index units times ``pixel_size``) and ``L`` the detector distance.
        """
        rows, cols = np.indices(self.shape, dtype=np.float64)
        r = np.hypot(rows - self.beam_center_y, cols - self.beam_center_x) * self.pixel_size
        two_theta = np.arctan2(r, self.detector_distance)
        return 4.0 * np.pi * np.sin(0.5 * two_theta) / self.wavelength

    def hash(self) -> str:
        """SHA-256 of the maps and geometry; stored as the ``hash`` attribute pyXPCSViewer caches on."""
        h = hashlib.sha256()
        for arr in (self.mask, self.dqmap, self.sqmap):
            h.update(np.ascontiguousarray(arr).tobytes())
        geometry = (self.beam_center_x, self.beam_center_y, self.detector_distance, self.pixel_size)
        h.update(np.asarray([*geometry, self.energy], dtype=np.float64).tobytes())
        return h.hexdigest()

    def check_frame_shape(self, frame_shape: tuple[int, ...], raw_path: str | Path) -> None:
        """Raise :class:`ShapeMismatchError` unless frames of ``raw_path`` have this detector shape."""
        if tuple(frame_shape) != self.shape:
            raise ShapeMismatchError(
                raw_path,
                f"frames are {frame_shape[0]}x{frame_shape[1]} pixels but the q partition "
                f"{self.source or '(in memory)'} is {self.shape[0]}x{self.shape[1]}",
            )

    # -- validation ------------------------------------------------------------------------------
    def _fix_nesting(self) -> None:
        """Move each static bin wholly into the dynamic bin that holds most of its pixels."""
        sel = self.sqmap > 0
        if not sel.any():
            return
        s = self.sqmap[sel].astype(np.int64)
        d = self.dqmap[sel].astype(np.int64)
        n_d = int(d.max()) + 1
        counts = np.bincount(s * n_d + d, minlength=(int(s.max()) + 1) * n_d).reshape(-1, n_d)
        owner = counts.argmax(axis=1)  # ties → lowest dynamic bin, deterministic
        spans = np.count_nonzero(counts, axis=1) > 1
        if spans.any():
            self.reassigned_static_bins = [int(b) for b in np.flatnonzero(spans)]
            self.dqmap = np.where(sel, owner[self.sqmap], 0).astype(np.int32)

    def _check_bins(self) -> None:
        where = self.source or "q partition"
        if self.sqmap.shape != self.dqmap.shape or self.mask.shape != self.dqmap.shape:
            raise ShapeMismatchError(
                where,
                f"mask {self.mask.shape}, dynamic map {self.dqmap.shape} and static map "
                f"{self.sqmap.shape} must have the same shape",
            )
        for name, bin_map, mapping in (
            ("dynamic", self.dqmap, self.dynamic_index_mapping),
            ("static", self.sqmap, self.static_index_mapping),
        ):
            counts = np.bincount(bin_map.ravel(), minlength=mapping.size + 1)[1:]
            if counts.size > mapping.size:
                raise InputFileError(
                    where,
                    f"{name} map uses bin {counts.size} but {name}_index_mapping lists {mapping.size} bins",
                )
            empty = np.flatnonzero(counts == 0)
            if empty.size:
                raise EmptyBinError(
                    where,
                    f"{name} bin {int(empty[0]) + 1} has no pixels inside the mask "
                    f"({empty.size} empty {name} bin(s) in total)",
                )

    # -- writing ---------------------------------------------------------------------------------
    def write_group(self, group: h5py.Group) -> None:
        """Write the partition in the APS layout into ``group`` (e.g. ``/qmap`` or ``/xpcs/qmap``)."""
        n_dyn = np.asarray([self.dynamic_q.size, max(self.dynamic_phi.size, 1)], dtype=np.int64)
        n_sta = np.asarray([self.static_q.size, max(self.static_phi.size, 1)], dtype=np.int64)
        datasets: dict[str, npt.ArrayLike] = {
            "mask": self.mask.astype(np.int32),
            "dynamic_roi_map": self.dqmap.astype(np.uint32),
            "static_roi_map": self.sqmap.astype(np.uint32),
            "dynamic_v_list_dim0": self.dynamic_q,
            "dynamic_v_list_dim1": self.dynamic_phi,
            "static_v_list_dim0": self.static_q,
            "static_v_list_dim1": self.static_phi,
            "dynamic_num_pts": n_dyn,
            "static_num_pts": n_sta,
            "dynamic_index_mapping": self.dynamic_index_mapping,
            "static_index_mapping": self.static_index_mapping,
            "beam_center_x": np.float64(self.beam_center_x),
            "beam_center_y": np.float64(self.beam_center_y),
            "detector_distance": np.float64(self.detector_distance),
            "pixel_size": np.float64(self.pixel_size),
            "energy": np.float64(self.energy),
            "map_names": np.asarray([n.encode() for n in self.map_names]),
            "map_units": np.asarray([u.encode() for u in self.map_units]),
        }
        for name, value in datasets.items():
            group.create_dataset(name, data=value)
        group.attrs["hash"] = self.hash()


def read_qmap(path: str | Path, group: str = "/qmap") -> QMap:
    """Read a q partition in the APS layout from ``path`` (group ``/qmap``; ``/xpcs/qmap`` also tried).

    Raises:
        InputFileError: the file is missing, not HDF5, or truncated.
        MissingDatasetError: a required map or geometry value is absent.
        ShapeMismatchError: the maps disagree in shape or are not 2-D.
        EmptyBinError: a bin number in use has no pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "q-partition file does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(path, f"not a readable HDF5 file ({exc})") from None
    with f:
        if group not in f and "/xpcs/qmap" in f:
            group = "/xpcs/qmap"
        if group not in f:
            raise MissingDatasetError(path, group)
        g = f[group]

        def get(name: str, default: npt.ArrayLike | None = None) -> npt.NDArray[np.generic]:
            if name in g:
                try:
                    return np.asarray(g[name][()])
                except OSError as exc:
                    raise InputFileError(path, f"cannot read {group}/{name} ({exc})") from None
            if default is None:
                raise MissingDatasetError(path, f"{group}/{name}")
            return np.asarray(default)

        dq = np.squeeze(get("dynamic_roi_map"))
        sq = np.squeeze(get("static_roi_map"))
        if dq.ndim != 2 or sq.ndim != 2:
            raise ShapeMismatchError(path, f"q maps must be 2-D, got {dq.shape} and {sq.shape}")
        mask = np.squeeze(get("mask", np.ones(dq.shape, dtype=np.uint8)))
        n_dq, n_sq = int(dq.max(initial=0)), int(sq.max(initial=0))
        return QMap(
            dqmap=dq.astype(np.int32),
            sqmap=sq.astype(np.int32),
            mask=mask,
            dynamic_q=get("dynamic_v_list_dim0", np.arange(1, n_dq + 1, dtype=float))
            .astype(np.float64)
            .ravel(),
            dynamic_phi=get("dynamic_v_list_dim1", [0.0]).astype(np.float64).ravel(),
            static_q=get("static_v_list_dim0", np.arange(1, n_sq + 1, dtype=float))
            .astype(np.float64)
            .ravel(),
            static_phi=get("static_v_list_dim1", [0.0]).astype(np.float64).ravel(),
            dynamic_index_mapping=get("dynamic_index_mapping", np.arange(n_dq)).astype(np.int64).ravel(),
            static_index_mapping=get("static_index_mapping", np.arange(n_sq)).astype(np.int64).ravel(),
            beam_center_x=float(get("beam_center_x")),
            beam_center_y=float(get("beam_center_y")),
            detector_distance=float(get("detector_distance")),
            pixel_size=float(get("pixel_size")),
            energy=float(get("energy")),
            source=str(path),
        )
