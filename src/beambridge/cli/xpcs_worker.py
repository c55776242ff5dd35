"""A warm worker for ``beambridge xpcs corr``: the command hands its job to a resident process.

Why: the correlation of a 256² × 1,000-frame stack takes ~0.1 s, but a fresh process first spends
~0.4 CPU-s importing numpy, h5py and numba (numba alone imports scipy.linalg for its BLAS check) and
~0.6 CPU-s more turning the three cached kernels into callable code (numba loads its typing and
lowering registries on the first kernel). Neither can be cut much while the kernels are numba's
(``parallel=True`` kernels cannot be compiled ahead of time with numba's ``pycc``). A process that has
done all of that once runs the next job in what the job itself costs.

How (like ``dmypy``): the first ``beambridge xpcs corr`` starts the worker (``python -m
beambridge.cli.xpcs_worker``) and hands it the job over a Unix socket; later ones connect to it. The
command sends its arguments, working directory and environment, and passes its own stdin, stdout and
stderr (``SCM_RIGHTS``), so the job writes straight to the caller's terminal or pipes; the worker
answers with the exit status. The job runs through the same :func:`beambridge.cli.main.main` as in
process: the same output, errors, exit statuses and result file (the same bits; tested).

Safety:

* per user: the socket lives in a directory only its owner can enter (``$BEAMBRIDGE_RUNTIME_DIR``, else
  ``$XDG_RUNTIME_DIR/beambridge``, else ``<tmp>/beambridge-<uid>``; mode 0700, refused if it is a
  symlink, someone else's or open to others), the socket itself is 0600, and the worker serves only
  peers of its own uid (``SO_PEERCRED``);
* one worker per (host, interpreter, code, environment that shapes a run: ``NUMBA_*``, ``OMP_*``, locale,
  batch job id, CPU affinity): an edited kernel, another thread count or another batch job gets its own
  worker, never a stale one;
* one job at a time: a command finding the worker busy runs in its own process;
* Ctrl-C (or SIGTERM/SIGHUP) of the command interrupts its job; a command that dies takes its job
  with it; the worker exits after ``$BEAMBRIDGE_XPCS_WORKER_IDLE`` seconds without a job (600);
* anything unexpected (no socket possible, a worker that does not start or dies mid-job) and the
  command runs in its own process, as before; the result file is written atomically, so a job begun in
  a worker that died leaves nothing behind. ``BEAMBRIDGE_XPCS_WORKER=0`` turns the worker off.

This module imports only the standard library at the top: the command's side must stay cheap.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beambridge.xpcs.mpi_launch import launched_by_mpi

if TYPE_CHECKING:
    import threading  # imported where used: the command's start-up stays light

IDLE_SECONDS = 600.0
"""A worker without a job for this long exits (``$BEAMBRIDGE_XPCS_WORKER_IDLE`` overrides)."""
START_TIMEOUT = 30.0
"""How long a command waits for a worker it started to open its socket before running in process."""
ACK_TIMEOUT = 30.0
"""How long a command waits for the worker to take (or decline) its job."""
INTERRUPT_GRACE_S = 5.0
"""After forwarding Ctrl-C, how long a command waits for the worker to say its job stopped before it
exits 130 by itself: a job in a long C call (LLVM compiling a kernel, a read) takes the interrupt only
when the call returns, and the worker then ends it and logs it."""
REINTERRUPT_S = 0.5
"""While a job runs whose command is gone, the worker interrupts it again this often: a KeyboardInterrupt
that lands in a ``__del__`` or a callback is printed and dropped by Python, and the job would then run on
to its own timeout."""
MAX_MESSAGE = 4 << 20
"""Largest request accepted (arguments and environment)."""
KEY_ENV_PREFIXES = ("NUMBA_", "OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "PYTHON", "HDF5_", "LD_", "LC_")
KEY_ENV_NAMES = ("LANG", "SLURM_JOB_ID", "SLURM_STEP_ID", "PBS_JOBID", "LSB_JOBID", "COBALT_JOBID")
"""Environment that shapes a run once a process has started (thread counts, libraries, locale, the batch
job whose CPUs it may use): a worker serves only commands that agree with it on all of these."""
SOURCES = ("xpcs", "cli/xpcs.py", "cli/main.py", "cli/output.py", "cli/xpcs_worker.py")
"""Code (under the package) whose edits call for a new worker."""
LIBRARIES = ("numba", "llvmlite", "numpy", "h5py", "typer", "rich")
"""Installed packages whose upgrade calls for a new worker."""


def enabled(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Whether commands may hand jobs to a worker (``BEAMBRIDGE_XPCS_WORKER=0`` says no)."""
    return environ.get("BEAMBRIDGE_XPCS_WORKER", "1").strip().lower() not in ("0", "no", "false", "off")


