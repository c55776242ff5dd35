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
from tests.beamline.waiting import wait_until as wait_for
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


def datasets(client: Client) -> list[str]:
    return sorted(Path(s.dataset).name for s in client.submissions.list(workflow="wf"))


def test_settle_time_pattern_recursion_and_restart(client: Client, tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    # settle_s well above the writer's pauses: each pause is 0.1 s plus one request to the service, and
    # at CI load that request took long enough for a 0.4 s settle time to pass mid-file
    rule = CompletionRule(pattern="scan_*.h5", settle_s=1.5)
    journal = tmp_path / "journal.jsonl"
    with Running(FolderWatcher(client, root, "wf", rule, journal, poll_s=0.05)) as watcher:
        growing = root / "scan_1.h5"
        with growing.open("wb") as handle:
            for _ in range(6):  # written over 0.6 s or more: never submitted half-written
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
        time.sleep(rule.settle_s + 0.2)
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


# --- live: submitted while the detector writes ---------------------------------------------------------


class SlowDetector:
    """A detector writing a SWMR file frame by frame on a thread; ``stop_after`` frames (then it closes
    early, as a writer that crashed mid-acquisition leaves its file)."""

    def __init__(self, path: Path, frames: int = 20, pause_s: float = 0.05, stop_after: int | None = None):
        import numpy as np

        from beambridge.xpcs.io.live import SwmrFrameWriter

        self.path, self.closed_at = path, 0.0
        rng = np.random.default_rng(len(path.name))
        self.frames = rng.poisson(1.0, (frames, 8, 8)).astype(np.uint16)
        self.writer = SwmrFrameWriter(path, (8, 8), frames, 1e-3)
        self.pause_s, self.stop_after = pause_s, stop_after or frames
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self) -> None:
        for frame in self.frames[: self.stop_after]:
            self.writer.append(frame)
            time.sleep(self.pause_s)
        self.writer.close()
        self.closed_at = time.time()

    def join(self) -> None:
        self.thread.join(30)


def submissions(client: Client) -> list:  # type: ignore[type-arg]
    return list(client.submissions.list(workflow="wf"))


