"""The folder watcher: a complete dataset in a folder becomes one submission of a workflow, exactly once.

A file is a dataset when its name matches ``pattern``; it is **complete** when

- ``marker`` is set: its marker file exists (``"{name}.done"`` → ``A001.h5.done`` next to ``A001.h5``),
  and its size and mtime have not changed between two looks; or
- otherwise: its size and mtime have not changed between two looks and it was last written at least
  ``settle_s`` ago (the writer closed it and is not coming back).

Events come from ``watchdog`` (inotify on Linux: a close-after-write is seen the moment it happens); a
full rescan every ``rescan_s`` catches anything an event queue overflow lost, and the first scan at start
finds what arrived while the watcher was down.

**Quick look while the detector writes** (``live=True``): an HDF5 file that a detector writes in SWMR
mode and that announces its frame count is submitted the moment its first frame is on disk, with the
template variable ``live`` true (so a workflow's quick look can say ``follow: '{{ live | default(false) }}'``
and correlate the frames as they land). Its key comes from what the writer fixed at the start
(:func:`~beambridge.beamline.datasets.live_key`); when the file closes, the watcher sends the same key again
with the time it closed, which the service records on the existing submission (the latency from the last
frame to the quick look is then measured like any other). A file that never shows itself as a growing
SWMR file is submitted when complete, as without ``live``.

**Datasets of several files** (``group``): a regular expression over each file's path relative to the
watched folder names the dataset it belongs to (its group ``dataset``, else its first group); the files
with the same name are one dataset, submitted once when complete: every file unchanged between two looks
and, with ``group_files``, that many of them there; with ``marker``, its marker (``{name}`` is the
dataset's name, relative to the folder: ``{name}/DONE``, ``{name}.done``) exists; otherwise the newest
file written at least ``settle_s`` ago. Its key covers every file (relative path, size, mtime,
SHA-256), so a restarted watcher repeats it and a dataset that gains a file later is a new one.

**Exactly once, across kill -9.** Each complete file is submitted with the idempotency key of
:func:`~beambridge.beamline.datasets.dataset_key` (path, size, mtime, SHA-256), and the service keeps keys
unique per user: a watcher killed after submitting but before noting it simply submits again on restart
and is answered with the existing jobs. The local journal (one JSON line per submitted file, flushed and
fsync'd) only spares a restarted watcher from hashing files it already sent.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from beambridge.beamline.datasets import (
    HDF5_SUFFIXES,
    LiveFile,
    dataset_key,
    dataset_key_path,
    file_sha256,
    live_key,
)
from beambridge.client import Client
from beambridge.client.errors import BeambridgeError, ValidationError
from beambridge.schemas.workflows import SubmissionAnswer, SubmissionSource

log = logging.getLogger("beambridge.beamline.watcher")

LIVE_RETRY_S = 0.2
"""Seconds between looks at a growing file that does not yet show itself as a live acquisition."""


@dataclass(frozen=True)
class CompletionRule:
    """When a file in the watched folder is a complete dataset."""

    pattern: str = "*.h5"
    settle_s: float = 1.0
    marker: str | None = None
    recursive: bool = True
    ignore: tuple[str, ...] = (".*", "*.tmp", "*.part", "*~")
    live: bool = False
    """Submit a growing SWMR HDF5 file as soon as its first frame is written (see the module docstring)."""
    group: str | None = None
    """A regex over paths relative to the folder naming a multi-file dataset (see the module docstring)."""
    group_files: int | None = None
    """With ``group``: how many files make a dataset complete."""

    def group_of(self, relative: str) -> str | None:
        """The multi-file dataset ``relative`` (a path relative to the folder) belongs to, if any."""
        if self.group is None:
            return None
        found = re.search(self.group, relative)
        if found is None:
            return None
        name = found.groupdict().get("dataset") or (found.group(1) if found.groups() else found.group(0))
        return name.strip("/") or None

    def group_marker(self, root: Path, name: str) -> Path | None:
        """The marker file that says the multi-file dataset ``name`` is complete (None without one)."""
        if self.marker is None:
            return None
        return root / self.marker.format(name=name, stem=name)

    def is_dataset(self, path: Path) -> bool:
        """Whether ``path``'s name makes it a dataset (not a marker, not a temporary file)."""
        name = path.name
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.ignore):
            return False
        if self.marker is not None and self.dataset_of_marker(path) is not None:
            return False
        return fnmatch.fnmatchcase(name, self.pattern)

    def marker_of(self, path: Path) -> Path | None:
        """The marker file that says ``path`` is complete (None without a marker rule)."""
        if self.marker is None:
            return None
        return path.with_name(self.marker.format(name=path.name, stem=path.stem))

    def dataset_of_marker(self, path: Path) -> Path | None:
        """The dataset a marker file ``path`` stands for, if it is one."""
        if self.marker is None:
            return None
        prefix, _, suffix = self.marker.partition("{name}")
        if "{name}" in self.marker and path.name.startswith(prefix) and path.name.endswith(suffix):
            inner = path.name[len(prefix) : len(path.name) - len(suffix)]
            return path.with_name(inner) if inner else None
        if "{stem}" in self.marker:
            prefix, _, suffix = self.marker.partition("{stem}")
            if path.name.startswith(prefix) and path.name.endswith(suffix):
                stem = path.name[len(prefix) : len(path.name) - len(suffix)]
                for candidate in path.parent.glob(f"{glob_escape(stem)}.*"):
                    if candidate != path and fnmatch.fnmatchcase(candidate.name, self.pattern):
                        return candidate
        return None


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters taken literally."""
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in text)


class Journal:
    """The files this watcher already submitted: ``{path: (size, mtime_ns)}``, one fsync'd JSON line each.

    Only an optimisation (see the module's docstring): losing it costs a re-hash and an idempotent repeat.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, tuple[int, int]] = {}
        self.live: dict[str, str] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    if "size" in entry:
                        self.done[entry["path"]] = (int(entry["size"]), int(entry["mtime_ns"]))
                    else:
                        self.live[entry["path"]] = str(entry["live_key"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill: that file is simply looked at again
        self._handle = path.open("a", encoding="utf-8")

    def seen(self, path: Path, stat: os.stat_result) -> bool:
        """Whether this exact file (same size and mtime) was submitted already."""
        return self.done.get(str(path)) == (stat.st_size, stat.st_mtime_ns)

    def record(self, path: Path, stat: os.stat_result, **extra: Any) -> None:
        """Note that ``path`` was submitted (or refused for good)."""
        self._write({"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, **extra})
        self.done[str(path)] = (stat.st_size, stat.st_mtime_ns)

    def record_signature(self, path: Path, size: int, mtime_ns: int, **extra: Any) -> None:
        """Note that the dataset ``path`` (several files: their total size, newest mtime) was submitted."""
        self._write({"path": str(path), "size": size, "mtime_ns": mtime_ns, **extra})
        self.done[str(path)] = (size, mtime_ns)

    def record_live(self, path: Path, key: str, **extra: Any) -> None:
        """Note that the growing file ``path`` was submitted under ``key`` (its close is still to come)."""
        self._write({"path": str(path), "live_key": key, **extra})
        self.live[str(path)] = key

    def _write(self, entry: dict[str, Any]) -> None:
        self._handle.write(json.dumps(entry) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the journal file."""
        self._handle.close()


def held_by_a_writer(path: Path) -> bool:
    """True when an HDF5 file is still open for writing: HDF5's own file lock refuses a plain reader
    ("unable to lock file"). Other files, and HDF5 with file locking switched off, answer False."""
    if path.suffix.lower() not in HDF5_SUFFIXES:
        return False
    import h5py

    try:
        h5py.File(path, "r").close()
    except OSError as err:
        return "unable to lock file" in str(err)
    except Exception:  # a corrupt file is not held by anyone; it is submitted and fails alone
        return False
    return False


def read_metadata(path: Path) -> dict[str, Any]:
    """Scalar attributes of an HDF5 file's root and ``/entry`` (for templates); {} for other files."""
    if path.suffix.lower() not in HDF5_SUFFIXES:
        return {}
    try:
        import h5py
        import numpy as np

        out: dict[str, Any] = {}
        try:  # a file a detector still writes opens only as a SWMR reader
            opened = h5py.File(path, "r", libver="latest", swmr=True)
        except OSError:
            opened = h5py.File(path, "r")
        with opened as handle:
            for group in (handle, handle.get("entry")):
                if not isinstance(group, h5py.Group):
                    continue
                for key, value in group.attrs.items():
                    if isinstance(value, bytes):
                        value = value.decode(errors="replace")
                    elif isinstance(value, np.generic):
                        value = value.item()
                    if isinstance(value, str | int | float | bool):
                        out[key] = value
            data = handle.get("entry/data/data")
            if isinstance(data, h5py.Dataset):
                out.setdefault("frames", int(data.shape[0]))
                out.setdefault("shape", [int(n) for n in data.shape[1:]])
        return out
    except Exception as err:  # an unreadable file still gets analysed; its metadata is just empty
        log.warning("event=metadata_unreadable path=%s error=%s", path, err)
        return {}


REFUSED = object()
"""What :meth:`FolderWatcher._send` answers for a dataset the service refuses for good."""


@dataclass
class _Candidate:
    signature: tuple[int, int] | None = None
    looks: int = 0
    retry_at: float = 0.0
    failures: int = 0
    live_key: str | None = None
    live_at: float = 0.0


@dataclass
class _Group:
    members: set[Path] = field(default_factory=set)
    signature: tuple[tuple[str, int, int], ...] | None = None
    retry_at: float = 0.0
    failures: int = 0


@dataclass
class WatcherStats:
    """What one watcher did."""

    submitted: int = 0
    live: int = 0
    repeated: int = 0
    refused: int = 0
    errors: int = 0
    answers: list[SubmissionAnswer] = field(default_factory=list)


class FolderWatcher:
    """Watches ``root`` and submits each complete dataset to ``workflow`` once (see the module docstring)."""

    def __init__(
        self,
        client: Client,
        root: Path,
        workflow: str,
        rule: CompletionRule,
        journal: Path,
        *,
        poll_s: float = 0.1,
        rescan_s: float = 30.0,
        on_submitted: Callable[[Path, SubmissionAnswer], None] | None = None,
    ) -> None:
        self.client = client
        self.root = root.resolve()
        self.workflow = workflow
        self.rule = rule
        self.journal = Journal(journal)
        self.poll_s = poll_s
        self.rescan_s = rescan_s
        self.on_submitted = on_submitted
        self.stats = WatcherStats()
        self._events: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._candidates: dict[Path, _Candidate] = {}
        self._groups: dict[str, _Group] = {}

    # -- events -------------------------------------------------------------------------------------

    def _notice(self, path: Path) -> None:
        if self.rule.group is not None:
            self._notice_group(path)
            return
        dataset = self.rule.dataset_of_marker(path)
        if dataset is not None:
            path = dataset
        if self.rule.is_dataset(path) and (self.rule.recursive or path.parent == self.root):
            self._candidates.setdefault(path, _Candidate())

    def _notice_group(self, path: Path) -> None:
        try:
            relative = path.relative_to(self.root).as_posix()
        except ValueError:
            return
        name = self.rule.group_of(relative)
        if name is None:
            for known, group in self._groups.items():  # a marker: look at its dataset again
                if self.rule.group_marker(self.root, known) == path:
                    group.retry_at = 0.0
            return
        if not self.rule.is_dataset(path) or (not self.rule.recursive and path.parent != self.root):
            return
        self._groups.setdefault(name, _Group()).members.add(path)

    def _scan(self) -> None:
        walker = self.root.rglob("*") if self.rule.recursive else self.root.glob("*")
        for path in walker:
            try:
                if path.is_file():
                    self._notice(path)
            except OSError:
                continue

    def _observer(self) -> Any:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        events = self._events

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory:
                    return
                target = getattr(event, "dest_path", "") or event.src_path
                events.put(Path(os.fsdecode(target)))

        observer = Observer()
        observer.schedule(Handler(), str(self.root), recursive=self.rule.recursive)
        return observer

    # -- the loop -----------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> WatcherStats:
        """Watch until ``stop`` is set (forever without one)."""
        stop = stop or threading.Event()
        observer = self._observer()
        observer.start()
        log.info("event=watching root=%s workflow=%s pattern=%s", self.root, self.workflow, self.rule.pattern)
        try:
            self._scan()
            next_scan = time.monotonic() + self.rescan_s
            while not stop.is_set():
                while True:
                    try:
                        self._notice(self._events.get_nowait())
                    except queue.Empty:
                        break
                if time.monotonic() >= next_scan:
                    self._scan()
                    next_scan = time.monotonic() + self.rescan_s
                self.check()
                stop.wait(self.poll_s)
        finally:
            observer.stop()
            observer.join(timeout=5)
            self.journal.close()
        return self.stats

    def check(self) -> None:
        """Look at every candidate once; submit those that are complete."""
        now_wall, now = time.time(), time.monotonic()
        for name, group in list(self._groups.items()):
            if group.retry_at <= now and self._check_group(name, group, now_wall):
                del self._groups[name]
        for path, cand in list(self._candidates.items()):
            if cand.retry_at > now:
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                del self._candidates[path]
                continue
            except OSError:
                continue
            if self.journal.seen(path, stat):
                del self._candidates[path]
                continue
            if self.rule.live and cand.live_key is None and cand.live_at <= now:
                cand.live_at = now + LIVE_RETRY_S
                live = live_key(path)
                if live is not None and self._submit_live(path, live, cand):
                    cand.live_key = live.key
            signature = (stat.st_size, stat.st_mtime_ns)
            steady = signature == cand.signature
            cand.signature = signature
            cand.looks += 1
            if not steady:
                continue
            marker = self.rule.marker_of(path)
            if marker is not None:
                if not marker.exists():
                    continue
            elif now_wall - stat.st_mtime < self.rule.settle_s:
                continue
            elif held_by_a_writer(path):
                continue  # a pause longer than settle_s (a loaded machine) is not a closed file
            if self._submit(path, stat, cand):
                del self._candidates[path]

    def _check_group(self, name: str, group: _Group, now_wall: float) -> bool:
        """Submit the multi-file dataset ``name`` if it is complete; True once done with it."""
        files: list[tuple[Path, os.stat_result]] = []
        for path in sorted(group.members):
            try:
                files.append((path, path.stat()))
            except FileNotFoundError:
                group.members.discard(path)
            except OSError:
                return False
        if not files:
            return True
        signature = tuple((str(p.relative_to(self.root)), st.st_size, st.st_mtime_ns) for p, st in files)
        steady, group.signature = signature == group.signature, signature
        dataset = self.root / name
        total = (sum(st.st_size for _, st in files), max(st.st_mtime_ns for _, st in files))
        if self.journal.done.get(str(dataset)) == total:
            return True
        if not steady or (self.rule.group_files is not None and len(files) < self.rule.group_files):
            return False
        marker = self.rule.group_marker(self.root, name)
        if marker is not None:
            if not marker.exists():
                return False
        elif now_wall - total[1] / 1e9 < self.rule.settle_s:
            return False
        elif any(held_by_a_writer(path) for path, _ in files):
            return False  # a member's writer paused longer than settle_s; it has not closed the file
        return self._submit_group(dataset, files, group)

    def _submit_group(self, dataset: Path, files: list[tuple[Path, os.stat_result]], group: _Group) -> bool:
        digest = hashlib.sha256()
        members = []
        try:
            for path, stat in files:
                sha = file_sha256(path)
                if path.stat().st_mtime_ns != stat.st_mtime_ns:  # written to while hashed
                    group.signature = None
                    return False
                relative = path.relative_to(self.root).as_posix()
                digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\0{sha}\n".encode())
                members.append({"path": str(path), "name": relative, "size": stat.st_size, "sha256": sha})
        except OSError as err:
            log.warning("event=unreadable path=%s error=%s", dataset, err)
            group.signature = None
            return False
        newest = max(stat.st_mtime_ns for _, stat in files)
        closed = datetime.fromtimestamp(newest / 1e9, UTC)
        size = sum(stat.st_size for _, stat in files)
        key = f"files:{dataset_key_path(dataset)}:{len(files)}:{digest.hexdigest()}"
        first_hdf5 = next((p for p, _ in files if p.suffix.lower() in HDF5_SUFFIXES), None)
        context = {
            "files": members,
            "file": {"size": size, "mtime": closed.isoformat(), "count": len(files)},
            "metadata": read_metadata(first_hdf5) if first_hdf5 is not None else {},
        }
        answer = self._send(dataset, key, context, closed, group)
        if answer is None:
            return False
        self.journal.record_signature(dataset, size, newest, key=key, files=len(files))
        if answer is not REFUSED:
            assert isinstance(answer, SubmissionAnswer)
            self._answered(dataset, answer, live=False)
        return True

    def _submit_live(self, path: Path, live: LiveFile, cand: _Candidate) -> bool:
        """Submit a growing file under its live key; True once the service has it (or refused it)."""
        if self.journal.live.get(str(path)) == live.key:
            return True  # sent before a restart: only its close is left to report
        metadata = {**read_metadata(path), "frames": live.expected_frames}
        context = {"live": True, "file": {"expected_frames": live.expected_frames}, "metadata": metadata}
        answer = self._send(path, live.key, context, None, cand)
        if answer is None:
            return False
        if answer is not REFUSED:
            assert isinstance(answer, SubmissionAnswer)
            self.stats.live += 1
            self._answered(path, answer, live=True)
        self.journal.record_live(path, live.key)
        return True

    def _submit(self, path: Path, stat: os.stat_result, cand: _Candidate) -> bool:
        closed = datetime.fromtimestamp(stat.st_mtime_ns / 1e9, UTC)
        live = None
        if self.rule.live and cand.live_key is None:
            live = live_key(path)  # a live acquisition that closed before (or while) no watcher ran
        if cand.live_key is not None or live is not None:
            key = cand.live_key or (live.key if live is not None else "")
            frames = live.expected_frames if live is not None else None
            context: dict[str, Any] = {"live": True, "metadata": read_metadata(path)}
            if frames is not None:
                context["metadata"]["frames"] = frames
        else:
            try:
                sha = file_sha256(path)
            except OSError as err:
                log.warning("event=unreadable path=%s error=%s", path, err)
                cand.signature = None
                return False
            if path.stat().st_mtime_ns != stat.st_mtime_ns:  # written to while hashed: not complete
                cand.signature = None
                return False
            key = dataset_key(path, stat=stat, sha256=sha)
            context = {
                "file": {"size": stat.st_size, "mtime": closed.isoformat(), "sha256": sha},
                "metadata": read_metadata(path),
            }
        answer = self._send(path, key, context, closed, cand)
        if answer is None:
            return False
        if answer is REFUSED:
            self.journal.record(path, stat, refused=True)
            return True
        assert isinstance(answer, SubmissionAnswer)
        self.journal.record(path, stat, key=key, submission_id=answer.submission.id)
        if cand.live_key is None:
            self._answered(path, answer, live=live is not None)
        else:  # submitted while it grew: this only reports the close
            log.info("event=closed path=%s submission=%d closed_at=%s", path, answer.submission.id, closed)
        return True

    def _send(
        self,
        path: Path,
        key: str,
        context: dict[str, Any],
        closed: datetime | None,
        cand: _Candidate | _Group,
    ) -> SubmissionAnswer | object | None:
        """Submit; the answer, :data:`REFUSED` (refused for good), or None (try again later)."""
        try:
            return self.client.submissions.submit(
                self.workflow,
                key=key,
                dataset=str(path),
                context=context,
                closed_at=closed,
                source=SubmissionSource.WATCHER,
            )
        except BeambridgeError as err:
            if isinstance(err, ValidationError):
                # The service refuses this dataset for good (e.g. the name does not fit the workflow):
                # the caller notes it so it is not sent again, and says so.
                log.error("event=refused path=%s error=%s", path, err)
                self.stats.refused += 1
                return REFUSED
            cand.failures += 1
            wait = min(30.0, 0.5 * 2**cand.failures)
            cand.retry_at = time.monotonic() + wait
            self.stats.errors += 1
            log.warning("event=submit_failed path=%s error=%s retry_in_s=%.1f", path, err, wait)
            return None

    def _answered(self, path: Path, answer: SubmissionAnswer, *, live: bool) -> None:
        if answer.created:
            self.stats.submitted += 1
        else:
            self.stats.repeated += 1
        self.stats.answers.append(answer)
        log.info(
            "event=submitted path=%s submission=%d created=%s live=%s jobs=%s",
            path,
            answer.submission.id,
            answer.created,
            live,
            answer.submission.job_ids,
        )
        if self.on_submitted is not None:
            self.on_submitted(path, answer)


def default_journal(root: Path, workflow: str) -> Path:
    """Where a watcher of ``root`` for ``workflow`` keeps its journal: under ``$BEAMBRIDGE_HOME/watch``."""
    import hashlib

    from beambridge.client.credentials import beambridge_home

    digest = hashlib.sha256(f"{root.resolve()}\0{workflow}".encode()).hexdigest()[:16]
    return beambridge_home() / "watch" / f"{workflow}-{digest}.jsonl"
