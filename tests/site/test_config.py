"""Site directories and site.yml: bad input gets one clear line naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from beambridge.cli.main import main
from beambridge.site.config import SiteConfigError, SiteDir


def test_a_directory_without_site_yml_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["site", "start", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no site.yml" in err and "\n" not in err


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: [unclosed", "not valid YAML"),
        ("- a list", "expected a mapping"),
        (
            "name: x\nserver: http://h\nsite_id: 1\nscheduler: condor\n",
            "scheduler: unknown scheduler 'condor'; known: local, slurm",
        ),
        ("name: x\nserver: http://h\nsite_id: 1\nlauncher: {cores_per_node: 0}\n", "launcher.cores_per_node"),
        ("name: x\nserver: http://h\nsite_id: 1\nbogus: 1\n", "bogus: Extra inputs are not permitted"),
        ("name: x\nserver: http://h\n", "site_id: Field required"),
    ],
)
def test_bad_site_yml_names_the_field(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "site.yml").write_text(text)
    with pytest.raises(SiteConfigError, match=r"site\.yml") as caught:
        SiteDir(tmp_path).load()
    assert problem in str(caught.value)


def test_missing_token_is_named(tmp_path: Path) -> None:
    (tmp_path / "site.yml").write_text("name: x\nserver: http://h\nsite_id: 1\n")
    site = SiteDir(tmp_path)
    with pytest.raises(SiteConfigError, match="cannot read the site token"):
        site.read_token(site.load())


def test_token_file_is_private(tmp_path: Path) -> None:
    (tmp_path / "site.yml").write_text("name: x\nserver: http://h\nsite_id: 1\n")
    site = SiteDir(tmp_path)
    config = site.load()
    site.write_token(config, "bbs_secret")
    assert site.token_path(config).stat().st_mode & 0o777 == 0o600
    assert site.read_token(config) == "bbs_secret"
