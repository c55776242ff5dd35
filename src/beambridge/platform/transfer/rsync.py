"""The ``rsync`` backend: one rsync process over ssh per task, with the user's ssh key.

Remote and local names differ (a job's ``input.h5`` may be the remote ``scans/A001/data.h5``, and one
task batches many jobs), so each task works through a staging directory laid out like the remote side:

- ``out``: the staging directory holds symbolic links ``REMOTE_PATH → local file``; rsync sends them
  with ``--copy-links`` to the remote base (created with ``mkdir -p`` first).
- ``in``: rsync receives into the staging directory; after verification each file is hard-linked (or
  copied, checked and renamed) to its final local name by :class:`FilePlacer`.

rsync itself writes to temporary names and renames (``--partial-dir`` keeps interrupted partials out of
sight), and checks every transferred file against a whole-file checksum. When the task verifies
checksums. With the location's ``recheck``, skip decisions also use ``--checksum`` (so a redo replaces a
damaged copy whose size and time still match) and a second, dry-run ``--checksum`` pass must then find
nothing left to transfer; both read every file again. Redo is idempotent: an up-to-date remote file is skipped, and for ``in`` the
existing final files are linked into the staging directory first so that rsync skips them too.

rsync gets SIGTERM when the thread that started it ends (``PR_SET_PDEATHSIG`` on Linux; the thread
waits for rsync, so this happens only when the whole agent dies, e.g. ``kill -9``). On SIGTERM rsync
stops its receiver child and ssh and keeps the partial data in ``--partial-dir``, which a redo of the
same task resumes from; with SIGKILL the forked receiver would go on writing behind the agent's back.
Retrying is the service's job; :func:`classify_rsync_failure` says whether it can help.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from beambridge.logs import get_logger
from beambridge.platform.transfer.base import (
    Failure,
    FailureKind,
    Progress,
    ThreadedBackend,
    TransferError,
    TransferTask,
)
from beambridge.platform.transfer.local import FilePlacer, file_sha256, task_tag
from beambridge.schemas.apps import TransferDirection
from beambridge.schemas.common import InputModel

log = get_logger(__name__)

PARTIAL_DIR = ".rsync-partial"
STAGING_DIRNAME = ".beambridge-staging"
_VERIFY_PREFIX = "BBVERIFY:"
_FORBIDDEN_OPTIONS = ("--inplace", "--append", "--append-verify", "--remove-source-files", "--delete")

# rsync(1) EXIT VALUES. 255 comes from ssh; its message decides (see classify_rsync_failure).
_RETRYABLE_EXIT = frozenset({5, 6, 10, 11, 12, 14, 20, 21, 22, 24, 30, 35, 255})
_AUTH_ERROR = re.compile(
    r"permission denied \((publickey|password|keyboard|gssapi)"
    r"|permission denied, please try again|host key verification failed"
    r"|no more authentication methods|too many authentication failures"
    r"|remote host identification has changed|load key .*: (invalid format|bad permissions|no such file)"
    r"|identity file .* not accessible",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(
    r"(link_stat|change_dir|opendir|readlink_stat)\b.*failed: no such file or directory", re.I
)
_CONFIG_ERROR = re.compile(
    r"could not resolve hostname|name or service not known|permission denied \(13\)"
    r"|mkdir .* failed: permission denied|rsync: command not found|syntax or usage error",
    re.IGNORECASE,
)
_TRANSIENT = re.compile(
    r"connection refused|connection timed out|connection reset|broken pipe|network is unreachable"
    r"|no route to host|timeout|connection closed|no space left on device",
    re.IGNORECASE,
)


def classify_rsync_failure(returncode: int, stderr: str) -> Failure:
    """What an rsync exit status and its error output mean for a retry."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    message = f"rsync exited {returncode}: " + (" | ".join(lines[-6:])[-800:] or "(no output)")
    for pattern, kind in (
        (_AUTH_ERROR, FailureKind.AUTH),
        (_NOT_FOUND, FailureKind.NOT_FOUND),
        (_CONFIG_ERROR, FailureKind.CONFIG),
        (_TRANSIENT, FailureKind.TRANSIENT),
    ):
        if pattern.search(stderr):
            return Failure(kind, message)
    if returncode < 0:
        return Failure(FailureKind.TRANSIENT, message.replace("exited", "killed by signal", 1))
    return Failure(FailureKind.TRANSIENT if returncode in _RETRYABLE_EXIT else FailureKind.CONFIG, message)


