"""Process tuning of a dedicated server process."""

from __future__ import annotations

import subprocess
import sys

from beambridge.server.settings import ServerSettings


def test_tuning_freezes_long_lived_objects_and_spaces_young_collections() -> None:
    script = (
        "import gc\n"
        "import beambridge.server.app  # the framework, the validators: what lives as long as the process\n"
        "from beambridge.server.runtime import YOUNG_COLLECTION_EVERY, tune_garbage_collector\n"
        "before = gc.get_threshold()\n"
        "tune_garbage_collector()\n"
        "after = gc.get_threshold()\n"
        "assert after == (YOUNG_COLLECTION_EVERY, *before[1:]), (before, after)\n"
        "assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()\n"
        "print('tuned')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "tuned"


def test_only_a_dedicated_server_process_is_tuned(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("BEAMBRIDGE_TUNE_GC", raising=False)
    assert ServerSettings().tune_gc is False  # embedding the app (tests, notebooks) leaves gc alone
    monkeypatch.setenv("BEAMBRIDGE_TUNE_GC", "1")  # what `beambridge server up` sets for its workers
    assert ServerSettings().tune_gc is True
