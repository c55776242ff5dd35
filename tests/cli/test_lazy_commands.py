"""Each command imports only what it needs: ``beambridge job ls`` does not pay for the server, the
placement code, the demo or the XPCS kernels (every CLI call used to import all of them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from beambridge.cli import main as cli_main

HEAVY = ("beambridge.server", "beambridge.placement", "beambridge.xpcs", "numba", "matplotlib", "fastapi")


def _imported_after(argv: list[str]) -> list[str]:
    """The heavy modules a fresh interpreter holds after building the command line for ``argv``."""
    code = (
        "import json, sys\n"
        "from beambridge.cli.main import _command_for\n"
        f"_command_for({argv!r})\n"
        f"print(json.dumps(sorted({{m.split('.')[0] if not m.startswith('beambridge') else '.'.join(m.split('.')[:2]) for m in sys.modules if m.startswith({HEAVY!r})}})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return list(json.loads(out))


@pytest.mark.parametrize(
    "argv",
    [["job", "ls"], ["whoami"], ["login"], ["site", "ls"], ["app", "ls"], ["events"], ["--version"]],
)
def test_user_commands_do_not_import_the_server_or_the_kernels(argv: list[str]) -> None:
    assert _imported_after(argv) == []


def test_server_up_does_not_import_the_client() -> None:
    code = (
        "import sys\nfrom beambridge.cli.main import _command_for\n_command_for(['server', 'up'])\n"
        "print('beambridge.client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_top_level_name_is_mounted_for_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["--help"]) == 0
    listed = capsys.readouterr().out
    for name in (*cli_main._GROUPS, *cli_main._COMMANDS, "xpcs"):
        assert f" {name} " in listed, name


def test_one_command_line_still_has_the_shared_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("beambridge ")
    assert cli_main.main(["job", "--help"]) == 0
    assert "ls" in capsys.readouterr().out


def test_an_unknown_command_is_a_usage_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["jobz", "ls"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "jobz" in err


def test_site_agent_commands_are_mounted_once_across_calls(capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(3):
        assert cli_main.main(["site", "--help"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split()[1] for line in lines if line.startswith("│ init ")] == ["init"]
