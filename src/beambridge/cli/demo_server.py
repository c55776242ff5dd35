"""A local service in a subprocess (``beambridge server up``), for the demo: start, wait, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx


def free_port() -> int:
    """A TCP port nobody listens on right now, on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalServer:
    """``beambridge server up`` on a free 127.0.0.1 port, on ``database_url`` or the SQLite database of ``home``.

    Use as a context manager: entering waits until ``/health`` answers; leaving sends SIGTERM and waits
    for the process to end (killing it if it will not), so nothing is left running.
    """

    def __init__(
        self,
        home: Path,
        *,
        database_url: str | None = None,
        workers: int = 1,
        startup_timeout_s: float = 180.0,  # a loaded machine took over 60 s; it returns once healthy
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home
        self.database_url = database_url
        self.workers = workers
        self.env = dict(env or {})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "demo-server.log"
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait for its ``/health`` to answer."""
        env = {**os.environ, "BEAMBRIDGE_HOME": str(self.home)}
        env.pop("BEAMBRIDGE_DATABASE_URL", None)  # the embedded default unless told otherwise
        if self.database_url:
            env["BEAMBRIDGE_DATABASE_URL"] = self.database_url
        env.update(self.env)
        command = [sys.executable, "-m", "beambridge.cli.main", "server", "up"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        command += ["--workers", str(self.workers)]
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()  # never leave a server behind that did not come up in time
            raise

    def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the demo server exited with status {self.process.returncode}; see {self.log_path}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the demo server did not answer within {self.startup_timeout_s} s; see {self.log_path}"
                )
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM, then wait (SIGKILL after 10 s); returns the exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> LocalServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
