"""Structured logs: one line per event, key=value pairs that split the same way whatever the values hold,
and every log call of the service, the agent, the launcher and the adapters written that way."""

from __future__ import annotations

import ast
import io
import logging
import shlex
from pathlib import Path

import pytest

import beambridge
from beambridge.logs import KeyValueFormatter, configure_logging, format_value, get_logger

SOURCE = Path(beambridge.__file__).parent
STRUCTURED = ["server", "site", "launcher", "platform"]
LEVELS = {"debug", "info", "warning", "error", "exception"}


def _fields(line: str) -> dict[str, str]:
    """A logfmt line back into its pairs (JSON-quoted values read like shell words)."""
    return dict(part.split("=", 1) for part in shlex.split(line))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (7, "7"),
        ("n1", "n1"),
        ("two words", '"two words"'),
        ('say "x"', '"say \\"x\\""'),
        ("a=b", '"a=b"'),
        ("", '""'),
        (None, "none"),
        (True, "true"),
        (0.1234567, "0.123457"),
        ([1, 2, 3], "1,2,3"),
        ("line\nbreak", '"line\\nbreak"'),
    ],
)
def test_values_are_bare_only_when_unambiguous(value: object, text: str) -> None:
    assert format_value(value) == text


def test_a_record_is_one_line_of_pairs_with_the_ids_it_concerns() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    try:
        log = get_logger("beambridge.test")
        log.info("job_started", job_id=7, session_id=3, node="n 1")
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            log.exception("job_start_failed", job_id=8)
        logging.getLogger("somelib").warning("plain %s text", "library")
    finally:
        logging.getLogger().handlers.clear()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    started, failed, foreign = (_fields(line) for line in lines)
    assert started["event"] == "job_started" and started["job_id"] == "7" and started["node"] == "n 1"
    assert (
        started["level"] == "info" and started["logger"] == "beambridge.test" and started["ts"].endswith("Z")
    )
    assert failed["event"] == "job_start_failed" and "ValueError: bad" in failed["traceback"]
    assert foreign["msg"] == "plain library text" and foreign["logger"] == "somelib"


def test_records_stay_ordinary_for_handlers_and_caplog(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    get_logger("beambridge.test").warning("pilot_withdrawn", batch_job_id=4, reason="queued too long")
    [record] = caplog.records
    assert record.levelno == logging.WARNING and record.name == "beambridge.test"
    assert record.getMessage() == 'event=pilot_withdrawn batch_job_id=4 reason="queued too long"'
    assert KeyValueFormatter().format(record).endswith(record.getMessage())


def test_disabled_levels_cost_no_formatting(caplog: pytest.LogCaptureFixture) -> None:
    class Loud:
        def __str__(self) -> str:
            raise AssertionError("formatted although nobody listens")

    caplog.set_level(logging.INFO)
    get_logger("beambridge.test").debug("quiet", value=Loud())


def test_every_log_call_of_the_service_agent_launcher_and_adapters_is_structured() -> None:
    """``log.info("event_name", key=value)``: a snake_case event and keyword fields, no %-formatting."""
    offenders = []
    for package in STRUCTURED:
        for path in sorted((SOURCE / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in {"log", "logger"}
                    and node.func.attr in LEVELS | {"log"}
                ):
                    continue
                args = node.args[1:] if node.func.attr == "log" else node.args
                event = args[0] if args else None
                well_formed = (
                    len(args) == 1
                    and isinstance(event, ast.Constant)
                    and isinstance(event.value, str)
                    and event.value.replace("_", "").isalnum()
                    and event.value == event.value.lower()
                )
                if not well_formed:
                    offenders.append(f"{path.relative_to(SOURCE)}:{node.lineno}")
            for node in ast.walk(tree):  # the module's logger must be the structured one
                if (
                    isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id in {"log", "logger"} for t in node.targets)
                    and isinstance(node.value, ast.Call)
                    and isinstance(node.value.func, ast.Attribute)
                    and node.value.func.attr == "getLogger"
                ):
                    offenders.append(f"{path.relative_to(SOURCE)}:{node.lineno} uses logging.getLogger")
    assert offenders == []


def test_the_service_lines_carry_their_request_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    get_logger("beambridge.server.access").info("request", route="/jobs/{job_id}", status=401)
    [record] = caplog.records
    record.request_id = "trace-me-7"  # what the service's RequestIdFilter sets
    fields = _fields(KeyValueFormatter().format(record))
    assert (
        fields["request_id"] == "trace-me-7"
        and fields["route"] == "/jobs/{job_id}"
        and fields["event"] == "request"
    )
