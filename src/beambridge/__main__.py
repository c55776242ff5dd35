"""``python -m beambridge`` is the ``beambridge`` command (pilots use it with the nodes' Python)."""

from beambridge.cli.entry import run

if __name__ == "__main__":
    run()
