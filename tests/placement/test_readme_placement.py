"""The README's placement example runs as written and says what it claims."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_placement_example(capsys: pytest.CaptureFixture[str]) -> None:
    [example] = [
        b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "place_batch" in b
    ]
    exec(compile(example, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and all("fastest predicted finish" in line for line in lines)
    assert {line.split()[1] for line in lines} == {"polaris", "perlmutter"}
