"""The ``beambridge`` console script: ``xpcs corr`` goes to the warm worker when it can
(:mod:`beambridge.cli.xpcs_worker`), everything else (and ``xpcs corr`` when the worker cannot take it)
to :func:`beambridge.cli.main.run`. Nothing heavy is imported before that choice is made."""

from __future__ import annotations

import sys


def run() -> None:
    """The console script's entry point."""
    argv = sys.argv[1:]
    if argv[:2] == ["xpcs", "corr"]:
        from beambridge.cli import xpcs_worker

        if xpcs_worker.wants_worker(argv):
            status = xpcs_worker.run_via_worker(argv)
            if status is not None:
                sys.exit(status)
    from beambridge.cli.main import run as run_here

    run_here()