@dataclass(frozen=True)
class RsyncStats:
    """The figures of ``rsync --stats``."""

    files_transferred: int = 0
    bytes_transferred: int = 0
    regular_files: int = 0


def _digits(text: str) -> int:
    return int(re.sub(r"[,.]", "", text))


def _stat_number(text: str, label: str) -> int | None:
    found = re.search(rf"^{re.escape(label)}:\s*([\d,.]+)", text, re.MULTILINE)
    return _digits(found.group(1)) if found else None


def parse_stats(stdout: str) -> RsyncStats:
    """Parse ``rsync --stats`` output (run with ``LC_ALL=C``; thousands separators are dropped)."""
    files = _stat_number(stdout, "Number of regular files transferred")
    nbytes = _stat_number(stdout, "Total transferred file size")
    if files is None or nbytes is None:
        raise ValueError("no rsync --stats figures in the output")
    listed = re.search(r"^Number of files:\s*([\d,.]+)(?:\s*\(([^)]*)\))?", stdout, re.MULTILINE)
    regular = files
    if listed and listed.group(2) is None:
        regular = _digits(listed.group(1))
    elif listed:
        reg = re.search(r"reg:\s*([\d,.]+)", listed.group(2))
        regular = _digits(reg.group(1)) if reg else 0
    return RsyncStats(files, nbytes, regular)


def parse_verify(stdout: str) -> list[str]:
    """Names a ``--dry-run --checksum`` pass would still transfer (files whose content differs)."""
    differing = []
    for line in stdout.splitlines():
        if line.startswith(_VERIFY_PREFIX):
            changes, _, name = line[len(_VERIFY_PREFIX) :].partition(":")
            if len(changes) >= 2 and changes[0] in "<>ch" and changes[1] == "f":
                differing.append(name)
    return differing


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent thread ends (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


_PREEXEC = _die_with_parent()


@dataclass(frozen=True)
class _Run:
    returncode: int
    stdout: str
    stderr: str


class RsyncLocation(InputModel):
    """A directory on a host reached by rsync over ssh with the user's key."""

    kind: Literal["rsync"] = "rsync"
    host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.\-]+$")
    user: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    path: str = Field(min_length=1, description="Base directory on the host (absolute, or under $HOME)")
    port: int = Field(default=22, ge=1, le=65535)
    key_file: Path | None = Field(default=None, description="Private key; None: ssh's own defaults/agent")
    ssh_options: list[str] = Field(
        default_factory=list, description="Extra `-o Key=Value` options; they win over the defaults"
    )
    rsync_options: list[str] = Field(default_factory=list, description="Extra rsync options (--bwlimit=…)")
    connect_timeout_s: int = Field(default=30, ge=1)
    io_timeout_s: int = Field(default=300, ge=1, description="rsync --timeout: abort after this idle time")
    recheck: bool = Field(
        default=False,
        description=(
            "After the transfer, a second `rsync --checksum --dry-run` pass must find nothing different. "
            "rsync already checks every file it transfers against a whole-file checksum before renaming it "
            "into place; the recheck also catches damage after that (a bad disk) at the price of reading "
            "everything again (about 20 % on large files)."
        ),
    )

    @field_validator("path")
    @classmethod
    def _home_relative(cls, value: str) -> str:
        """``~/x`` → ``x``: relative paths are under the remote $HOME already (and a quoted ``~`` is not)."""
        if value == "~":
            return "."
        return value[2:] or "." if value.startswith("~/") else value

    @field_validator("ssh_options")
    @classmethod
    def _key_value(cls, value: list[str]) -> list[str]:
        for option in value:
            if not re.match(r"^[A-Za-z][A-Za-z0-9]*=\S.*$", option):
                raise ValueError(f"ssh option {option!r} must look like Key=Value")
        return value


