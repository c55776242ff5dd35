"""Compiling the XPCS kernels ahead of the first job: the warm-up, its marker, what a cold job says.

The first XPCS job on a machine used to spend most of a minute compiling, with no word of it. These tests
keep the warm-up's marker and lock in a folder of their own; numba's cache itself is the usual one.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from beambridge.cli.xpcs import app
from beambridge.xpcs import warmup

runner = CliRunner()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setattr(warmup, "cache_root", lambda: root)
    return root


def test_a_warm_up_compiles_every_frame_kind_and_is_remembered(cache: Path) -> None:
    assert not warmup.is_warm()
    steps: list[str] = []
    timings = warmup.warm_up(steps.append)
    assert set(timings) == {
        *(f"multitau {kind}" for kind in warmup.FRAME_KINDS),
        "multitau normalized",
        "multitau sparse",
        "twotime uint16",
    }
    assert len(steps) == len(timings) and all(seconds > 0 for seconds in timings.values())
    assert warmup.is_warm() and warmup.marker_path().parent == cache
    assert warmup.warm_up() == {}  # remembered: nothing to do
    assert set(warmup.warm_up(force=True)) == set(timings)


def test_the_marker_names_what_the_cache_depends_on(cache: Path) -> None:
    name = warmup.marker_path().name
    assert name.startswith(".beambridge-warm-") and len(name) == len(".beambridge-warm-") + 16
    assert warmup.marker_path() == warmup.marker_path()  # stable while nothing changes


def test_a_cold_job_says_it_compiles_first_and_a_warm_one_says_nothing(cache: Path) -> None:
    said: list[str] = []
    assert warmup.announce_if_cold(said.append) is True
    assert len(said) == 1 and "compiling them first" in said[0] and "beambridge xpcs warmup" in said[0]
    cache.mkdir(parents=True)
    warmup.marker_path().touch()
    assert warmup.announce_if_cold(said.append) is False and len(said) == 1


def test_two_warm_ups_at_once_compile_once(cache: Path) -> None:
    """An agent and a pilot starting together: the second waits for the first and then has nothing to do."""
    cache.mkdir(parents=True)
    lock = (cache / ".beambridge-warmup.lock").open("a")
    fcntl.flock(lock, fcntl.LOCK_EX)  # a warm-up in progress elsewhere
    result: list[dict[str, float]] = []
    waiting = threading.Thread(target=lambda: result.append(warmup.warm_up()))
    waiting.start()
    time.sleep(0.5)
    assert waiting.is_alive(), "did not wait for the warm-up in progress"
    warmup.marker_path().touch()  # which then finished
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()
    waiting.join(timeout=60)
    assert result == [{}]


def _lock_is_free(cache: Path) -> bool:
    with (cache / ".beambridge-warmup.lock").open("a") as other:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(other, fcntl.LOCK_UN)
        return True


def test_workers_warming_at_once_wait_for_the_one_compiling_then_load_together(cache: Path) -> None:
    """A warm pilot's workers on a cold node: the first compiles holding the lock; the others wait for it,
    then run unlocked (loading what it compiled), not one after the other."""
    with warmup.compiling_once():  # nobody compiling: this one holds the lock while it runs
        assert not _lock_is_free(cache)
    assert _lock_is_free(cache)

    lock = (cache / ".beambridge-warmup.lock").open("a")
    fcntl.flock(lock, fcntl.LOCK_EX)  # another worker compiling
    entered: list[bool] = []

    def worker() -> None:
        with warmup.compiling_once():
            entered.append(_lock_is_free(cache))

    waiting = threading.Thread(target=worker)
    waiting.start()
    time.sleep(0.5)
    assert waiting.is_alive() and not entered, "did not wait for the worker compiling"
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()
    waiting.join(timeout=30)
    assert entered == [True]  # ran after it, without holding the lock


def test_a_read_only_cache_still_warms(cache: Path) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("a file where the cache folder should be")  # nothing can be written there
    assert warmup.warm_up() != {} and not warmup.is_warm()


def test_the_command_says_what_it_does(cache: Path) -> None:
    first = runner.invoke(app, ["warmup"])
    assert first.exit_code == 0, first.output
    assert "compiled the XPCS kernels in" in first.output and str(cache) in first.output
    again = runner.invoke(app, ["warmup"])
    assert again.exit_code == 0 and "already compiled for this machine" in again.output


def test_the_module_prints_key_value_lines(tmp_path: Path) -> None:
    """What agents and pilots run; with a cache that is already warm it only says so."""
    env_root = tmp_path / "numba"
    env_root.mkdir()
    code = (
        "import sys, pathlib; from beambridge.xpcs import warmup; "
        f"warmup.cache_root = lambda: pathlib.Path({str(env_root)!r}); "
        "warmup.marker_path().touch(); sys.exit(warmup.main())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("xpcs_warmup_skipped reason=cached cache=")
