"""Data staging end to end on the local scheduler: inputs in, results out, failures named."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

from beambridge.site.config import SiteConfig, SiteDir
from beambridge.states import JobState
from tests.site.harness import AgentProcess, System, wait_for

APPS = Path(__file__).with_name("apps_e2e.py")


def staging_site(
    system: System, name: str, locations: dict[str, dict[str, Any]], **settings: Any
) -> tuple[SiteDir, SiteConfig, AgentProcess, int]:
    """A site with these locations and the test apps, its agent running and its aliases registered;
    the id of its ``Count`` app."""
    site, config = system.make_site(name, locations=locations, launcher={"idle_timeout_s": 3}, **settings)
    shutil.copy(APPS, site.apps / "e2e.py")
    agent = system.start_agent(site)
    app_id = system.app_ids(config.site_id)["Count"]
    wait_for(
        lambda: set(system.client.sites.get(config.site_id).locations) == set(locations),
        30,
        what="location aliases registered",
    )
    return site, config, agent, app_id


def test_jobs_with_inputs_and_outputs_stage_through_a_beamline_location(
    system: System, tmp_path: Path
) -> None:
    beamline = tmp_path / "beamline"
    (beamline / "data").mkdir(parents=True)
    for i in range(6):
        (beamline / "data" / f"A{i:03d}.dat").write_bytes(b"x" * (1000 + i))
    _, config, _, app_id = staging_site(
        system,
        "staging",
        {"aps_dtn": {"kind": "local", "path": str(beamline)}},
        transfers={"max_files_per_task": 4},
    )
    assert system.client.sites.get(config.site_id).locations == {"aps_dtn": "local"}
    jobs = system.client.jobs.bulk_create(
        {
            "app_id": app_id,
            "workdir": f"count/{i}",
            "transfers": {"raw": f"aps_dtn:/data/A{i:03d}.dat", "result": f"aps_dtn:/results/A{i:03d}.txt"},
            "node_packing_count": 4,
        }
        for i in range(6)
    )
    missing = system.client.jobs.create(
        app_id,
        "count/missing",
        transfers={"raw": "aps_dtn:/data/nope.dat", "result": "aps_dtn:/results/nope.txt"},
    )
    done = {job.workdir: job for job in system.wait_all([j.id for j in jobs] + [missing.id], timeout_s=120)}
    for i in range(6):
        job = done[f"count/{i}"]
        assert job.state == JobState.JOB_FINISHED, system.logs()
        assert (beamline / "results" / f"A{i:03d}.txt").read_text().strip() == str(1000 + i)
        states = [e.to_state for e in system.client.jobs.events(job.id)]
        assert (
            states.index(JobState.STAGED_IN)
            < states.index(JobState.RUNNING)
            < states.index(JobState.STAGED_OUT)
        )
    staged = next(e for e in system.client.jobs.events(jobs[0].id) if e.to_state == JobState.STAGED_IN)
    [figures] = staged.data["transfers"]
    assert figures["files"] >= 1 and figures["bytes"] >= 1000 and "rate_mb_s" in figures
    inputs = {item.task_id for item in system.client.transfers.filter(site_id=config.site_id, direction="in")}
    assert len(inputs) <= 4  # batched: 7 inputs in tasks of at most 4 (the failing one may retry)
    failed = done["count/missing"]
    assert failed.state == JobState.FAILED
    assert "nope.dat" in (failed.error or "") and "not_found" in (failed.error or "")
    assert not list((beamline / "results").glob("nope*"))


def test_a_declared_sha256_fails_only_the_job_whose_input_does_not_match(
    system: System, tmp_path: Path
) -> None:
    """The beamline recorded each file's SHA-256 when it wrote it; one file was damaged on its way to the
    beamline's storage. That job fails naming the mismatch; the others, batched with it, finish."""
    beamline = tmp_path / "beamline"
    (beamline / "data").mkdir(parents=True)
    digests = {}
    for i in range(3):
        content = bytes([i]) * 5000
        digests[i] = hashlib.sha256(content).hexdigest()
        (beamline / "data" / f"S{i}.dat").write_bytes(content)
    damaged = bytearray((beamline / "data" / "S1.dat").read_bytes())
    damaged[2500] ^= 0x10  # one flipped bit, same size
    (beamline / "data" / "S1.dat").write_bytes(bytes(damaged))
    site, _, _, app_id = staging_site(
        system,
        "declared",
        {"aps_dtn": {"kind": "local", "path": str(beamline), "link": False}},
        transfers={"retry_limit": 2, "retry_backoff_s": 0.2},
    )

    jobs = system.client.jobs.bulk_create(
        {
            "app_id": app_id,
            "workdir": f"declared/{i}",
            "transfers": {
                "raw": {"ref": f"aps_dtn:/data/S{i}.dat", "sha256": digests[i]},
                "result": f"aps_dtn:/results/S{i}.txt",
            },
        }
        for i in range(3)
    )
    done = {job.workdir: job for job in system.wait_all([j.id for j in jobs], timeout_s=120)}
    assert done["declared/0"].state == done["declared/2"].state == JobState.JOB_FINISHED, system.logs()
    failed = done["declared/1"]
    assert failed.state == JobState.FAILED
    assert f"is not the expected {digests[1]}" in (failed.error or ""), failed.error
    assert "checksum" in (failed.error or "")
    assert not (site.data / "declared/1/raw.dat").exists()  # never under the final name
    assert not list((site.data / "declared/1").glob(".raw.dat.bb-partial-*"))
    assert (site.data / "declared/0/raw.dat").read_bytes() == bytes([0]) * 5000
    assert not (beamline / "results" / "S1.txt").exists()


