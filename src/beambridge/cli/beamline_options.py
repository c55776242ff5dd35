"""What ``beambridge watch`` and ``beambridge monitor`` share: alert options, logging, stopping on signals."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer

WebhookOption = Annotated[
    list[str] | None,
    typer.Option(help="Post alerts here (repeatable): changes, timings, failures, sites, lateness."),
]
FirstFeedbackLimitOption = Annotated[
    float, typer.Option(help="Alert when a quick look is later than this many seconds.", min=1)
]


def log_to_stderr() -> None:
    """Structured (key=value) log lines on stderr; httpx's per-request lines only when they warn."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT (Ctrl-C) or SIGTERM, for a loop that ends cleanly."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
