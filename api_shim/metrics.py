"""Prometheus `/metrics`: migration series read from the database at scrape time, plus the
shim's own request latency.

The worker copies and the shim serves: counters kept in one process's memory would miss the
other's work, so every migration series is derived from the rows when Prometheus scrapes
(`MigrationCollector`). Request latency is the shim's own, measured in this process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage.copy_pace import pace
from storage.db import session_scope
from storage.migration_state import COPYING
from storage.models import Migration, Share
from storage.models.base import aware

SWITCHOVER_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class MigrationCollector(Collector):
    """Every migration series, computed from the database on each scrape."""

    def collect(self) -> Iterator[Metric]:
        with session_scope() as s:
            by_state = GaugeMetricFamily(
                "sharemig_migrations",
                "Migrations by task_state (live ones by the share's, ended ones by outcome).",
                labels=["task_state"],
            )
            rows = s.execute(
                select(Migration.active, Migration.outcome, Share.task_state, func.count())
                .join(Share, Share.id == Migration.share_id)
                .group_by(Migration.active, Migration.outcome, Share.task_state)
            ).all()
            counts: dict[str, int] = {}
            for active, outcome, task_state, n in rows:
                key = str((task_state if active and outcome is None else outcome) or "none")
                counts[key] = counts.get(key, 0) + int(n)
            for key, n in sorted(counts.items()):
                by_state.add_metric([key], n)
            yield by_state

            files, bytes_ = s.execute(
                select(
                    func.coalesce(func.sum(Migration.files_verified), 0),
                    func.coalesce(func.sum(Migration.bytes_verified), 0),
                )
            ).one()
            yield CounterMetricFamily(
                "sharemig_verified_bytes",
                "Bytes verified at destinations (xxh3-128 read back), all migrations.",
                value=int(bytes_),
            )
            yield CounterMetricFamily(
                "sharemig_verified_files",
                "Files verified at destinations, all migrations.",
                value=int(files),
            )
            yield self._throughput(s)
            yield self._switchovers(s)

    @staticmethod
    def _throughput(s: Session) -> Metric:
        family = GaugeMetricFamily(
            "sharemig_copy_throughput_bytes_per_second",
            "Average verified bytes/s of each copy running now (the API's bytes_per_second).",
            labels=["migration_id", "share_id"],
        )
        live = s.scalars(
            select(Migration)
            .join(Share, Share.id == Migration.share_id)
            .where(Migration.active.is_(True), Share.task_state.in_([str(t) for t in COPYING]))
        ).all()
        for mig in live:
            rate = pace(s, mig).bytes_per_s
            if rate is not None:
                family.add_metric([mig.id, mig.share_id], rate)
        return family

    @staticmethod
    def _switchovers(s: Session) -> Metric:
        done = s.execute(
            select(Migration.complete_requested_at, Migration.finished_at).where(
                Migration.outcome == "migration_success",
                Migration.complete_requested_at.is_not(None),
                Migration.finished_at.is_not(None),
            )
        ).all()
        seconds = [
            max(0.0, (aware(end) - aware(start)).total_seconds())
            for start, end in done
            if start is not None and end is not None
        ]
        buckets = [(str(b), float(sum(1 for x in seconds if x <= b))) for b in SWITCHOVER_BUCKETS]
        buckets.append(("+Inf", float(len(seconds))))
        return HistogramMetricFamily(
            "sharemig_switchover_duration_seconds",
            "From the switchover's approval to migration_success.",
            buckets=buckets,
            sum_value=sum(seconds),
        )


class Metrics:
    """One app's registry: the database collector and this shim's request latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MigrationCollector())
        self.latency = Histogram(
            "sharemig_api_request_duration_seconds",
            "API request latency by route template, method and status code.",
            ["route", "method", "status"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )

    def response(self, _: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class RequestTimer:
    """ASGI middleware timing each request under its route template (few label values:
    `/v2/shares/{share_id}/action`, never the share id itself)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            route = scope.get("route")
            template = str(getattr(route, "path", "unmatched"))
            self.metrics.latency.labels(template, scope["method"], str(status[0])).observe(
                time.perf_counter() - started
            )