def test_a_live_file_is_submitted_while_written_and_its_close_reported_once(
    client: Client, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    rule = CompletionRule(pattern="*.h5", settle_s=0.3, live=True)
    with Running(FolderWatcher(client, root, "wf", rule, tmp_path / "j", poll_s=0.05)) as watcher:
        detector = SlowDetector(root / "scan_1.h5", frames=30, pause_s=0.05)
        wait_for(lambda: len(submissions(client)) == 1)
        assert detector.thread.is_alive(), "submitted only after the file closed"
        sub = submissions(client)[0]
        assert sub.key.startswith("live:") and sub.context["live"] is True and sub.closed_at is None
        assert sub.context["metadata"]["frames"] == 30  # type: ignore[index]
        detector.join()
        wait_for(lambda: submissions(client)[0].closed_at is not None)
        closed = submissions(client)[0].closed_at
        assert closed is not None and abs(closed.timestamp() - detector.closed_at) < 1.0
        time.sleep(0.5)
        assert len(submissions(client)) == 1
        assert (watcher.stats.submitted, watcher.stats.live, watcher.stats.repeated) == (1, 1, 0)


def test_live_files_survive_watcher_restarts_with_or_without_the_journal(
    client: Client, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    rule = CompletionRule(pattern="*.h5", settle_s=0.3, live=True)
    one = SlowDetector(root / "scan_1.h5", frames=40, pause_s=0.05)
    with Running(FolderWatcher(client, root, "wf", rule, tmp_path / "j1", poll_s=0.05)):
        wait_for(lambda: len(submissions(client)) == 1)
    # Restarted with its journal while the file still grows: nothing new is sent, the close is reported.
    with Running(FolderWatcher(client, root, "wf", rule, tmp_path / "j1", poll_s=0.05)) as watcher:
        one.join()
        wait_for(lambda: submissions(client)[0].closed_at is not None)
        assert watcher.stats.submitted == 0
    # A second acquisition written entirely while no watcher runs, then a watcher without any journal.
    two = SlowDetector(root / "scan_2.h5", frames=10, pause_s=0.01)
    two.join()
    with Running(FolderWatcher(client, root, "wf", rule, tmp_path / "j2", poll_s=0.05)) as watcher:
        wait_for(lambda: [bool(s.closed_at) for s in submissions(client)] == [True, True])
        wait_for(lambda: watcher.stats.submitted + watcher.stats.repeated == 2)
        assert (watcher.stats.submitted, watcher.stats.repeated) == (1, 1)
    subs = submissions(client)
    assert [Path(s.dataset).name for s in subs] == ["scan_1.h5", "scan_2.h5"]
    assert all(s.key.startswith("live:") and s.closed_at is not None for s in subs), [
        (s.key[:60], s.closed_at) for s in subs
    ]


def test_live_mode_copes_with_corrupt_partial_and_plain_files(client: Client, tmp_path: Path) -> None:
    import h5py
    import numpy as np

    root = tmp_path / "data"
    root.mkdir()
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as handle:  # no SWMR, no announced frame count: an ordinary dataset
        handle["/entry/data/data"] = np.ones((4, 8, 8), dtype=np.uint16)
    rule = CompletionRule(pattern="*.h5", settle_s=0.3, live=True)
    with Running(FolderWatcher(client, root, "wf", rule, tmp_path / "j", poll_s=0.05)) as watcher:
        (root / "scan_1.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(3000))  # corrupt
        (root / "scan_2.h5").write_bytes(plain.read_bytes()[:1500])  # truncated copy
        (root / "scan_3.h5").write_bytes(plain.read_bytes())
        crashed = SlowDetector(root / "scan_4.h5", frames=50, pause_s=0.02, stop_after=12)
        crashed.join()
        wait_for(lambda: [bool(s.closed_at) for s in submissions(client)] == [True] * 4)
        time.sleep(0.5)
        subs = {Path(s.dataset).name: s for s in submissions(client)}
        assert len(subs) == 4 and watcher.stats.errors == 0
    for name in ("scan_1.h5", "scan_2.h5", "scan_3.h5"):
        assert subs[name].key.startswith("file:") and "live" not in subs[name].context
    # The acquisition that stopped after 12 of 50 frames was submitted live; its jobs' follow reader says so.
    assert subs["scan_4.h5"].key.startswith("live:")


def test_the_live_key_is_fixed_at_the_first_frame(tmp_path: Path) -> None:
    import numpy as np

    from beambridge.beamline.datasets import live_key
    from beambridge.xpcs.io.live import SwmrFrameWriter

    path = tmp_path / "a.h5"
    writer = SwmrFrameWriter(path, (4, 4), 3, 1e-3)
    assert live_key(path) is None  # no frame yet
    writer.append(np.ones((4, 4), dtype=np.uint16))
    growing = live_key(path)
    writer.append(np.zeros((2, 4, 4), dtype=np.uint16))
    writer.close()
    assert growing is not None and growing == live_key(path) and growing.expected_frames == 3
    again = SwmrFrameWriter(path, (4, 4), 3, 1e-3)  # the same path, a new acquisition
    again.append(np.full((4, 4), 7, dtype=np.uint16))
    again.close()
    assert live_key(path) is not None and live_key(path) != growing
    (tmp_path / "b.h5").write_bytes(b"not hdf5")
    (tmp_path / "c.txt").write_bytes(b"")
    assert live_key(tmp_path / "b.h5") is None and live_key(tmp_path / "c.txt") is None


# --- datasets of several files ---------------------------------------------------------------------------


def test_a_dataset_of_several_files_is_submitted_once_when_complete(client: Client, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    rule = CompletionRule(pattern="*.h5", settle_s=0.2, group=r"^(?P<dataset>scan_\d+)_part", group_files=3)
    with Running(FolderWatcher(client, root, "wf", rule, tmp_path / "j", poll_s=0.05)) as watcher:
        for part in range(3):
            (root / f"scan_1_part{part}.h5").write_bytes(os.urandom(500))
            time.sleep(0.5)  # settled, but not all there yet
            if part < 2:
                assert submissions(client) == []
        wait_for(lambda: len(submissions(client)) == 1)
        time.sleep(0.4)
        [sub] = submissions(client)
        assert Path(sub.dataset) == (root / "scan_1").resolve() and sub.key.startswith("files:")
        assert [f["name"] for f in sub.context["files"]] == [f"scan_1_part{i}.h5" for i in range(3)]  # type: ignore[index, union-attr]
        assert watcher.stats.submitted == 1
    # Restarted without its journal: the same files are the same dataset; a file added later makes it a new one.
    with Running(FolderWatcher(client, root, "wf", rule, tmp_path / "j2", poll_s=0.05)) as watcher:
        wait_for(lambda: watcher.stats.repeated == 1)
        (root / "scan_1_part3.h5").write_bytes(b"late")
        wait_for(lambda: watcher.stats.submitted == 1)
    assert len(submissions(client)) == 2


def test_a_folder_dataset_waits_for_its_marker_and_survives_a_corrupt_member(
    client: Client, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    (root / "scan_7").mkdir(parents=True)
    rule = CompletionRule(pattern="*.tif", settle_s=0.0, marker="{name}/DONE", group=r"^(scan_\d+)/")
    with Running(FolderWatcher(client, root, "wf", rule, tmp_path / "j", poll_s=0.05)) as watcher:
        for i in range(4):
            (root / "scan_7" / f"frame_{i}.tif").write_bytes(os.urandom(100))
        (root / "scan_7" / "frame_4.tif").write_bytes(b"")  # an empty (corrupt) frame is still a member
        time.sleep(0.6)
        assert submissions(client) == []  # no marker yet
        (root / "scan_7" / "DONE").write_bytes(b"")
        wait_for(lambda: len(submissions(client)) == 1)
        [sub] = submissions(client)
        assert sub.context["file"]["count"] == 5  # type: ignore[index, call-overload]
        assert watcher.stats.errors == 0


def test_an_hdf5_file_still_open_for_writing_is_held(tmp_path: Path) -> None:
    """A writer that pauses longer than settle_s has not closed its file: HDF5's lock says so."""
    import subprocess
    import sys

    import h5py

    from beambridge.beamline.watcher import held_by_a_writer

    path = tmp_path / "scan.h5"
    hold = "import h5py,sys; f=h5py.File(sys.argv[1],'w'); f['x']=[1,2,3]; f.flush(); print('open', flush=True); sys.stdin.read()"
    writer = subprocess.Popen([sys.executable, "-c", hold, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "open"
        assert held_by_a_writer(path)
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait(timeout=30)
    assert not held_by_a_writer(path)
    h5py.File(path, "r").close()
    (tmp_path / "corrupt.h5").write_bytes(b"not hdf5")
    assert not held_by_a_writer(tmp_path / "corrupt.h5")
    assert not held_by_a_writer(tmp_path / "notes.txt")


PAUSING_WRITER = """
import sys, time, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    data = f.create_dataset("frames", shape=(0, 8), maxshape=(None, 8), dtype="u2", chunks=(1, 8))
    for i in range(4):
        data.resize(i + 1, axis=0)
        data[i] = i
        f.flush()
        print("frame", i, flush=True)
        time.sleep(float(sys.argv[2]) if i == 1 else 0.05)  # one pause far longer than settle_s
"""


@pytest.mark.parametrize("grouped", [False, True], ids=["one file", "group of files"])
def test_a_writer_pausing_longer_than_settle_s_is_submitted_once_when_it_closes(
    client: Client, tmp_path: Path, grouped: bool
) -> None:
    """The demo's double submission, end to end: a writer in another process stops for 5× settle_s mid-file.
    The watcher must not take the half-written file (nor the group it belongs to) for a closed one."""
    import subprocess
    import sys

    import h5py

    root = tmp_path / "data"
    root.mkdir()
    if grouped:
        rule = CompletionRule(
            pattern="*.h5", settle_s=0.3, group=r"^(?P<dataset>scan_\d+)_part", group_files=2
        )
        (root / "scan_1_part0.h5").write_bytes(os.urandom(100))
        path = root / "scan_1_part1.h5"
    else:
        rule = CompletionRule(pattern="*.h5", settle_s=0.3)
        path = root / "scan_1.h5"
    with Running(FolderWatcher(client, root, "wf", rule, tmp_path / "j", poll_s=0.05)) as watcher:
        writer = subprocess.Popen(
            [sys.executable, "-c", PAUSING_WRITER, str(path), "1.5"], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None
        assert writer.stdout.readline().startswith("frame 0")
        assert writer.stdout.readline().startswith("frame 1")
        time.sleep(1.2)  # the pause: 4× settle_s with no write, the file still open
        assert submissions(client) == [], "a paused writer's file was taken for a closed one"
        assert writer.wait(timeout=60) == 0
        wait_for(lambda: len(submissions(client)) == 1)
        wait_for(lambda: watcher.stats.submitted == 1)
        time.sleep(0.6)
        assert len(submissions(client)) == 1 and watcher.stats.submitted == 1
    with h5py.File(path, "r") as done:
        assert done["frames"].shape == (4, 8)
    [sub] = submissions(client)
    members = sub.context["files"] if grouped else [sub.context["file"]]  # type: ignore[index]
    assert any(m["size"] == path.stat().st_size for m in members)  # type: ignore[index, union-attr]
