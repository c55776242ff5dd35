"""Errors raised by :mod:`beambridge.xpcs`.

Every error names the file it is about and the problem in one sentence, so a command-line tool can
print ``str(error)`` as its single line of output::

    XpcsError
    ├── InputFileError        a raw-data or q-partition file is missing, truncated or malformed
    │   └── MissingDatasetError   an HDF5 dataset the layout requires is absent
    ├── ShapeMismatchError    two inputs disagree about the detector size (or a dataset has the wrong rank)
    ├── EmptyBinError         a q bin that must be analysed has no pixels
    └── OptionError           an analysis option is invalid (frame range, stride, bins, …)
"""

from __future__ import annotations

from pathlib import Path


class XpcsError(Exception):
    """Base class of every error raised by :mod:`beambridge.xpcs`."""


class InputFileError(XpcsError):
    """A file cannot be used: it is missing, truncated or not in the expected layout."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class MissingDatasetError(InputFileError):
    """An HDF5 file lacks a dataset its layout requires."""

    def __init__(self, path: str | Path, dataset: str) -> None:
        self.dataset = dataset
        super().__init__(path, f"missing dataset {dataset}")


class ShapeMismatchError(InputFileError):
    """Array shapes disagree (for example the q-partition and the detector frames)."""


class EmptyBinError(InputFileError):
    """A q bin that has to be analysed contains no pixels."""


class OptionError(XpcsError):
    """An analysis option is out of range or inconsistent with the data."""
