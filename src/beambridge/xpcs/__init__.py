"""XPCS analysis usable without any server: readers, q partitions, correlators, writer, simulator, fits.

Where things live, in the order the data flows:

* ``io/`` reads raw frames (HDF5, IMM, Rigaku) behind one interface; ``events.py`` is the sparse form
  (photon events) that readers, pre-processing and correlators share;
* ``preprocess.py`` selects and corrects frames (range, stride, averaging, dark, flat, normalisation);
* ``qmap.py`` / ``qmap_geometry.py`` the q partition;
* ``multitau/`` the multi-tau correlator (delay schedule, dense and sparse kernels, g2(q, τ) with its
  error bars); ``twotime.py`` two-time correlation;
* ``result_file.py`` writes and reads the pyXPCSViewer layout; ``fitting.py`` and ``plotting.py`` fit
  and draw it; ``simulate.py`` makes speckle with known dynamics;
* ``pipeline.py`` ties one dataset together (``correlate`` / ``run_multitau`` / ``run_twotime``).
"""

import os

# numba's OpenMP threads otherwise spin after every parallel kernel, waiting for the next one: on a
# shared machine that takes CPU from everyone else (measured: 1 Mpx event data to g2, 0.30 → 0.23 CPU-s
# on 2 threads; 0.11 → 0.08 at a tenth of the photons), and it only saves a wake-up of microseconds
# per kernel, which lasts milliseconds. Read once, when the OpenMP runtime loads: set before any kernel.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
