"""The ``beambridge`` command: one sub-command group per module, errors reported once, here.

Every failure ends as exactly one line on stderr, ``error: <what went wrong>``, and exit status 1
(2 for a usage mistake) — never a traceback. ``BEAMBRIDGE_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

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


_mounted: list[str] = []


def _mount_all() -> None:
    """Mount every sub-command (once). Done on first use rather than at import: ``beambridge xpcs …``
    runs without them (:func:`_xpcs_only`), so a quick look at a file does not pay for importing the
    client, the server's schemas and the placement code."""
    if _mounted:
        return
    from beambridge.cli import (
        apps,
        audit,
        demo,
        events,
        jobs,
        launcher,
        login,
        monitor,
        placement,
        server,
        site_agent,
        sites,
        users,
        watch,
        workflows,
    )

    app.add_typer(server.app, name="server")
    app.add_typer(users.app, name="user")
    app.add_typer(sites.app, name="site")
    app.add_typer(apps.app, name="app")
    app.add_typer(jobs.app, name="job")
    app.add_typer(placement.app, name="placement")
    app.add_typer(workflows.app, name="workflow")
    app.command("submit")(workflows.submit)
    app.command("submissions")(workflows.submissions)
    app.command("watch")(watch.watch)
    app.command("monitor")(monitor.monitor)
    app.command("login")(login.login)
    app.command("logout")(login.logout)
    app.command("whoami")(login.whoami)
    app.command("events")(events.events)
    app.command("audit")(audit.audit)
    app.command("demo")(demo.demo)
    app.command("launcher")(launcher.launcher)
    site_agent.register(sites.app)
    _mount_xpcs(app)
    _mounted.append("all")


def _xpcs_only() -> typer.Typer:
    """The command line with only ``beambridge xpcs`` mounted (the same options and errors)."""
    only = typer.Typer(name="beambridge", help=HELP, no_args_is_help=True, pretty_exceptions_enable=False)
    only.callback()(_options)
    _mount_xpcs(only)
    return only


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
    completing = any(key.endswith("_COMPLETE") for key in os.environ)
    command = _xpcs_only() if argv[:1] == ["xpcs"] and not completing else app
    if command is app:
        _mount_all()
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
