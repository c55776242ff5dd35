"""A private sshd for the rsync tests: bound to 127.0.0.1 on a free port, with throwaway ed25519 keys.

:func:`private_sshd` starts ``sshd -D`` (not detached: we own the process and stop it by its pid) with
its own configuration, host key and authorised key in a temporary directory, waits until it listens,
and stops it on exit. :func:`require_ssh_tools` fails the test in CI (``CI=true``) and skips it
elsewhere when ``sshd``, ``ssh``, ``ssh-keygen`` or ``rsync`` is missing (``make system-deps`` installs
``openssh-server rsync``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import free_port, unavailable

START_TIMEOUT_S = 10.0


def sshd_path() -> str | None:
    """The sshd binary (it must be run by absolute path), if installed."""
    found = shutil.which("sshd") or next(
        (
            candidate
            for candidate in ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
            if os.access(candidate, os.X_OK)
        ),
        None,
    )
    return os.path.abspath(found) if found else None


def missing_ssh_tools() -> list[str]:
    """Which of the tools the rsync tests need are not installed."""
    missing = [] if sshd_path() else ["sshd"]
    return missing + [tool for tool in ("ssh", "ssh-keygen", "rsync") if shutil.which(tool) is None]


def require_ssh_tools() -> None:
    """Fail (in CI) or skip (elsewhere) when the tools are missing."""
    missing = missing_ssh_tools()
    if not missing:
        return
    unavailable(f"{', '.join(missing)} not installed (apt-get install openssh-server rsync)")


def keygen(path: Path) -> Path:
    """A new passphrase-less ed25519 key pair at ``path`` (+ ``.pub``); returns the private key."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "beambridge-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


@dataclass(frozen=True)
class SshServer:
    """A running private sshd and what a client needs to log in to it."""

    host: str
    port: int
    user: str
    key_file: Path
    """The client's private key (authorised)."""
    known_hosts: Path
    directory: Path
    log_file: Path
    pid: int

    def ssh_options(self) -> list[str]:
        """``-o`` options that keep the client away from the user's own known_hosts."""
        return [f"UserKnownHostsFile={self.known_hosts}", "GlobalKnownHostsFile=/dev/null"]

    def rsync_location(self, path: Path | str, **extra: Any) -> dict[str, Any]:
        """The fields of an ``rsync`` transfer location for ``path`` on this server (``extra`` wins)."""
        return {
            "kind": "rsync",
            "host": self.host,
            "user": self.user,
            "path": str(path),
            "port": self.port,
            "key_file": str(self.key_file),
            "ssh_options": self.ssh_options(),
            **extra,
        }

    def new_key(self, name: str) -> Path:
        """A fresh key pair the server does *not* accept."""
        return keygen(self.directory / name)


def _config(directory: Path, port: int, host_key: Path, authorized: Path) -> str:
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f'HostKey "{host_key}"',
        f'PidFile "{directory / "sshd.pid"}"',
        f'AuthorizedKeysFile "{authorized}"',
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "MaxStartups 100",
        "MaxSessions 100",
        "LogLevel VERBOSE",
    ]
    return "\n".join(lines) + "\n"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _start(sshd: str, config: Path, log_file: Path, port: int) -> subprocess.Popen[bytes] | None:
    """Start sshd and wait until it listens; None if it exited (e.g. the port was taken)."""
    proc = subprocess.Popen(
        [sshd, "-D", "-f", str(config), "-E", str(log_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        if _listening(port):
            return proc
        time.sleep(0.05)
    _stop(proc)
    return None


@contextmanager
def private_sshd(directory: Path) -> Iterator[SshServer]:
    """A private sshd on 127.0.0.1 for the current user, its files under ``directory``."""
    sshd = sshd_path()
    if sshd is None:
        raise RuntimeError("sshd is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    host_key = keygen(directory / "host_ed25519")
    client_key = keygen(directory / "client_ed25519")
    authorized = directory / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    config, log_file = directory / "sshd_config", directory / "sshd.log"
    proc = None
    for _attempt in range(3):
        port = free_port()
        config.write_text(_config(directory, port, host_key, authorized))
        proc = _start(sshd, config, log_file, port)
        if proc is not None:
            break
    if proc is None:
        log = log_file.read_text() if log_file.exists() else ""
        raise RuntimeError(f"sshd did not start: {log[-2000:]}")
    try:
        yield SshServer(
            host="127.0.0.1",
            port=port,
            user=pwd.getpwuid(os.getuid()).pw_name,
            key_file=client_key,
            known_hosts=directory / "known_hosts",
            directory=directory,
            log_file=log_file,
            pid=proc.pid,
        )
    finally:
        _stop(proc)
