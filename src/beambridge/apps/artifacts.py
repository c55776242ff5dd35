"""Result artifacts on the site's side: an app saves them in its workdir, the launcher uploads them.

An app calls :func:`save_artifact` (or ``self.save_artifact`` in an app class) with a model from
:mod:`beambridge.schemas.artifacts`; the artifact is checked and its size bounded here, so what reaches
the service is what it accepts. The launcher reads them back with :func:`collect_artifacts` (bounded
reads of regular files only: a job may leave anything in its workdir) and uploads them before it
reports the run done.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import orjson
from pydantic import ValidationError

from beambridge.schemas.artifacts import (
    MAX_ARTIFACT_BYTES,
    MAX_ARTIFACTS_PER_JOB,
    XpcsG2,
    XpcsTwoTime,
    artifact_adapter,
    check_artifact_name,
)

ARTIFACT_DIR = ".beambridge-artifacts"


class ArtifactError(ValueError):
    """An artifact the service would refuse (names it and why)."""


def save_artifact(workdir: Path | str, name: str, artifact: XpcsG2 | XpcsTwoTime) -> Path:
    """Write one artifact where the launcher collects it; its path."""
    try:
        check_artifact_name(name)
    except ValueError as exc:
        raise ArtifactError(str(exc)) from None
    body = orjson.dumps(artifact.model_dump(mode="json", exclude_none=True))
    if len(body) > MAX_ARTIFACT_BYTES:
        raise ArtifactError(
            f"artifact {name!r} is {len(body):,} bytes of JSON; at most {MAX_ARTIFACT_BYTES:,} are kept"
        )
    folder = Path(workdir) / ARTIFACT_DIR
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.json"
    partial = folder / f".{name}.json.partial"
    partial.write_bytes(body)
    partial.replace(path)  # never a half-written artifact under its name
    return path


@dataclass
class Collected:
    """What a run left: artifacts ready to upload, and those refused already here (name → why)."""

    ready: dict[str, XpcsG2 | XpcsTwoTime]
    refused: dict[str, str]


def _read_bounded(path: Path) -> bytes | str:
    """The file's bytes, or why it was not read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "is not a regular file"
        if info.st_size > MAX_ARTIFACT_BYTES:
            return f"is {info.st_size:,} bytes; at most {MAX_ARTIFACT_BYTES:,} are kept"
        return os.read(fd, MAX_ARTIFACT_BYTES + 1)
    finally:
        os.close(fd)


def collect_artifacts(workdir: Path) -> Collected:
    """The artifacts a run saved in ``workdir`` (at most 16, each checked), and the ones refused."""
    folder = workdir / ARTIFACT_DIR
    out = Collected({}, {})
    try:
        if not folder.is_dir() or folder.is_symlink():
            return out
        names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".json"))
    except OSError:
        return out
    for file_name in names:
        name = file_name.removesuffix(".json")
        if len(out.ready) >= MAX_ARTIFACTS_PER_JOB:
            out.refused[name[:64]] = f"more than {MAX_ARTIFACTS_PER_JOB} artifacts"
            continue
        try:
            check_artifact_name(name)
        except ValueError as exc:
            out.refused[name[:64]] = str(exc)
            continue
        raw = _read_bounded(folder / file_name)
        if isinstance(raw, str):
            out.refused[name] = raw
            continue
        if len(raw) > MAX_ARTIFACT_BYTES:
            out.refused[name] = f"more than {MAX_ARTIFACT_BYTES:,} bytes"
            continue
        try:
            out.ready[name] = artifact_adapter.validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            out.refused[name] = f"not a valid artifact ({where}: {first['msg']})"
    return out
