"""The folder watcher in-process against the live service: completion rules, restarts, refusals."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from beambridge.beamline.watcher import CompletionRule, FolderWatcher, Journal
from beambridge.client import Client
from tests.conftest import PASSWORD, ApiUser
from tests.servers import LiveServer


@pytest.fixture
def client(live_server: LiveServer, alice: ApiUser) -> Iterator[Client]:
    site = alice.site()
    alice.app(site["id"], "echo", parameters={"path": {"required": False, "default": ""}})
    with Client.login(live_server.url, alice.name, PASSWORD) as made:
        made.workflows.put(
            {
                "name": "wf",
                "filename_pattern": r"^scan_\d+",
                "steps": [{"name": "only", "app": "echo", "parameters": {"path": "{{ file.path }}"}}],
            }
        )
        yield made


class Running:
    """A watcher on a thread, stopped (and joined) when the block ends."""

    def __init__(self, watcher: FolderWatcher) -> None:
        self.watcher, self.stop = watcher, threading.Event()
        self.thread = threading.Thread(target=watcher.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> FolderWatcher:
        self.thread.start()
        return self.watcher

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def datasets(client: Client) -> list[str]:
    return sorted(Path(s.dataset).name for s in client.submissions.list(workflow="wf"))


def test_settle_time_pattern_recursion_and_restart(client: Client, tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    rule = CompletionRule(pattern="scan_*.h5", settle_s=0.4)
    journal = tmp_path / "journal.jsonl"
    with Running(FolderWatcher(client, root, "wf", rule, journal, poll_s=0.05)) as watcher:
        growing = root / "scan_1.h5"
        with growing.open("wb") as handle:
            for _ in range(6):  # written over 0.6 s: never submitted half-written
                handle.write(b"x" * 1000)
                handle.flush()
                time.sleep(0.1)
                assert datasets(client) == []
        (root / "sub" / "scan_2.h5").write_bytes(b"y")
        (root / "notes.txt").write_bytes(b"not a dataset")
        (root / ".scan_9.h5").write_bytes(b"hidden")
        wait_for(lambda: datasets(client) == ["scan_1.h5", "scan_2.h5"])
        wait_for(lambda: watcher.stats.submitted == 2)  # the answer reaches the watcher after the service
        first = client.submissions.by_key(watcher.stats.answers[0].submission.key)
        assert first is not None and first.closed_at is not None
    # Down for a while: one file arrives, one is rewritten (a new dataset), the journal is cut short.
    (root / "scan_3.h5").write_bytes(b"z")
    time.sleep(0.05)
    (root / "scan_1.h5").write_bytes(b"rewritten")
    with journal.open("a") as handle:
        handle.write('{"path": "half a line')
    with Running(FolderWatcher(client, root, "wf", rule, journal, poll_s=0.05)) as watcher:
        wait_for(lambda: len(datasets(client)) == 4)
        wait_for(lambda: watcher.stats.submitted == 2)
        time.sleep(0.6)
        assert datasets(client) == ["scan_1.h5", "scan_1.h5", "scan_2.h5", "scan_3.h5"]
        assert watcher.stats.submitted == 2 and watcher.stats.repeated == 0


def test_without_the_journal_a_restart_repeats_nothing(client: Client, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    for i in range(3):
        (root / f"scan_{i}.h5").write_bytes(os.urandom(100))
    rule = CompletionRule(pattern="*.h5", settle_s=0)
    with Running(FolderWatcher(client, root, "wf", rule, tmp_path / "j1", poll_s=0.05)) as watcher:
        wait_for(lambda: watcher.stats.submitted == 3)
    with Running(FolderWatcher(client, root, "wf", rule, tmp_path / "j2", poll_s=0.05)) as watcher:
        wait_for(lambda: watcher.stats.repeated == 3)
        assert watcher.stats.submitted == 0
    assert len(datasets(client)) == 3


def test_marker_files_and_refused_datasets(client: Client, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    rule = CompletionRule(pattern="*.h5", settle_s=0, marker="{name}.done")
    with Running(FolderWatcher(client, root, "wf", rule, tmp_path / "j", poll_s=0.05)) as watcher:
        (root / "scan_1.h5").write_bytes(b"a")
        time.sleep(0.5)
        assert datasets(client) == []  # complete only once its marker exists
        (root / "scan_1.h5.done").write_bytes(b"")
        wait_for(lambda: datasets(client) == ["scan_1.h5"])
        (root / "other.h5").write_bytes(b"b")  # the workflow's filename_pattern refuses it
        (root / "other.h5.done").write_bytes(b"")
        wait_for(lambda: watcher.stats.refused == 1)
        time.sleep(0.3)
        assert watcher.stats.refused == 1 and datasets(client) == ["scan_1.h5"]


def test_marker_rules_map_markers_to_datasets(tmp_path: Path) -> None:
    by_name = CompletionRule(pattern="*.h5", marker="{name}.done")
    assert by_name.dataset_of_marker(tmp_path / "a.h5.done") == tmp_path / "a.h5"
    assert by_name.marker_of(tmp_path / "a.h5") == tmp_path / "a.h5.done"
    assert not by_name.is_dataset(tmp_path / "a.h5.done")
    by_stem = CompletionRule(pattern="*.h5", marker="{stem}.ok")
    (tmp_path / "b.h5").write_bytes(b"")
    assert by_stem.dataset_of_marker(tmp_path / "b.ok") == tmp_path / "b.h5"


def test_journal_survives_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    data = tmp_path / "f"
    data.write_bytes(b"1")
    journal = Journal(path)
    journal.record(data, data.stat(), key="k")
    journal.close()
    path.write_text(path.read_text() + '{"path": "torn')
    again = Journal(path)
    assert again.seen(data, data.stat())
    again.close()