def test_corruption_in_flight_is_caught_and_the_copy_redone(system: System, tmp_path: Path) -> None:
    """Bytes already written to the partial copy change while the copy goes on (a flaky disk or
    network file system): the read-back check catches it, the copy is redone, and the job runs on an
    intact file."""
    import os
    import threading

    beamline = tmp_path / "beamline"
    (beamline / "data").mkdir(parents=True)
    payload = os.urandom(1 << 20) * 192  # 192 MiB: the copy takes long enough to damage it mid-way
    (beamline / "data" / "big.dat").write_bytes(payload)
    site, _, _, app_id = staging_site(
        system,
        "in-flight",
        {"aps_dtn": {"kind": "local", "path": str(beamline), "link": False}},
        transfers={"retry_limit": 3, "retry_backoff_s": 0.2},
    )
    workdir = site.data / "flight"
    damaged: list[Path] = []
    stop = threading.Event()

    def damage_first_partial() -> None:
        while not stop.is_set() and not damaged:
            for partial in workdir.glob(".raw.dat.bb-partial-*") if workdir.is_dir() else ():
                try:
                    if partial.stat().st_size < 1 << 20:
                        continue
                    with open(partial, "r+b") as fh:  # the copy's own writes go on past this byte
                        first = fh.read(1)
                        fh.seek(0)
                        fh.write(bytes([first[0] ^ 0xFF]))
                except FileNotFoundError:
                    continue
                damaged.append(partial)
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=damage_first_partial, daemon=True)
    watcher.start()  # before the job exists: nothing is copied until then
    try:
        job = system.client.jobs.create(
            app_id, "flight", transfers={"raw": "aps_dtn:/data/big.dat", "result": "aps_dtn:/results/big.txt"}
        )
        [done] = system.wait_all([job.id], timeout_s=180)
    finally:
        stop.set()
        watcher.join(5)
    assert damaged, "the copy was never seen in flight"
    assert done.state == JobState.JOB_FINISHED, system.logs()
    assert (workdir / "raw.dat").read_bytes() == payload
    assert (beamline / "results/big.txt").read_text().strip() == str(len(payload))
    [item] = list(system.client.transfers.filter(job_id=job.id, direction="in"))
    assert item.state == "done" and item.info["attempts"] == 1, item.info  # one failed attempt, then good
    assert "checksum" in item.info["last_error"], item.info


def test_agent_killed_mid_transfer_redoes_it_once_and_loses_nothing(system: System, tmp_path: Path) -> None:
    import os
    import signal

    from tests.site.harness import pids_alive
    from tests.sshd import private_sshd, require_ssh_tools

    require_ssh_tools()
    beamline = tmp_path / "beamline"
    (beamline / "data").mkdir(parents=True)
    payload = os.urandom(12 << 20)
    (beamline / "data" / "big.dat").write_bytes(payload)
    with private_sshd(tmp_path / "sshd") as server:
        # --bwlimit in KiB/s: about 6 s for the file, time to kill the agent
        location = server.rsync_location(beamline, rsync_options=["--bwlimit=2000"])
        site, _, agent, app_id = staging_site(system, "kill-staging", {"beam": location})
        job = system.client.jobs.create(
            app_id, "big", transfers={"raw": "beam:/data/big.dat", "result": "beam:/results/big.txt"}
        )

        def active_item() -> str | None:
            items = list(system.client.transfers.filter(job_id=job.id, direction="in"))
            return items[0].task_id if items and items[0].state == "active" else None

        task_id = wait_for(active_item, 60, poll_s=0.1, what="the inbound transfer running")
        time.sleep(1)
        rsyncs = _children_named(agent.process.pid, "rsync")
        assert rsyncs, "no rsync running under the agent"
        agent.kill(signal.SIGKILL)
        time.sleep(1.5)
        assert not pids_alive(rsyncs) or all(_is_zombie(pid) for pid in pids_alive(rsyncs)), (
            "rsync outlived the agent"
        )
        assert not (site.data / "big/raw.dat").exists()  # nothing under the final name mid-transfer

        system.start_agent(site)
        [done] = system.wait_all([job.id], timeout_s=120)
        assert done.state == JobState.JOB_FINISHED, system.logs()
        assert (site.data / "big/raw.dat").read_bytes() == payload
        assert (beamline / "results/big.txt").read_text().strip() == str(len(payload))
        [item] = list(system.client.transfers.filter(job_id=job.id, direction="in"))
        assert item.task_id == task_id and item.state == "done"  # the same task, redone once
        states = [e.to_state for e in system.client.jobs.events(job.id)]
        assert states.count(JobState.STAGED_IN) == 1 and states.count(JobState.RUNNING) == 1, states


def _children_named(pid: int, name: str) -> list[int]:
    """Pids of live descendants of ``pid`` whose command name is ``name`` (read from /proc)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
                names[int(entry.name)] = (entry / "comm").read_text().strip()
            except (OSError, IndexError):
                continue
            parents[int(entry.name)] = int(fields[1])

    def descends(child: int) -> bool:
        while child in parents and child > 1:
            child = parents[child]
            if child == pid:
                return True
        return False

    return [p for p, comm in names.items() if comm == name and descends(p)]


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True