class RsyncBackend(ThreadedBackend):
    """Transfers to and from ``user@host:path`` with rsync over ssh; one thread + process per task."""

    kind = "rsync"
    location_model = RsyncLocation

    @classmethod
    def for_site(
        cls, location: RsyncLocation, *, site_root: Path | None = None, settings: Any = None
    ) -> RsyncBackend:
        """Partial files of inbound tasks are staged under the site directory's ``staging/``."""
        return cls(location, staging_root=site_root / "staging" if site_root is not None else None)

    def __init__(
        self,
        location: RsyncLocation,
        *,
        staging_root: Path | None = None,
        rsync: str = "rsync",
        ssh: str = "ssh",
    ) -> None:
        for option in location.rsync_options:
            if option.startswith(_FORBIDDEN_OPTIONS):
                raise ValueError(f"rsync option {option} would break the partial-file guarantee")
        self.location = location
        self.staging_root = staging_root
        self.rsync = rsync
        self.ssh = ssh

    # -- commands -----------------------------------------------------------------------------------

    def ssh_command(self) -> list[str]:
        """The ssh command rsync runs (user options first: ssh keeps the first value of an option)."""
        loc = self.location
        argv = [self.ssh]
        for option in loc.ssh_options:
            argv += ["-o", option]
        argv += ["-p", str(loc.port)]
        if loc.key_file is not None:
            argv += ["-i", str(loc.key_file), "-o", "IdentitiesOnly=yes"]
        for option in (
            "BatchMode=yes",
            "StrictHostKeyChecking=accept-new",
            f"ConnectTimeout={loc.connect_timeout_s}",
            "ServerAliveInterval=15",
            "ServerAliveCountMax=4",
        ):
            argv += ["-o", option]
        return argv

    def remote_base(self) -> str:
        """``user@host:BASE/``"""
        base = self.location.path.rstrip("/") or "/"
        return f"{self.location.user}@{self.location.host}:{base if base == '/' else base + '/'}"

    def rsync_argv(
        self, direction: TransferDirection, staging: Path, files_from: Path, *, checksum: bool
    ) -> list[str]:
        """The transfer command of a task (``--stats`` added by the caller, or the verify options)."""
        argv = [
            self.rsync,
            "--recursive",
            "--times",
            "--from0",
            f"--files-from={files_from}",
            f"--partial-dir={PARTIAL_DIR}",
            f"--timeout={self.location.io_timeout_s}",
            "-e",
            " ".join(shlex.quote(part) for part in self.ssh_command()),
        ]
        if checksum:
            argv.append("--checksum")
        if direction is TransferDirection.OUT:
            base = shlex.quote(self.location.path)
            argv += ["--copy-links", f"--rsync-path=mkdir -p {base} && rsync"]
        argv += self.location.rsync_options
        local, remote = f"{staging}/", self.remote_base()
        return [*argv, local, remote] if direction is TransferDirection.OUT else [*argv, remote, local]

    def task_dir(self, task: TransferTask) -> Path:
        """The task's own staging directory (``data/`` laid out like the remote side, ``files-from``)."""
        root = self.staging_root
        if root is None:
            parents = [str(item.local_path.parent) for item in task.files]
            root = Path(os.path.commonpath(parents)) / STAGING_DIRNAME
        return root / task.task_id

    # -- backend API --------------------------------------------------------------------------------

    def describe(self, task: TransferTask) -> str:
        return f"{task.location} ({self.remote_base()})"

    # -- the work -----------------------------------------------------------------------------------

    def _run(self, task: TransferTask, progress: Progress, cancel: threading.Event) -> None:
        workdir = self.task_dir(task)
        staging, files_from = workdir / "data", workdir / "files-from"
        try:
            _make_dirs(staging)
            names = list(dict.fromkeys(item.remote_path for item in task.files))
            files_from.write_bytes(b"".join(name.encode() + b"\0" for name in names))
            if task.direction is TransferDirection.OUT:
                self._stage_out(task, staging)
            else:
                self._seed_in(task, staging)
            # with --checksum the sender reads and hashes every file before sending anything (a whole
            # extra pass over fresh data); it belongs with the recheck, for redos onto damaged copies
            recheck = task.verify_checksum and self.location.recheck
            argv = self.rsync_argv(task.direction, staging, files_from, checksum=recheck)
            stats = self._transfer(argv, cancel)
            progress.add(
                nbytes=stats.bytes_transferred,
                files=stats.files_transferred,
                skipped=max(0, stats.regular_files - stats.files_transferred),
            )
            if task.verify_checksum and self.location.recheck:
                self._verify(task, argv, cancel)
            if task.direction is TransferDirection.IN:
                self._install(task, staging, cancel)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            with contextlib.suppress(OSError):
                workdir.parent.rmdir()  # the staging root, when no other task uses it

    def _stage_out(self, task: TransferTask, staging: Path) -> None:
        """Links ``staging/REMOTE_PATH → local file`` (checking declared checksums first)."""
        for item in task.files:
            source = item.local_path
            if not (source.is_dir() if item.recursive else source.is_file()):
                what = "directory" if item.recursive else "file"
                raise TransferError(FailureKind.NOT_FOUND, f"local {what} {source} does not exist")
            if item.sha256 is not None and file_sha256(source) != item.sha256:
                raise TransferError(FailureKind.CHECKSUM, f"{source} does not match its declared sha256")
            link = staging / item.remote_path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(source.resolve())

    def _seed_in(self, task: TransferTask, staging: Path) -> None:
        """Hard-link final files that already exist into the staging area, so rsync skips them."""
        for item in task.files:
            seeded = staging / item.remote_path
            if item.recursive or not item.local_path.is_file() or seeded.exists():
                continue
            try:
                seeded.parent.mkdir(parents=True, exist_ok=True)
                os.link(item.local_path, seeded)
            except OSError:
                continue

    def _transfer(self, argv: Sequence[str], cancel: threading.Event) -> RsyncStats:
        done = self._rsync([*argv[:-2], "--stats", *argv[-2:]], cancel)
        if done.returncode != 0:
            raise TransferError.of(classify_rsync_failure(done.returncode, done.stderr))
        try:
            return parse_stats(done.stdout)
        except ValueError:
            log.warning("rsync_stats_missing", output_tail=done.stdout[-500:])
            return RsyncStats()

    def _verify(self, task: TransferTask, argv: Sequence[str], cancel: threading.Event) -> None:
        """A dry run comparing checksums must find nothing left to transfer."""
        verify = [*argv[:-2], "--checksum", "--dry-run", f"--out-format={_VERIFY_PREFIX}%i:%n", *argv[-2:]]
        done = self._rsync(verify, cancel)
        if done.returncode != 0:
            raise TransferError.of(classify_rsync_failure(done.returncode, done.stderr))
        differing = parse_verify(done.stdout)
        if differing:
            shown = ", ".join(differing[:5]) + (
                f" and {len(differing) - 5} more" if len(differing) > 5 else ""
            )
            raise TransferError(FailureKind.CHECKSUM, f"checksum mismatch after transfer: {shown}")

    def _install(self, task: TransferTask, staging: Path, cancel: threading.Event) -> None:
        """Put received files at their final local names (link, or copy + check + rename)."""
        placer = FilePlacer(tag=task_tag(task.task_id), link=True, verify=task.verify_checksum, cancel=cancel)
        for item in task.files:
            staged = staging / item.remote_path
            if item.recursive:
                placer.place_tree(staged, item.local_path)
            else:
                placer.place(staged, item.local_path, item.sha256)

    def _rsync(self, argv: Sequence[str], cancel: threading.Event) -> _Run:
        """Run rsync; stop it when the task is cancelled."""
        log.debug("rsync_running", argv=shlex.join(argv))
        env = {**os.environ, "LC_ALL": "C"}
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                preexec_fn=_PREEXEC,  # a prctl call only (safe after fork)
            )
        except FileNotFoundError as exc:
            raise TransferError(FailureKind.CONFIG, f"{argv[0]} is not installed") from exc
        while True:
            try:
                stdout, stderr = proc.communicate(timeout=0.2)
                return _Run(proc.returncode, stdout, stderr)
            except subprocess.TimeoutExpired:
                if cancel.is_set():
                    proc.terminate()
                    proc.communicate()
                    raise TransferError(FailureKind.CANCELLED, "cancelled") from None


def _make_dirs(path: Path, attempts: int = 5) -> None:
    """``mkdir -p`` that survives another task removing an empty parent at the same moment."""
    for attempt in range(attempts):
        try:
            path.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
