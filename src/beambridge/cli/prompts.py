"""Reading secrets and ``key=value`` options from the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

import typer


def read_password(from_stdin: bool, *, confirm: bool) -> str:
    """A password from the first line of stdin, or a hidden prompt (asked twice when ``confirm``)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise typer.BadParameter("no password on stdin", param_hint="--password-stdin")
        return password
    answer: str = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    return answer


def parse_pairs(values: Iterable[str], option: str, *, decode_json: bool = False) -> dict[str, Any]:
    """``["k=v", …]`` as a dict; with ``decode_json`` values are JSON where they parse, else strings."""
    pairs: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} must look like key=value", param_hint=option)
        if decode_json:
            try:
                pairs[key] = json.loads(value)
            except ValueError:
                pairs[key] = value
        else:
            pairs[key] = value
    return pairs
