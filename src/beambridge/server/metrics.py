"""Prometheus metrics of the service, served at ``/metrics``.

Label sets are bounded: route templates (``/jobs/{job_id}``, never a job id), methods, status classes,
job states. Figures the database already holds (jobs by state, events written) are read when scraped,
at most every few seconds, instead of being counted on every request.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from beambridge.server.db.engine import Database
from beambridge.server.db.tables import events, jobs
from beambridge.server.json_body import JsonRoute
from beambridge.states import JobState

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DATABASE_FIGURES_TTL_S = 5.0


class DatabaseCollector(Collector):
    """Jobs by state, events written and the connection pool, read from the database when scraped."""

    def __init__(self, db: Database, ttl_s: float = DATABASE_FIGURES_TTL_S) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._read_at = -1e9
        self._by_state: dict[str, int] = {}
        self._events = 0

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._read_at < self.ttl_s:
                return
            with self.db.read() as conn:
                rows = conn.execute(sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state))
                self._by_state = {state: int(count) for state, count in rows}
                self._events = int(conn.execute(sa.select(sa.func.max(events.c.id))).scalar() or 0)
            self._read_at = time.monotonic()

    def describe(self) -> Iterator[Metric]:
        """The metric names without reading the database (a registry asks this when the app is built,
        possibly before the schema exists)."""
        yield GaugeMetricFamily("beambridge_jobs", "Jobs by state", labels=["state"])
        yield CounterMetricFamily("beambridge_events", "State changes recorded")
        yield GaugeMetricFamily(
            "beambridge_db_pool_connections", "Database connections of this process", labels=["state"]
        )
        yield GaugeMetricFamily("beambridge_db_pool_size", "Configured pool size")

    def collect(self) -> Iterator[Metric]:
        self._refresh()
        by_state = GaugeMetricFamily("beambridge_jobs", "Jobs by state", labels=["state"])
        for state in JobState:
            by_state.add_metric([state.value], self._by_state.get(state.value, 0))
        yield by_state
        yield CounterMetricFamily(
            "beambridge_events",
            "State changes recorded (event ids are never reused: rate() gives events per second)",
            value=self._events,
        )
        pool: Any = self.db.engine.pool
        connections = GaugeMetricFamily(
            "beambridge_db_pool_connections", "Database connections of this process", labels=["state"]
        )
        for name in ("checkedout", "checkedin", "overflow"):
            if hasattr(pool, name):
                connections.add_metric(
                    [name.replace("checked", "checked_")], max(0, int(getattr(pool, name)()))
                )
        yield connections
        if hasattr(pool, "size"):
            yield GaugeMetricFamily("beambridge_db_pool_size", "Configured pool size", value=int(pool.size()))


class ServiceMetrics:
    """The service's metrics, in a registry of its own (several apps may live in one process)."""

    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Histogram(
            "beambridge_http_request_duration_seconds",
            "Time to answer a request, by route template, method and status class",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.acquire = Histogram(
            "beambridge_acquire_duration_seconds",
            "Database work of one acquire (without any long-poll wait)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.acquired = Counter(
            "beambridge_acquired_jobs", "Jobs handed to launchers by acquire", registry=self.registry
        )
        self.console_streams = Gauge(
            "beambridge_console_streams", "Live-update streams open to console pages", registry=self.registry
        )
        self.database = DatabaseCollector(db)
        self.registry.register(self.database)

    def observe_acquire(self, seconds: float, handed_out: int) -> None:
        """One acquire's database time and how many jobs it handed out."""
        self.acquire.observe(seconds)
        if handed_out:
            self.acquired.inc(handed_out)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return bytes(generate_latest(self.registry))


def status_class(status: int) -> str:
    """``2xx``, ``4xx``…: the status label (bounded)."""
    return f"{status // 100}xx"


def families(text: str) -> Iterable[Any]:
    """Parse an exposition (for tests and tools)."""
    from prometheus_client.parser import text_string_to_metric_families

    return text_string_to_metric_families(text)


router = APIRouter(include_in_schema=False, route_class=JsonRoute)


@router.get("/metrics")
async def metrics_route(request: Request) -> Response:
    """The Prometheus exposition. With ``BEAMBRIDGE_METRICS_TOKEN`` set, only for that bearer token."""
    expected = request.app.state.ctx.settings.metrics_token
    if expected:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            return PlainTextResponse(
                "metrics need 'Authorization: Bearer <metrics token>'\n", status_code=401
            )
    metrics: ServiceMetrics = request.app.state.metrics
    body = await run_in_threadpool(metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
