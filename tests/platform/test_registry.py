"""One adapter, one place: a toy scheduler, MPI launcher and transfer backend, each one class plus one
registry line, appear in site configuration, its validation, the agent's factories and the CLI."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import Field

from beambridge.cli.main import main
from beambridge.platform.mpi import MPI_LAUNCHERS, LaunchSpec, MpiLauncher, get_mpi_launcher
from beambridge.platform.registry import Registry
from beambridge.platform.schedulers import SCHEDULERS, PilotRequest, PilotStatus, Scheduler
from beambridge.platform.transfer import TRANSFER_BACKENDS, TransferBackend, get_backend
from beambridge.platform.transfer.base import TaskStatus, TransferHandle, TransferTask
from beambridge.schemas.common import InputModel
from beambridge.schemas.sites import SiteUpdate
from beambridge.site.agent import make_backends, make_scheduler
from beambridge.site.config import SiteConfig, SiteConfigError, SiteDir


class ToyScheduler(Scheduler):
    """A scheduler that remembers where its site is."""

    name = "toy"

    def __init__(self, site_root: Path | None = None) -> None:
        super().__init__()
        self.site_root = site_root

    @classmethod
    def for_site(cls, site_root: Path) -> ToyScheduler:
        return cls(site_root)

    def submit(self, request: PilotRequest) -> str:
        return "1"

    def statuses(self, scheduler_ids: Sequence[str]) -> dict[str, PilotStatus]:
        return {}

    def cancel(self, scheduler_id: str) -> None:
        pass

    @staticmethod
    def allocation_nodes(environ: Mapping[str, str]) -> list[str] | None:
        return None


class ToyRun(MpiLauncher):
    name = "toyrun"

    def argv(self, spec: LaunchSpec) -> list[str]:
        return [self.executable, *spec.nodes, "--", *spec.command]


class BucketLocation(InputModel):
    kind: Literal["toy"] = "toy"
    bucket: str = Field(min_length=1)


class ToyBackend(TransferBackend):
    kind = "toy"
    location_model = BucketLocation

    def __init__(self, location: BucketLocation) -> None:
        self.location = location

    def start(self, task: TransferTask, state: Mapping[str, Any] | None = None) -> TransferHandle:
        raise NotImplementedError

    def poll(self, handle: TransferHandle) -> TaskStatus:
        raise NotImplementedError

    def cancel(self, handle: TransferHandle) -> None:
        raise NotImplementedError


@pytest.fixture
def toys() -> Iterator[None]:
    SCHEDULERS.register("toy", ToyScheduler)  # one line per adapter
    MPI_LAUNCHERS.register("toyrun", ToyRun)
    TRANSFER_BACKENDS.register("toy", ToyBackend)
    yield
    SCHEDULERS.unregister("toy")
    MPI_LAUNCHERS.unregister("toyrun")
    TRANSFER_BACKENDS.unregister("toy")


def _config(**overrides: Any) -> dict[str, Any]:
    return {"name": "s", "server": "http://127.0.0.1:1", "site_id": 1, **overrides}


TOY_SITE = _config(
    scheduler="toy", launcher={"mpi_launcher": "toyrun"}, locations={"box": {"kind": "toy", "bucket": "b"}}
)


def test_toy_adapters_are_valid_site_configuration(toys: None, tmp_path: Path) -> None:
    config = SiteConfig.model_validate(TOY_SITE)
    assert (config.scheduler, config.launcher.mpi_launcher) == ("toy", "toyrun")
    scheduler = make_scheduler(SiteDir(tmp_path), config)
    assert isinstance(scheduler, ToyScheduler) and scheduler.site_root == tmp_path.resolve()
    [backend] = make_backends(SiteDir(tmp_path), config).values()
    assert isinstance(backend, ToyBackend) and backend.location.bucket == "b"
    assert get_mpi_launcher("toyrun").argv(LaunchSpec(["a"], ["n1"])) == ["toyrun", "n1", "--", "a"]
    assert SiteUpdate.model_validate({"locations": {"box": "toy"}}).locations == {"box": "toy"}


def test_the_toy_backend_checks_its_own_locations(toys: None, tmp_path: Path) -> None:
    site = SiteDir(tmp_path)
    bad = {**TOY_SITE, "locations": {"box": {"kind": "toy"}}}
    site.config_file.write_text(yaml.safe_dump(bad))
    with pytest.raises(SiteConfigError, match=r"locations: .*box: bucket: Field required"):
        site.load()
    with pytest.raises(ValueError, match="colour"):
        get_backend("toy", {"bucket": "b", "colour": "blue"})


def test_unregistered_names_are_refused_naming_the_registered_ones(toys: None, tmp_path: Path) -> None:
    site = SiteDir(tmp_path)
    for bad, words in [
        ({"scheduler": "condor"}, "unknown scheduler 'condor'; known: local, slurm, pbs, lsf, toy"),
        (
            {"launcher": {"mpi_launcher": "aprun"}},
            "unknown MPI launcher 'aprun'; known: mpirun, mpiexec, srun, toyrun",
        ),
        ({"locations": {"x": {"kind": "ftp"}}}, "x: unknown transfer backend 'ftp'"),
        (
            {"locations": {"x": {"path": "/p"}}},
            "x: a location needs a kind: one of local, rsync, globus, toy",
        ),
        (
            {"transfer_backends": {"local": {"a": 1}}},
            "local: transfer backend 'local' takes no site-wide settings",
        ),
    ]:
        site.config_file.write_text(yaml.safe_dump(_config(**bad)))
        with pytest.raises(SiteConfigError) as caught:
            site.load()
        assert words in str(caught.value)


def test_the_toy_adapters_appear_in_the_cli(toys: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["site", "adapters"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert any(line.split()[:2] == ["scheduler", "toy"] and "ToyScheduler" in line for line in listed)
    assert any(line.split()[:2] == ["launcher.mpi_launcher", "toyrun"] for line in listed)
    assert any(line.split()[:2] == ["locations.<alias>.kind", "toy"] for line in listed)


def test_without_the_registry_line_the_toy_is_unknown() -> None:
    with pytest.raises(ValueError, match="unknown scheduler 'toy'"):
        SiteConfig.model_validate(_config(scheduler="toy"))


def test_the_globus_section_keeps_working_under_its_new_name() -> None:
    settings = {"collection_id": "0e1c0000-0000-4000-8000-000000000001", "token_file": "tokens.json"}
    config = SiteConfig.model_validate(_config(globus=settings))
    assert config.transfer_backends == {"globus": settings}


def test_a_registry_refuses_bad_entries() -> None:
    registry: Registry[Scheduler] = Registry("scheduler", Scheduler)
    with pytest.raises(ValueError, match="letters, digits"):
        registry.register("no spaces", ToyScheduler)
    with pytest.raises(ValueError, match="not 'module:Class'"):
        registry.register("toy", "beambridge.platform.schedulers.toy")
    registry.register("toy", "tests.platform.test_registry:ToyScheduler")
    assert registry.load("toy") is ToyScheduler and registry.names() == ["toy"]
