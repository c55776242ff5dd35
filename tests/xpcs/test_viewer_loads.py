"""pyXPCSViewer's own reader (xpcs-viewer 1.2.2, a test-only dependency) loads our result files."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from beambridge.xpcs.pipeline import run_twotime

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

if os.environ.get("CI") == "true":
    from pyxpcsviewer.core.file_io.qmap_utils import QMapManager
    from pyxpcsviewer.core.xpcs_file import XpcsFile
else:
    viewer = pytest.importorskip("pyxpcsviewer.core.xpcs_file", reason="pip install xpcs-viewer==1.2.2")
    XpcsFile = viewer.XpcsFile
    from pyxpcsviewer.core.file_io.qmap_utils import QMapManager


def test_xpcs_viewer_reads_g2(small_run: tuple[Path, Path, np.ndarray, object], tmp_path: Path) -> None:
    raw, qmap_path, _, _qmap = small_run
    out = tmp_path / "result.h5"
    run_twotime(raw, qmap_path, out, bins=[1, 2], frame_time=0.002, frames="0:200:2", avg=1)
    xf = XpcsFile(str(out), qmap_manager=QMapManager())
    assert "Multitau" in xf.atype and "Twotime" in xf.atype
    _q, t_el, g2, g2_err, labels = xf.get_g2_data()
    with h5py.File(out, "r") as f:
        ours = f["/xpcs/multitau/normalized_g2"][()]
        tau = f["/xpcs/multitau/delay_list"][()]
    np.testing.assert_allclose(g2, ours)
    np.testing.assert_allclose(t_el, tau * 0.002 * 2)
    assert len(labels) == ours.shape[1] and g2_err.shape == ours.shape
    assert xf.c2_processed_bins.tolist() == [1, 2]
    c2 = xf.get_twotime_c2(selection=0)
    assert c2["c2_mat"].shape == (100, 100)
