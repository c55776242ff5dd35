"""Result artifacts: small, typed summaries of a job's results that the console draws.

An app writes reduced results (never raw data) next to its output; the launcher uploads them when the run
ends. Each artifact has a ``kind`` whose shape is checked here, on both ends: the app's side refuses to
write one that the service would refuse, and the service refuses (422, naming the field) what does not
fit. Everything is bounded: sizes of arrays, bytes per artifact, artifacts per job.

Kinds:

- ``xpcs.g2`` — multi-tau g2(q, τ): ``q`` (Å⁻¹, one per dynamic bin), ``tau_s`` (delays, s), ``g2``
  (``[bin][delay]``, ``null`` where undefined), optional ``g2_err`` of the same shape, optional ``fit``
  per bin (g2 = baseline + beta·exp(-2·gamma·τ)), optional ``D`` / ``D_err`` (Å²/s).
- ``xpcs.twotime`` — a two-time map C(t1, t2) of one bin, at most 256 × 256 (bin the frames to fit):
  ``c2`` (square, ``null`` allowed), ``dt_s`` (seconds per row), ``q`` (Å⁻¹), ``bin``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, TypeAdapter, model_validator

from beambridge.schemas.common import InputModel, OutputModel, UtcDatetime

MAX_ARTIFACT_BYTES = 512 * 1024
"""Largest artifact (its JSON encoding)."""
MAX_ARTIFACTS_PER_JOB = 16
MAX_Q = 128
MAX_TAU = 512
MAX_TWOTIME = 256

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
ARTIFACT_NAME_RULE = (
    "1-64 characters: lower-case letters, digits, '_', '.', '-' (starting with a letter or digit)"
)


def check_artifact_name(name: str) -> str:
    """An artifact's name, or ValueError saying what a name may hold."""
    if not _NAME.match(name):
        raise ValueError(f"artifact name {name[:80]!r} is not valid: {ARTIFACT_NAME_RULE}")
    return name


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Finite = Annotated[float, AfterValidator(_finite)]
Cell = Finite | None


def _shape(rows: list[list[Any]], n_rows: int, n_cols: int, what: str) -> None:
    if len(rows) != n_rows:
        raise ValueError(f"{what} has {len(rows)} rows; expected {n_rows}")
    for i, row in enumerate(rows):
        if len(row) != n_cols:
            raise ValueError(f"{what}[{i}] has {len(row)} values; expected {n_cols}")


class BinFit(InputModel):
    """One bin's fit: g2(τ) = baseline + beta·exp(-2·gamma·τ)."""

    beta: Finite
    gamma: Annotated[Finite, Field(ge=0)]
    baseline: Finite = 1.0


class XpcsG2(InputModel):
    """Multi-tau g2 curves of an XPCS job and (optionally) their fits."""

    kind: Literal["xpcs.g2"] = "xpcs.g2"
    q: Annotated[list[Finite], Field(min_length=1, max_length=MAX_Q)]
    tau_s: Annotated[list[Annotated[Finite, Field(gt=0)]], Field(min_length=1, max_length=MAX_TAU)]
    g2: list[list[Cell]]
    g2_err: list[list[Cell]] | None = None
    fit: Annotated[list[BinFit | None], Field(max_length=MAX_Q)] | None = None
    D: Finite | None = None
    D_err: Finite | None = None
    title: Annotated[str, Field(max_length=200)] = ""

    @model_validator(mode="after")
    def _shapes(self) -> XpcsG2:
        _shape(self.g2, len(self.q), len(self.tau_s), "g2")
        if self.g2_err is not None:
            _shape(self.g2_err, len(self.q), len(self.tau_s), "g2_err")
        if self.fit is not None and len(self.fit) != len(self.q):
            raise ValueError(f"fit has {len(self.fit)} entries; expected one per q ({len(self.q)})")
        if any(b <= a for a, b in zip(self.tau_s, self.tau_s[1:], strict=False)):
            raise ValueError("tau_s must increase")
        return self


class XpcsTwoTime(InputModel):
    """A two-time correlation map C(t1, t2) of one dynamic bin."""

    kind: Literal["xpcs.twotime"] = "xpcs.twotime"
    c2: Annotated[list[list[Cell]], Field(min_length=1, max_length=MAX_TWOTIME)]
    dt_s: Annotated[Finite, Field(gt=0)]
    q: Finite | None = None
    bin: Annotated[int, Field(ge=0, le=100_000)] | None = None
    title: Annotated[str, Field(max_length=200)] = ""

    @model_validator(mode="after")
    def _square(self) -> XpcsTwoTime:
        _shape(self.c2, len(self.c2), len(self.c2), "c2")
        return self


ArtifactBody = Annotated[XpcsG2 | XpcsTwoTime, Field(discriminator="kind")]
ARTIFACT_KINDS = ("xpcs.g2", "xpcs.twotime")
artifact_adapter: TypeAdapter[XpcsG2 | XpcsTwoTime] = TypeAdapter(ArtifactBody)


class ArtifactInfo(OutputModel):
    """An artifact as listed (without its content)."""

    job_id: int
    name: str
    kind: str
    size_bytes: int
    created_at: UtcDatetime
    updated_at: UtcDatetime


class Artifact(ArtifactInfo):
    """An artifact with its content."""

    content: dict[str, Any]
