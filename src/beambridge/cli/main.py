"""The ``beambridge`` command: one sub-command group per module, errors reported once, here.

Every failure ends as exactly one line on stderr, ``error: <what went wrong>``, and exit status 1
(2 for a usage mistake) — never a traceback. ``BEAMBRIDGE_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from beambridge.cli.output import fit_to_terminal

HELP = "Near-real-time analysis of light-source data at whichever HPC facility finishes first."
app = typer.Typer(name="beambridge", help=HELP, no_args_is_help=True, pretty_exceptions_enable=False)


def _show_version(value: bool) -> None:
    if value:
        from beambridge import __version__

        typer.echo(f"beambridge {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_show_version, is_eager=True),
    ] = False,
) -> None:
    """Near-real-time analysis of light-source data at whichever HPC facility finishes first."""


_GROUPS: dict[str, str] = {
    "server": "server",
    "user": "users",
    "site": "sites",
    "app": "apps",
    "job": "jobs",
    "placement": "placement",
    "workflow": "workflows",
}
"""Sub-command groups: the name typed after ``beambridge`` → the module under ``beambridge.cli``
that holds its ``app``."""

_COMMANDS: dict[str, tuple[str, str]] = {
    "submit": ("workflows", "submit"),
    "submissions": ("workflows", "submissions"),
    "watch": ("watch", "watch"),
    "monitor": ("monitor", "monitor"),
    "login": ("login", "login"),
    "logout": ("login", "logout"),
    "whoami": ("login", "whoami"),
    "events": ("events", "events"),
    "audit": ("audit", "audit"),
    "demo": ("demo", "demo"),
    "launcher": ("launcher", "launcher"),
}
"""Single commands: name → (module under ``beambridge.cli``, function)."""

_mounted: list[str] = []
_mounted_agent: list[bool] = []


def _mount(target: typer.Typer, name: str) -> None:
    """Mount one group or command on ``target``, importing only its module."""
    if name == "xpcs":
        _mount_xpcs(target)
    elif name in _GROUPS:
        module = importlib.import_module(f"beambridge.cli.{_GROUPS[name]}")
        if name == "site" and not _mounted_agent:
            from beambridge.cli import site_agent

            site_agent.register(module.app)  # on the module's app: once per process
            _mounted_agent.append(True)
        target.add_typer(module.app, name=name)
    else:
        module_name, function = _COMMANDS[name]
        module = importlib.import_module(f"beambridge.cli.{module_name}")
        target.command(name)(getattr(module, function))


def _mount_all() -> None:
    """Mount every sub-command on :data:`app` (once): for the top-level help, completion and names the
    command line does not know (so that the usage error lists them all)."""
    if _mounted:
        return
    for name in (*_GROUPS, *_COMMANDS, "xpcs"):
        _mount(app, name)
    _mounted.append("all")


def _only(name: str | None) -> typer.Typer:
    """The command line with only ``name`` mounted (the same options and errors): ``beambridge job ls``
    imports the job commands and not the server, the placement code, the demo or the XPCS kernels."""
    only = typer.Typer(name="beambridge", help=HELP, no_args_is_help=True, pretty_exceptions_enable=False)
    only.callback()(_options)
    if name is not None:
        _mount(only, name)
    return only


def _command_for(argv: list[str]) -> typer.Typer:
    """The smallest command line that can run ``argv``: the one sub-command it names, else all."""
    completing = any(key.endswith("_COMPLETE") for key in os.environ)
    name = argv[0] if argv else ""
    if argv == ["--version"]:
        return _only(None)
    if completing or not (name in _GROUPS or name in _COMMANDS or name == "xpcs"):
        _mount_all()
        return app
    return _only(name)


def _mount_xpcs(app: typer.Typer) -> None:
    """Mount ``beambridge xpcs`` from its own module; if that cannot load, say so only when it is used."""
    try:
        from beambridge.cli.xpcs import app as xpcs_app
    except Exception as exc:  # any failure in that module must not break the rest of the CLI
        reason = f"{type(exc).__name__}: {exc}"

        @app.command(
            "xpcs",
            help="XPCS analysis (unavailable here).",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
            add_help_option=False,
        )
        def xpcs_unavailable() -> None:
            raise typer.TyperException(f"the xpcs commands could not be loaded ({reason})")

        return
    app.add_typer(xpcs_app, name="xpcs")


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "failed"


def main(args: Sequence[str] | None = None) -> int:
    """Run the CLI on ``args`` (default: ``sys.argv[1:]``); returns the exit status."""
    debug = os.environ.get("BEAMBRIDGE_DEBUG", "") not in ("", "0")
    fit_to_terminal()
    argv = list(args) if args is not None else sys.argv[1:]
    command = _command_for(argv)
    try:
        result = command(args=argv, prog_name="beambridge", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 1
    except typer.TyperException as exc:  # typer's (vendored click's) usage and command errors
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help has been printed already
            return 2
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None and exc.exit_code == 2 else ""
        typer.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
        return int(exc.exit_code) or 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug:
            raise
        typer.echo(f"error: {_describe(exc)}", err=True)
        return 1
    return result if isinstance(result, int) else 0


def _describe(exc: Exception) -> str:
    """The fact a user needs: the service's detail for API errors, the message for the rest."""
    from beambridge.client.errors import BeambridgeError

    message = _one_line(str(exc)) if str(exc) else ""
    if isinstance(exc, BeambridgeError | OSError | ValueError) or hasattr(exc, "detail"):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
