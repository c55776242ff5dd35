"""Structured log lines: one event per line, as ``key=value`` pairs (logfmt), with the ids it concerns.

::

    log = get_logger(__name__)
    log.info("job_started", job_id=7, session_id=3, node="n1")

prints, through :class:`KeyValueFormatter` (the service, the agent and the launcher install it with
:func:`configure_logging`)::

    ts=2026-12-03T14:05:01.123Z level=info logger=beambridge.launcher.launcher thread=main event=job_started job_id=7 session_id=3 node=n1

Values with spaces, quotes, ``=`` or newlines are JSON-quoted, so every line splits the same way (a
traceback becomes one quoted ``traceback=`` value). Lines of other libraries keep their text as ``msg=``.
Plain standard library: nothing to install, and ``caplog`` and handlers see ordinary records.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/,+@[](){}")


def format_value(value: Any) -> str:
    """One value as logfmt: bare when that is unambiguous, JSON-quoted otherwise."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (list, tuple, set, frozenset)):
        text = ",".join(str(item) for item in value)
    elif isinstance(value, BaseException):
        text = f"{type(value).__name__}: {value}"
    else:
        text = str(value)
    if text and all(char in _PLAIN for char in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def format_fields(event: str, fields: Mapping[str, Any]) -> str:
    """``event=<event> key=value …`` in the order given."""
    parts = [f"event={format_value(event)}"]
    parts += [f"{key}={format_value(value)}" for key, value in fields.items()]
    return " ".join(parts)


class _Line:
    """A structured message, formatted only if a handler emits it."""

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: Mapping[str, Any]) -> None:
        self.event = event
        self.fields = fields

    def __str__(self) -> str:
        return format_fields(self.event, self.fields)


class KeyValueLogger:
    """A logger whose calls take an event name and the fields of the event."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def log(self, level: int, event: str, /, *, exc_info: bool = False, **fields: Any) -> None:
        """Log ``event`` with ``fields`` at ``level``."""
        if self.logger.isEnabledFor(level):
            self.logger.log(level, "%s", _Line(event, fields), exc_info=exc_info, stacklevel=3)

    def debug(self, event: str, /, **fields: Any) -> None:
        self.log(logging.DEBUG, event, **fields)

    def info(self, event: str, /, **fields: Any) -> None:
        self.log(logging.INFO, event, **fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        self.log(logging.WARNING, event, **fields)

    def error(self, event: str, /, **fields: Any) -> None:
        self.log(logging.ERROR, event, **fields)

    def exception(self, event: str, /, **fields: Any) -> None:
        """An error with the traceback of the exception being handled."""
        self.log(logging.ERROR, event, exc_info=True, **fields)


def get_logger(name: str) -> KeyValueLogger:
    """The structured logger of a module (``get_logger(__name__)``)."""
    return KeyValueLogger(logging.getLogger(name))


class KeyValueFormatter(logging.Formatter):
    """Every record as one logfmt line: time, level, logger, thread, then the event and its fields."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        head = (
            f"ts={when} level={record.levelname.lower()} logger={record.name} "
            f"thread={format_value(record.threadName)}"
        )
        request_id = getattr(record, "request_id", None)  # the service's lines carry their request's id
        if request_id is not None:
            head += f" request_id={format_value(request_id)}"
        structured = (
            isinstance(record.args, tuple) and len(record.args) == 1 and isinstance(record.args[0], _Line)
        )
        body = record.getMessage() if structured else f"msg={format_value(record.getMessage())}"
        line = f"{head} {body}"
        if record.exc_info:
            line += f" traceback={format_value(self.formatException(record.exc_info))}"
        return line


def configure_logging(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send every log record (ours and the libraries') to ``stream`` (stderr) as logfmt lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the log
