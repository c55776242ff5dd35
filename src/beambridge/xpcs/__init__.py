"""XPCS analysis usable without any server: readers, q partitions, correlators, writer, simulator, fits.

Where things live: ``frames*.py`` read raw data, ``qmap*.py`` the q partition, ``delays.py`` +
``multitau*.py`` correlate, ``g2norm.py`` normalises, ``twotime.py`` two-time, ``result_file.py``
writes/reads the pyXPCSViewer layout, ``simulate.py``, ``fitting.py``, ``plotting.py``, and
``pipeline.py`` ties one dataset together (``run_multitau`` / ``run_twotime``).
"""