def wants_worker(argv: Sequence[str]) -> bool:
    """Whether a command line is one the worker runs: ``xpcs corr …`` (not its ``--help``, nor one of
    several MPI ranks)."""
    return (
        list(argv[:2]) == ["xpcs", "corr"]
        and "--help" not in argv
        and not any(key.endswith("_COMPLETE") for key in os.environ)
        and "--mpi" not in argv  # a rank of an MPI job runs here: the worker is no rank of it
        and not launched_by_mpi()
        and enabled()
    )


# ----------------------------------------------------------------------------------------- where


def runtime_dir(environ: dict[str, str] | os._Environ[str] = os.environ) -> Path | None:
    """This user's private directory for worker sockets, created 0700 if missing; ``None`` when it
    cannot be had safely (someone else's, a symlink, open to others)."""
    uid = os.getuid()
    configured = environ.get("BEAMBRIDGE_RUNTIME_DIR")
    if configured:
        path = Path(configured)
    elif environ.get("XDG_RUNTIME_DIR"):
        path = Path(environ["XDG_RUNTIME_DIR"]) / "beambridge"
    else:
        import tempfile

        path = Path(tempfile.gettempdir()) / f"beambridge-{uid}"
    try:
        path.mkdir(mode=0o700, parents=False)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = path.lstat()
    except OSError:
        return None
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        return None
    return path


def _fingerprint_files(root: Path) -> Iterator[tuple[str, int, int]]:
    for name in SOURCES:
        target = root / name
        if target.is_dir():
            for folder, _dirs, files in os.walk(target):
                for file in files:
                    if file.endswith(".py"):
                        st = os.stat(os.path.join(folder, file))
                        yield file, st.st_mtime_ns, st.st_size
        elif target.exists():
            st = target.stat()
            yield name, st.st_mtime_ns, st.st_size


