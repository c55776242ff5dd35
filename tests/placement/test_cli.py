"""``beambridge placement simulate``: tables, JSON, the plot, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from beambridge.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_simulate_prints_the_comparison_and_writes_the_plot(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the tables are wide; main() sizes the console from $COLUMNS
    plot = tmp_path / "sites.png"
    code, out, err = run(capsys, "placement", "simulate", "balsam-paper", "--plot", str(plot))
    assert code == 0, err
    for text in (
        "policies compared",
        "round_robin",
        "shortest_backlog",
        "fastest_finish",
        "jobs/min per site",
        "theta",
        "cori",
        "summit",
        "latency p95 s",
        "stranded",
    ):
        assert text in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "placement", "simulate", "balsam-paper", "-p", "shortest_backlog", "--json")
    assert code == 0
    [row] = json.loads(out)
    assert row["policy"] == "shortest_backlog" and row["stranded"] == 0
    assert set(row["site_jobs_per_min"]) == {"theta", "summit", "cori"}


def test_scenarios_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "placement", "scenarios")
    assert code == 0 and out.startswith("balsam-paper: ") and "internet-scale: 10 facilities" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("placement", "simulate", "balsam-paper", "-p", "fastest"), "unknown policy 'fastest'"),
        (("placement", "simulate", "nothing-here.yml"), "cannot read scenario 'nothing-here.yml'"),
    ],
)
def test_mistakes_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
