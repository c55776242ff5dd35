"""How the CLI shows things: rich tables for people, ``--json`` for programs."""

from __future__ import annotations

import json
import operator
import shutil
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

console = Console(highlight=False)


def fit_to_terminal() -> None:
    """Size the shared console to the terminal (or ``$COLUMNS``) as it is now, not as it was when this
    module was imported (one process may run many commands: the tests do)."""
    console.width = shutil.get_terminal_size((80, 25)).columns


def to_jsonable(value: Any) -> Any:
    """Models and lists of models as plain JSON data."""
    from pydantic import BaseModel  # here: `beambridge xpcs …` never needs pydantic

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    return value


def print_json(value: Any, *, indent: int | None = 2) -> None:
    """Print ``value`` as JSON on stdout, unstyled, so it parses."""
    typer.echo(json.dumps(to_jsonable(value), indent=indent))


def cell(value: Any) -> str:
    """A short, readable cell for a table."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


Column = str | tuple[str, Callable[[Any], Any]]


def print_table(items: Iterable[Any], columns: Sequence[Column], *, title: str | None = None) -> None:
    """A table of ``items`` with one column per attribute name (or ``(header, getter)`` pair)."""
    table = Table(title=title, header_style="bold")
    getters: list[Callable[[Any], Any]] = []
    for column in columns:
        if isinstance(column, str):
            table.add_column(column)
            getters.append(operator.attrgetter(column))
        else:
            table.add_column(column[0])
            getters.append(column[1])
    count = 0
    for item in items:
        table.add_row(*(cell(get(item)) for get in getters))
        count += 1
    if count:
        console.print(table)
    else:
        console.print(f"(no {title.lower() if title else 'results'})")


def show(items: list[Any], columns: Sequence[Column], *, as_json: bool, title: str) -> None:
    """``items`` as a JSON list or as a table."""
    if as_json:
        print_json(items)
    else:
        print_table(items, columns, title=title)