def worker_key(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """What a worker must agree on with a command to run its job, as a short hash."""
    import hashlib
    from importlib.util import find_spec

    root = Path(__file__).resolve().parents[1]
    libraries = []
    for name in LIBRARIES:
        spec = find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin:
            st = os.stat(origin)
            libraries.append((name, origin, st.st_mtime_ns, st.st_size))
    shaping = sorted(
        (key, value)
        for key, value in environ.items()
        if key.startswith(KEY_ENV_PREFIXES) or key in KEY_ENV_NAMES
    )
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    material = (
        os.uname().nodename,
        os.getuid(),
        sys.executable,
        sys.version,
        sys.path,
        str(root),
        sorted(_fingerprint_files(root)),
        libraries,
        shaping,
        affinity,
    )
    return hashlib.sha256(repr(material).encode()).hexdigest()[:20]


def socket_path(environ: dict[str, str] | os._Environ[str] = os.environ) -> Path | None:
    """The socket of the worker that would run this command's job (``None``: no safe place)."""
    folder = runtime_dir(environ)
    if folder is None:
        return None
    path = folder / f"xpcs-{worker_key(environ)}.sock"
    return path if len(os.fsencode(path)) < 100 else None  # sun_path holds 108 bytes


# ----------------------------------------------------------------------------------------- wire


def _send(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode()
    frame = struct.pack("!I", len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [frame], list(fds))
        if sent < len(frame):  # never an empty send: the worker may have read it all, run it and gone,
            sock.sendall(frame[sent:])  # and a send to a closed peer fails (the job would run again)
    else:
        sock.sendall(frame)


def _recv_exact(sock: socket.socket, n: int, head: bytes = b"") -> bytes:
    data = bytearray(head)
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return bytes(data)


def _recv(sock: socket.socket, *, with_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    fds: list[int] = []
    if with_fds:
        head, fds, _flags, _addr = socket.recv_fds(sock, 4, with_fds)
        if not head:
            raise ConnectionError("connection closed")
    else:
        head = b""
    raw = _recv_exact(sock, 4, head)
    (size,) = struct.unpack("!I", raw[:4])
    if size > MAX_MESSAGE:
        for fd in fds:
            os.close(fd)
        raise ConnectionError(f"message of {size} bytes refused")
    body = _recv_exact(sock, size, raw[4:])
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ConnectionError("malformed message")
    return message, fds


# ----------------------------------------------------------------------------------------- client


def _connect(path: Path) -> socket.socket | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    import stat

    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def _start_worker(path: Path) -> socket.socket | None:
    """Start a worker for ``path`` (one at a time per socket: a lock file) and connect to it."""
    import fcntl
    import subprocess

    lock = os.open(str(path.with_suffix(".lock")), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sock = _connect(path)  # another command may have started it meanwhile
        if sock is not None:
            return sock
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a socket left by a worker that died
        log = os.open(str(path.with_suffix(".log")), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "beambridge.cli.xpcs_worker", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",
                start_new_session=True,  # not in the command's process group: its Ctrl-C is its own
                close_fds=True,
            )
        finally:
            os.close(log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            sock = _connect(path)
            if sock is not None:
                return sock
            if proc.poll() is not None:
                return None
            time.sleep(0.005)
        return None
    finally:
        os.close(lock)


def run_via_worker(argv: Sequence[str]) -> int | None:
    """Run the command line ``argv`` in the worker; its exit status, or ``None`` when it could not be
    handed over (run it in process then)."""
    try:
        path = socket_path()
    except OSError:
        return None
    if path is None:
        return None
    for attempt in range(2):
        sock = _connect(path)
        if sock is None:
            try:
                sock = _start_worker(path)
            except OSError:
                return None
        if sock is None:
            return None
        try:
            status = _hand_over(sock, argv)
        finally:
            sock.close()
        if status != "retry" or attempt:
            return status if isinstance(status, int) else None
    return None


def _hand_over(sock: socket.socket, argv: Sequence[str]) -> int | str | None:
    """Send the job, wait for its status (``"retry"``: the worker went away before taking it). The
    command's Ctrl-C (SIGINT, SIGTERM, SIGHUP) is caught from before the job is sent: once the worker
    has taken the job it is forwarded (the worker interrupts the job); before that, nothing is run."""
    import signal
    import threading

    caught: list[int] = []
    taken = False

    def stop_waiting() -> None:  # wakes the blocked read below with end-of-file
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)

    def forward(signum: int, _frame: object) -> None:
        caught.append(signum)
        if taken:
            with contextlib.suppress(OSError):
                _send(sock, {"signal": signum})
            timer = threading.Timer(INTERRUPT_GRACE_S, stop_waiting)
            timer.daemon = True
            timer.start()

    def interrupted() -> int:
        return 128 + caught[-1] if caught[-1] != signal.SIGINT else 130

    request = {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ)}
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        try:
            sock.settimeout(ACK_TIMEOUT)
            _send(sock, request, fds=[0, 1, 2])
            reply, _ = _recv(sock)
        except (OSError, ValueError):
            return interrupted() if caught else "retry"
        if not reply.get("accepted"):
            return interrupted() if caught else None  # busy: run in process
        taken = True
        if caught:  # a signal while the job was being handed over
            forward(caught.pop(), None)
        sock.settimeout(None)
        try:
            reply, _ = _recv(sock)
        except (OSError, ValueError):
            if caught:
                return interrupted()
            print("note: the XPCS worker stopped during the job; running it here", file=sys.stderr)
            return None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    status = int(reply.get("status", 1))
    if caught and caught[-1] in (signal.SIGTERM, signal.SIGHUP):
        return 128 + caught[-1]
    return status


# ----------------------------------------------------------------------------------------- worker


class _Worker:
    """The resident process: an acceptor thread takes jobs (or answers "busy"), the main thread runs
    them one at a time through the command line's ``main``."""

    def __init__(self, path: Path, listener: socket.socket, idle: float) -> None:
        import queue
        import threading

        self.path = path
        self.inode = path.stat().st_ino
        self.listener = listener
        self.idle = idle
        self.jobs: queue.Queue[tuple[socket.socket, dict[str, Any], list[int]]] = queue.Queue()
        self.busy = threading.Lock()
        self.active = threading.Event()  # a job is running: an interrupt may be raised
        self.served = 0
        self.leaving = False
        self.main_thread = 0
        self.logfile = os.fdopen(os.dup(1), "w", buffering=1)  # fd 1 becomes each job's stdout

    def log(self, event: str, **fields: Any) -> None:
        from beambridge.logs import format_fields

        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(f"ts={when} pid={os.getpid()} {format_fields(event, fields)}", file=self.logfile, flush=True)

    def accept_forever(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed: the worker is leaving
            try:
                self._take(conn)
            except Exception as exc:  # a bad peer must not stop the acceptor
                self.log("xpcs_worker_request_refused", reason=exc)
                conn.close()

    def _take(self, conn: socket.socket) -> None:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            self.log("xpcs_worker_peer_refused", uid=uid)
            conn.close()
            return
        conn.settimeout(10.0)
        request, fds = _recv(conn, with_fds=3)
        if len(fds) != 3 or not isinstance(request.get("argv"), list):
            for fd in fds:
                os.close(fd)
            raise ConnectionError("a request needs argv and three descriptors")
        if not self.busy.acquire(blocking=False):
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                _send(conn, {"accepted": False, "reason": "busy"})
            conn.close()
            return
        try:
            _send(conn, {"accepted": True})
        except OSError:
            self.busy.release()
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        self.jobs.put((conn, request, fds))  # the main thread releases `busy` when done

    def interrupt(self, signum: int, _frame: object) -> None:
        """SIGINT handler of the worker: interrupts the running job, ignored between jobs."""
        if self.active.is_set():
            raise KeyboardInterrupt

    def leave(self, signum: int, _frame: object) -> None:
        """SIGTERM/SIGHUP: interrupt the running job (its command gets status 130), then exit."""
        self.leaving = True
        if self.active.is_set():
            raise KeyboardInterrupt
        raise SystemExit(0)

    def watch(self, conn: socket.socket, running: threading.Event) -> None:
        """While its job runs (``running``, that job's own flag: a watcher that outlives its job must never
        interrupt the next one): interrupt it on the command's signal, or when the command is gone, then
        again every ``REINTERRUPT_S`` until the job has ended (:meth:`_quiet`)."""
        import signal

        while True:
            try:
                message: dict[str, Any] | None = _recv(conn)[0]
            except (OSError, ValueError):
                message = None  # the command is gone (or the job ended and closed the connection)
            if not running.is_set():
                return
            signal.pthread_kill(self.main_thread, signal.SIGINT)
            if message is None:
                while not _cleared(running, REINTERRUPT_S):
                    signal.pthread_kill(self.main_thread, signal.SIGINT)
                return

    def _quiet(self, running: threading.Event) -> None:
        """End the job's interrupts: once ``active`` is clear the handler raises none, and once
        ``running`` is its watcher sends none. An interrupt already on its way may land in here: again."""
        while True:
            try:
                running.clear()
                self.active.clear()
                return
            except KeyboardInterrupt:
                continue

    def serve(self) -> None:
        import queue
        import signal
        import threading

        self.main_thread = threading.get_ident()
        signal.signal(signal.SIGINT, self.interrupt)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self.leave)
        threading.Thread(target=self.accept_forever, name="accept", daemon=True).start()
        self.log("xpcs_worker_started", socket=self.path, idle_s=self.idle)
        from beambridge.cli import main as cli

        self.main = cli.main
        _load_registries()
        while True:
            try:
                conn, request, fds = self.jobs.get(timeout=self.idle)
            except queue.Empty:
                if self.busy.acquire(blocking=False):  # a job arriving now is answered "busy"
                    self.log("xpcs_worker_idle_exit", served=self.served)
                    return
                continue
            try:
                self.run(conn, request, fds)
            except KeyboardInterrupt:  # re-sent, and landed in the job's own exception handlers
                self.log("xpcs_worker_job_interrupted", status=130)
                with contextlib.suppress(OSError):
                    conn.close()
            finally:
                self.busy.release()
            if self.leaving:
                self.log("xpcs_worker_stopped", served=self.served)
                return
            if not self._still_mine():
                self.log("xpcs_worker_replaced", served=self.served)
                return

    def _still_mine(self) -> bool:
        try:
            return self.path.stat().st_ino == self.inode
        except OSError:
            return False

    def run(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        import threading

        started = time.perf_counter()
        cpu = time.process_time()
        saved_fds = [os.dup(i) for i in (0, 1, 2)]
        saved_env = dict(os.environ)
        status = 1
        running = threading.Event()
        watcher = threading.Thread(target=self.watch, args=(conn, running), name="watch", daemon=True)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            sys.stdout.reconfigure(line_buffering=os.isatty(1))  # type: ignore[union-attr]
            os.environ.clear()
            os.environ.update({str(k): str(v) for k, v in dict(request.get("env") or {}).items()})
            os.chdir(str(request.get("cwd") or "/"))
            conn.settimeout(None)
            self.log("xpcs_worker_job_started", argv=" ".join(str(a) for a in request["argv"][:2]))
            self.active.set()
            running.set()
            watcher.start()
            status = self.main([str(arg) for arg in request["argv"]])
        except KeyboardInterrupt:
            status = 130
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # the job's failure, never the worker's
            with contextlib.suppress(Exception):
                print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
        finally:
            try:  # an interrupt re-sent by the watcher may land before the first call begins: twice
                self._quiet(running)
            finally:
                self._quiet(running)
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            for target, fd in enumerate(saved_fds):
                os.dup2(fd, target)
                os.close(fd)
            for fd in fds:
                os.close(fd)
            sys.stdout.reconfigure(line_buffering=False)  # type: ignore[union-attr]
            os.chdir("/")
            os.environ.clear()
            os.environ.update(saved_env)
        # logged before the command is answered: once it has returned, its job is in the worker's log
        self.served += 1
        self.log(
            "xpcs_worker_job",
            argv=" ".join(str(a) for a in request["argv"][:2]),
            status=status,
            wall_s=round(time.perf_counter() - started, 4),
            cpu_s=round(time.process_time() - cpu, 4),
            served=self.served,
        )
        with contextlib.suppress(OSError):
            _send(conn, {"status": status})
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()
        if watcher.is_alive():
            watcher.join(timeout=5)


def _load_registries() -> None:
    """What every job needs before its first kernel, done while the worker waits: the XPCS modules and
    numba's typing and lowering registries (loaded on the first compiled call of a process)."""
    import numba

    import beambridge.cli.xpcs
    import beambridge.xpcs.pipeline  # noqa: F401

    @numba.njit(cache=False)
    def _one(x: int) -> int:  # pragma: no cover - compiled
        return x + 1

    _one(1)


def serve(path: Path, idle: float | None = None) -> int:
    """Bind ``path`` (0600) and serve jobs until idle; the worker process's body."""
    if idle is None:
        try:
            idle = float(os.environ.get("BEAMBRIDGE_XPCS_WORKER_IDLE", IDLE_SECONDS))
        except ValueError:
            idle = IDLE_SECONDS
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(str(path))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return 0  # another worker holds it
        raise
    finally:
        os.umask(old)
    listener.listen(16)
    worker = _Worker(path, listener, idle)
    try:
        worker.serve()
    finally:
        with contextlib.suppress(OSError):
            if path.stat().st_ino == worker.inode:
                path.unlink()
        listener.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m beambridge.cli.xpcs_worker SOCKET``: what a command starts."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m beambridge.cli.xpcs_worker SOCKET", file=sys.stderr)
        return 2
    return serve(Path(args[0]))


if __name__ == "__main__":
    raise SystemExit(main())


def _cleared(flag: threading.Event, timeout: float) -> bool:
    """Whether ``flag`` is clear, waiting up to ``timeout`` for it to be (an Event waits only to be set)."""
    end = time.monotonic() + timeout
    while flag.is_set() and time.monotonic() < end:
        time.sleep(min(0.05, timeout))
    return not flag.is_set()
