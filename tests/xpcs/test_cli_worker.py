"""``beambridge xpcs corr`` through the warm worker: real command processes, a real worker process,
real signals. The worker must give what the command gives in its own process — same bits, same output,
same errors — and stay private, interruptible and short-lived."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

CLI = Path(sys.executable).with_name("beambridge")
LOG_PID = re.compile(r"pid=(\d+) event=xpcs_worker_started")


@pytest.fixture
def runtime() -> Iterator[Path]:
    """A private runtime directory for this test's workers (short: a socket path holds 108 bytes);
    every worker started in it is stopped afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="bbw-"))
    folder.chmod(0o700)
    try:
        yield folder
    finally:
        for pid in worker_pids(folder):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            wait_gone(pid)
        shutil.rmtree(folder, ignore_errors=True)


def worker_pids(folder: Path) -> list[int]:
    pids = []
    for log in folder.glob("*.log"):
        pids += [int(m) for m in LOG_PID.findall(log.read_text())]
    return pids


def worker_log(folder: Path) -> str:
    return "".join(log.read_text() for log in sorted(folder.glob("*.log")))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (our own child never: the worker is started by the command) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def wait_for(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def command(runtime: Path, *args: str, worker: bool = True, cwd: Path | None = None, **env: str):  # type: ignore[no-untyped-def]
    environ = {**os.environ, "BEAMBRIDGE_RUNTIME_DIR": str(runtime), **env}
    environ["BEAMBRIDGE_XPCS_WORKER"] = "1" if worker else "0"
    return subprocess.run(
        [str(CLI), "xpcs", *args], capture_output=True, text=True, env=environ, cwd=cwd, timeout=300
    )


def datasets(path: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, node: object) -> None:
            if isinstance(node, h5py.Dataset) and name != "entry/start_time":
                value = node[()]
                found[name] = (
                    np.asarray(value).tobytes() + str(node.dtype).encode() + str(node.shape).encode()
                )

        f.visititems(visit)
    return found


def test_worker_gives_the_in_process_result_bit_for_bit(
    small_run: tuple[Path, Path, np.ndarray, object], runtime: Path, tmp_path: Path
) -> None:
    raw, qmap, _, _ = small_run
    here = command(
        runtime, "corr", str(raw), "--qmap", str(qmap), "-o", str(tmp_path / "here.h5"), worker=False
    )
    assert here.returncode == 0, here.stderr
    assert not list(runtime.glob("*.sock"))  # the worker was off

    cold = command(runtime, "corr", str(raw), "--qmap", str(qmap), "-o", str(tmp_path / "cold.h5"))
    assert cold.returncode == 0, cold.stderr
    pids = worker_pids(runtime)
    assert len(pids) == 1 and alive(pids[0])  # the first command started it and it stays
    warm = command(runtime, "corr", str(raw), "--qmap", str(qmap), "-o", str(tmp_path / "warm.h5"))
    assert warm.returncode == 0, warm.stderr
    assert worker_pids(runtime) == pids
    assert worker_log(runtime).count("event=xpcs_worker_job ") == 2  # both ran there

    reference = datasets(tmp_path / "here.h5")
    assert len(reference) > 20
    for name in ("cold.h5", "warm.h5"):
        assert datasets(tmp_path / name) == reference, name
    first = here.stdout.splitlines()[0].replace("here.h5", "X")
    assert cold.stdout.splitlines()[0].replace("cold.h5", "X") == first
    assert warm.stdout.splitlines()[0].replace("warm.h5", "X") == first
    assert "frames/s" in warm.stdout.splitlines()[-1]
    assert warm.stderr == ""


def test_relative_paths_errors_and_status_as_in_process(
    small_run: tuple[Path, Path, np.ndarray, object], runtime: Path, tmp_path: Path
) -> None:
    raw, qmap, _, _ = small_run
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(raw, work / "raw.h5")
    shutil.copy(qmap, work / "qmap.h5")
    ok = command(runtime, "corr", "raw.h5", "--qmap", "qmap.h5", "-o", "out.h5", cwd=work)
    assert ok.returncode == 0, ok.stderr
    assert (work / "out.h5").is_file()  # in the command's directory, not the worker's

    for args in (
        ["corr", "missing.h5", "--qmap", "qmap.h5", "-o", "x.h5"],
        ["corr", "raw.h5", "--qmap", "qmap.h5", "-o", "x.h5", "--mode", "fast"],
        ["corr", "raw.h5", "--qmap", "qmap.h5", "-o", "x.h5", "--frame-time", "-1"],
        ["corr", "raw.h5", "--qmap", "qmap.h5"],  # a usage error: no -o
    ):
        there = command(runtime, *args, cwd=work)
        here = command(runtime, *args, cwd=work, worker=False)
        assert (there.returncode, there.stdout, there.stderr) == (here.returncode, here.stdout, here.stderr)
        assert (
            there.returncode == 2 and there.stderr.startswith("error: ") and "Traceback" not in there.stderr
        )
    assert not (work / "x.h5").exists()
    assert len(worker_pids(runtime)) == 1
    assert worker_log(runtime).count("event=xpcs_worker_job ") == 5


def test_socket_is_private_and_an_open_directory_is_not_used(
    small_run: tuple[Path, Path, np.ndarray, object], runtime: Path, tmp_path: Path
) -> None:
    raw, qmap, _, _ = small_run
    assert (
        command(runtime, "corr", str(raw), "--qmap", str(qmap), "-o", str(tmp_path / "a.h5")).returncode == 0
    )
    (sock,) = runtime.glob("*.sock")
    assert stat.S_ISSOCK(sock.lstat().st_mode) and stat.S_IMODE(sock.lstat().st_mode) == 0o600
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700

    shared = runtime / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could plant a socket here: no worker, the command runs in process
    done = command(shared, "corr", str(raw), "--qmap", str(qmap), "-o", str(tmp_path / "b.h5"))
    assert done.returncode == 0, done.stderr
    assert list(shared.iterdir()) == []
    assert datasets(tmp_path / "a.h5") == datasets(tmp_path / "b.h5")


def test_idle_worker_leaves_and_a_dead_ones_socket_is_replaced(
    small_run: tuple[Path, Path, np.ndarray, object], runtime: Path, tmp_path: Path
) -> None:
    raw, qmap, _, _ = small_run
    args = ("corr", str(raw), "--qmap", str(qmap), "-o", str(tmp_path / "a.h5"))
    assert command(runtime, *args, BEAMBRIDGE_XPCS_WORKER_IDLE="1").returncode == 0
    (first,) = worker_pids(runtime)
    assert wait_gone(first)  # a second without a job
    assert not list(runtime.glob("*.sock"))
    assert "event=xpcs_worker_idle_exit served=1" in worker_log(runtime)

    assert command(runtime, *args).returncode == 0
    second = worker_pids(runtime)[-1]
    assert second != first and alive(second)
    os.kill(second, signal.SIGKILL)  # dies without cleaning up: its socket stays behind
    assert wait_gone(second)
    assert list(runtime.glob("*.sock"))
    again = command(runtime, *args)
    assert again.returncode == 0, again.stderr
    third = worker_pids(runtime)[-1]
    assert third not in (first, second) and alive(third)


def test_ctrl_c_interrupts_the_job_and_a_busy_worker_is_not_waited_for(
    small_run: tuple[Path, Path, np.ndarray, object], runtime: Path, tmp_path: Path
) -> None:
    raw, qmap, _, _ = small_run
    environ = {**os.environ, "BEAMBRIDGE_RUNTIME_DIR": str(runtime), "BEAMBRIDGE_XPCS_WORKER": "1"}
    # a followed acquisition whose file never appears: the job waits in the worker
    follow = subprocess.Popen(
        [str(CLI), "xpcs", "corr", str(tmp_path / "never.h5"), "--qmap", str(qmap), "-o",
         str(tmp_path / "never.out.h5"), "--follow", "--follow-timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ,
    )  # fmt: skip
    try:
        wait_for(lambda: "event=xpcs_worker_job_started" in worker_log(runtime))
        started = time.monotonic()
        meanwhile = command(runtime, "corr", str(raw), "--qmap", str(qmap), "-o", str(tmp_path / "b.h5"))
        assert meanwhile.returncode == 0, meanwhile.stderr  # ran in its own process
        assert follow.poll() is None
        follow.send_signal(signal.SIGINT)
        _, stderr = follow.communicate(timeout=30)
        assert follow.returncode == 130, stderr
        assert time.monotonic() - started < 120
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    wait_for(lambda: "status=130" in worker_log(runtime))
    (pid,) = worker_pids(runtime)
    assert alive(pid)
    assert not (tmp_path / "never.out.h5").exists()
    after = command(runtime, "corr", str(raw), "--qmap", str(qmap), "-o", str(tmp_path / "c.h5"))
    assert after.returncode == 0, after.stderr
    assert worker_log(runtime).count("event=xpcs_worker_job ") == 2  # the interrupted one, then this
    assert datasets(tmp_path / "b.h5") == datasets(tmp_path / "c.h5")


def test_a_killed_command_takes_its_job_along(
    small_run: tuple[Path, Path, np.ndarray, object], runtime: Path, tmp_path: Path
) -> None:
    _, qmap, _, _ = small_run
    environ = {**os.environ, "BEAMBRIDGE_RUNTIME_DIR": str(runtime), "BEAMBRIDGE_XPCS_WORKER": "1"}
    follow = subprocess.Popen(
        [str(CLI), "xpcs", "corr", str(tmp_path / "never.h5"), "--qmap", str(qmap), "-o",
         str(tmp_path / "never.out.h5"), "--follow", "--follow-timeout", "120"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environ,
    )  # fmt: skip
    wait_for(lambda: "event=xpcs_worker_job_started" in worker_log(runtime))
    follow.kill()
    follow.wait()
    wait_for(lambda: "status=130" in worker_log(runtime), timeout=30)
    (pid,) = worker_pids(runtime)
    assert alive(pid)


def test_a_process_an_mpi_launcher_started_runs_its_job_itself(
    small_run: tuple[Path, Path, np.ndarray, object], runtime: Path, tmp_path: Path
) -> None:
    """Even as the only rank (``mpirun -n 1``): the launcher owns the process and its resources, a
    worker outside it would not be the job's."""
    raw, qmap, _, _ = small_run
    done = command(
        runtime, "corr", str(raw), "--qmap", str(qmap), "-o", str(tmp_path / "a.h5"), OMPI_COMM_WORLD_SIZE="1"
    )
    assert done.returncode == 0, done.stderr
    assert list(runtime.iterdir()) == []  # no worker, no socket


def test_a_request_the_worker_took_at_once_is_never_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by CI: a usage error ran in the worker and again in the command, printing its error twice.
    The request went out whole with its descriptors; the worker read it, ran it (6 ms) and closed before
    the command's empty follow-up send, which failed (EPIPE), so the command thought the worker had not
    taken it, asked again (busy) and ran it in process."""
    import socket

    from beambridge.cli import xpcs_worker

    command, worker = socket.socketpair()
    real_send_fds = socket.send_fds

    def sent_then_worker_finishes(sock: socket.socket, buffers, fds, *args):  # type: ignore[no-untyped-def]
        sent = real_send_fds(sock, buffers, fds, *args)
        message, received = xpcs_worker._recv(worker, with_fds=3)  # the worker reads it all ...
        for fd in received:
            os.close(fd)
        assert message["argv"] == ["xpcs", "corr"]
        worker.close()  # ... runs it and is gone
        return sent

    monkeypatch.setattr(socket, "send_fds", sent_then_worker_finishes)
    xpcs_worker._send(command, {"argv": ["xpcs", "corr"]}, fds=[0, 1, 2])  # must not fail now
    command.close()


def test_ctrl_c_returns_promptly_while_the_worker_cannot_stop_its_job_yet() -> None:
    """Found by a loaded run with cold caches: Ctrl-C was forwarded, but the worker's job sat in a long C
    call (LLVM compiling a kernel) where Python cannot raise the interrupt, and the command waited for
    the worker's answer for over 30 s. It now gives the worker ``INTERRUPT_GRACE_S`` to answer, then
    exits 130 by itself (the worker ends the job when it can, and logs it)."""
    import socket
    import threading

    from beambridge.cli import xpcs_worker

    command, worker = socket.socketpair()
    got: list[dict[str, object]] = []

    def stuck_worker() -> None:  # takes the job, reads the forwarded signal, never answers
        _message, fds = xpcs_worker._recv(worker, with_fds=3)
        for fd in fds:
            os.close(fd)
        xpcs_worker._send(worker, {"accepted": True})
        got.append(xpcs_worker._recv(worker)[0])

    thread = threading.Thread(target=stuck_worker, daemon=True)
    thread.start()
    main = threading.get_ident()
    threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT)).start()
    started = time.monotonic()
    try:
        status = xpcs_worker._hand_over(command, ["xpcs", "corr"])
        took = time.monotonic() - started
    finally:
        command.close()
        worker.close()
    assert status == 130
    assert got == [{"signal": signal.SIGINT}]  # the worker was told
    assert xpcs_worker.INTERRUPT_GRACE_S <= took < xpcs_worker.INTERRUPT_GRACE_S + 5, took


def test_a_watcher_that_outlives_its_job_never_interrupts_the_next() -> None:
    """Read in review: each job's watcher checked the worker's shared "a job runs" flag, so a watcher
    still waking from its job's closed connection once the next job had started (its join timed out on a
    loaded machine) interrupted that next job. It checks its own job's flag now."""
    import socket
    import threading

    from beambridge.cli import xpcs_worker

    worker = xpcs_worker._Worker.__new__(xpcs_worker._Worker)
    worker.active = threading.Event()
    worker.active.set()  # the next job runs
    worker.main_thread = threading.get_ident()
    interrupts: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: interrupts.append(signum))
    try:
        conn, command = socket.socketpair()
        command.close()  # the old job's command has its status and is gone
        worker.watch(conn, threading.Event())  # that old job's own flag: cleared, it has ended
        conn.close()
        time.sleep(0.1)  # a signal sent to this thread would have run its handler by now
    finally:
        signal.signal(signal.SIGINT, previous)
    assert interrupts == []


def test_an_interrupt_the_job_swallowed_is_sent_again() -> None:
    """Found by a full run at load: `test_a_killed_command_takes_its_job_along` once waited in vain for
    status 130. The watcher sent one SIGINT when the command went away; a KeyboardInterrupt that lands in
    a ``__del__`` or a callback is printed and dropped, and the job then ran to its own timeout. While
    the command is gone and the job runs, the watcher now sends it again (``REINTERRUPT_S``), and stops
    once the job has ended."""
    import socket
    import threading

    from beambridge.cli import xpcs_worker

    worker = xpcs_worker._Worker.__new__(xpcs_worker._Worker)
    worker.active = threading.Event()
    worker.active.set()
    worker.main_thread = threading.get_ident()
    running = threading.Event()
    running.set()
    swallowed, status = 0, None
    previous = signal.signal(signal.SIGINT, worker.interrupt)
    try:
        conn, command = socketpair = socket.socketpair()
        command.close()  # the command was killed
        job_waits = threading.Event()

        def watch() -> None:
            job_waits.wait()
            worker.watch(conn, running)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        deadline = time.monotonic() + 20
        try:
            try:
                while True:  # the job, waiting for a file that never comes
                    try:
                        if time.monotonic() > deadline:
                            break
                        job_waits.set()
                        time.sleep(0.01)
                    except KeyboardInterrupt:
                        if swallowed == 0:  # as a __del__ would: dropped
                            swallowed += 1
                            continue
                        raise
            finally:
                worker._quiet(running)
        except KeyboardInterrupt:
            status = 130
        watcher.join(timeout=5)
        time.sleep(0.1)  # a signal still on its way is handled by the worker's handler, which ignores it
        for end in socketpair:
            end.close()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (swallowed, status) == (1, 130)
    assert not watcher.is_alive()
