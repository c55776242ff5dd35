"""Apps that leave result artifacts, good and bad (copied into a site's apps folder)."""

from __future__ import annotations

import os

from beambridge.apps.artifacts import ARTIFACT_DIR
from beambridge.apps.base import ApplicationDefinition
from beambridge.schemas.artifacts import BinFit, XpcsG2


class Summarised(ApplicationDefinition):
    """Saves a g2 artifact, and leaves files the launcher must refuse without harm."""

    def run(self, n_q: int = 2) -> int:
        tau = [0.001 * 2**i for i in range(8)]
        self.save_artifact(
            "g2",
            XpcsG2(
                q=[0.001 * (k + 1) for k in range(n_q)], tau_s=tau,
                g2=[[1.0 + 0.2 * 0.5**i for i in range(8)] for _ in range(n_q)],
                fit=[BinFit(beta=0.2, gamma=300.0)] * n_q,
            ),
        )  # fmt: skip
        folder = self.workdir / ARTIFACT_DIR
        (folder / "broken.json").write_text('{"kind": "xpcs.g2", "q": [')
        (folder / "Bad Name.json").write_text("{}")
        (folder / "huge.json").write_bytes(b" " * (600 * 1024))
        os.symlink("/dev/zero", folder / "endless.json")
        return n_q
