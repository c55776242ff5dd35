"""A dataset's identity: the idempotency key that makes a submission happen once.

The key of a file is its path, size, modification time (ns) and SHA-256: a file rewritten in place (new
content or a new mtime) is a new dataset; the same file seen again — by a restarted watcher, say — is not.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_BLOCK = 4 << 20


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def dataset_key(path: Path, *, stat: os.stat_result | None = None, sha256: str | None = None) -> str:
    """``file:<absolute path>:<size>:<mtime ns>:<sha256>`` for a complete file (at most 512 characters:
    a very long path is replaced by its own SHA-256)."""
    path = path.resolve()
    stat = stat or path.stat()
    digest = sha256 or file_sha256(path)
    where = str(path)
    if len(where) > 300:
        where = "sha256-of-path:" + hashlib.sha256(where.encode()).hexdigest()
    return f"file:{where}:{stat.st_size}:{stat.st_mtime_ns}:{digest}"
