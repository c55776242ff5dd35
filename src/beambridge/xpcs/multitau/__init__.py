"""Multi-tau correlation: the streaming correlator and what it is made of.

``delays`` (the delay schedule), ``dense`` and ``sparse`` (the numba kernels over frames and over
per-pixel events), ``correlator`` (:class:`MultiTauCorrelator`, which feeds them and keeps the state),
``bins`` (from the state straight to g2(q, τ)), ``g2norm`` (the same from per-pixel sums).
"""

from beambridge.xpcs.multitau.bins import BinLabels, G2Result
from beambridge.xpcs.multitau.correlator import Mode, MultiTauCorrelator, PixelSums

__all__ = ["BinLabels", "G2Result", "Mode", "MultiTauCorrelator", "PixelSums"]
