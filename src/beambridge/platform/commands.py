"""Running scheduler (and other) commands: timeouts, bounded retries with backoff, exact logging."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from beambridge.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class CommandResult:
    """What a finished command printed and returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """One line naming the command, its exit code and (the start of) what it printed."""
        out = (self.stdout.strip() + " " + self.stderr.strip()).strip()
        if len(out) > 500:
            out = out[:500] + "…"
        return f"`{' '.join(self.argv)}` exited {self.returncode}: {out or '(no output)'}"


class CommandTimeout(Exception):
    """The command did not finish in time (it was killed)."""


class CommandRunner:
    """Runs commands with a timeout; every run is logged with its exact argv and output."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
    ) -> CommandResult:
        """Run ``argv`` once. :class:`CommandTimeout` if it overruns; ``FileNotFoundError`` if missing."""
        argv = tuple(str(arg) for arg in argv)
        started = time.monotonic()
        try:
            done = subprocess.run(
                argv,
                input=input,
                capture_output=True,
                text=True,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                timeout=timeout_s or self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            log.warning("command_timed_out", after_s=time.monotonic() - started, argv=" ".join(argv))
            raise CommandTimeout(
                f"`{' '.join(argv)}` did not finish in {timeout_s or self.timeout_s} s"
            ) from exc
        result = CommandResult(argv, done.returncode, done.stdout, done.stderr)
        level = logging.DEBUG if result.ok else logging.WARNING
        log.log(
            level,
            "command_done",
            argv=" ".join(argv),
            exit_code=done.returncode,
            duration_s=time.monotonic() - started,
            output=None if result.ok else result.describe(),
        )
        return result
