"""Prometheus metrics of a site agent, served on loopback when ``site.yml`` asks (``metrics_port``).

Label sets are bounded: scheduler command (submit, statuses, cancel, find_by_name), transfer direction and
backend kind, pilot state, service name — never a job, pilot or task id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from beambridge.platform.schedulers import Scheduler

T = TypeVar("T")
COMMAND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

REGISTRY = CollectorRegistry(auto_describe=True)
"""The agent's own registry (a process may also host a server, whose metrics are its own)."""

SCHEDULER_SECONDS = Histogram(
    "beambridge_agent_scheduler_command_seconds",
    "Time the batch scheduler took to answer, by command",
    ["command"],
    buckets=COMMAND_BUCKETS,
    registry=REGISTRY,
)
SCHEDULER_FAILURES = Counter(
    "beambridge_agent_scheduler_command_failures_total",
    "Scheduler commands that failed (unavailable, refused, garbled answer), by command and error",
    ["command", "error"],
    registry=REGISTRY,
)
TRANSFER_BYTES = Counter(
    "beambridge_agent_transfer_bytes_total",
    "Bytes moved by finished transfer tasks",
    ["direction", "backend"],
    registry=REGISTRY,
)
TRANSFER_FILES = Counter(
    "beambridge_agent_transfer_files_total",
    "Files moved by finished transfer tasks",
    ["direction", "backend"],
    registry=REGISTRY,
)
TRANSFER_TASKS = Counter(
    "beambridge_agent_transfer_tasks_total",
    "Transfer tasks that ended, by outcome (done, failed)",
    ["direction", "backend", "outcome"],
    registry=REGISTRY,
)
PILOTS = Gauge(
    "beambridge_agent_pilots", "The site's pilots the agent tracks, by state", ["state"], registry=REGISTRY
)


def _error_name(exc: BaseException) -> str:
    return type(exc).__name__[:40]


class MeasuredScheduler:
    """A scheduler adapter whose commands are timed and whose failures are counted."""

    COMMANDS = ("submit", "statuses", "cancel", "find_by_name")

    def __init__(self, inner: Scheduler) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in self.COMMANDS or not callable(attribute):
            return attribute
        return _measured(name, attribute)


def _measured(command: str, call: Callable[..., T]) -> Callable[..., T]:
    def timed(*args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            SCHEDULER_FAILURES.labels(command, _error_name(exc)).inc()
            raise
        finally:
            SCHEDULER_SECONDS.labels(command).observe(time.perf_counter() - started)

    return timed


def measured(scheduler: Scheduler) -> Scheduler:
    """``scheduler`` with its commands measured (same interface)."""
    return cast(Scheduler, MeasuredScheduler(scheduler))


def transfer_ended(direction: str, backend: str, *, ok: bool, nbytes: int, files: int) -> None:
    """Count one transfer task that ended."""
    TRANSFER_TASKS.labels(direction, backend, "done" if ok else "failed").inc()
    if ok:
        TRANSFER_BYTES.labels(direction, backend).inc(nbytes)
        TRANSFER_FILES.labels(direction, backend).inc(files)


def pilots_seen(states: Iterable[str], known: Iterable[str]) -> None:
    """Set the pilots gauge from the states of the pilots tracked now (every known state, zeros too)."""
    counts = dict.fromkeys(known, 0)
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    for state, count in counts.items():
        PILOTS.labels(state).set(count)


class ServiceCollector(Collector):
    """Ticks and failures of the agent's services, read from the services when scraped."""

    def __init__(self, services: Callable[[], list[Any]]) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        ticks = CounterMetricFamily(
            "beambridge_agent_service_ticks", "Service rounds completed", labels=["service"]
        )
        failing = CounterMetricFamily(
            "beambridge_agent_service_errors", "Service rounds that failed in a row now", labels=["service"]
        )
        for service in self._services():
            ticks.add_metric([service.name], float(service.ticks))
            failing.add_metric([service.name], float(service.failures))
        yield ticks
        yield failing


_SERVICES: list[Callable[[], list[Any]]] = []


def serve(port: int, address: str, services: Callable[[], list[Any]]) -> Any:
    """Serve the registry at ``http://address:port/metrics``; the server (``.shutdown()`` ends it)."""
    from prometheus_client import start_http_server

    _SERVICES.append(services)  # the newest agent of this process is the one reported
    if len(_SERVICES) == 1:  # registering describes the collector at once: it needs an agent
        REGISTRY.register(ServiceCollector(lambda: _SERVICES[-1]()))
    server, _thread = start_http_server(port, addr=address, registry=REGISTRY)
    return server
