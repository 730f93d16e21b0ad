"""Prometheus metrics for ``queuer run --metrics-port`` (needs the ``metrics`` extra).

What is measured lives here as plain data (``RunTimes``, ``Scrape``); the worker
fills it and the collector reads it at scrape time, so nothing here knows the
Queuer or the worker.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

log = logging.getLogger("queuer.metrics")

RUN_TIME_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))


@dataclass
class RunTimes:
    """Task run times in buckets (for the Prometheus histogram)."""

    per_bucket: list[int] = field(default_factory=lambda: [0] * len(RUN_TIME_BUCKETS))
    total: float = 0.0

    def add(self, seconds: float) -> None:
        self.total += seconds
        self.per_bucket[bisect_left(RUN_TIME_BUCKETS, seconds)] += 1

    @property
    def counts(self) -> list[int]:
        """Cumulative counts, as a histogram reports them: runs that took at most each bound."""
        return list(accumulate(self.per_bucket))


@dataclass
class WorkerCounters:
    """What this process's worker has done since it started."""

    claimed: int
    started: int
    outcomes: dict[str, int]  # by SUCCEEDED / FAILED / RETRY
    run_times: RunTimes


@dataclass
class Scrape:
    """One scrape: the queue as the database sees it, and this process's worker."""

    running: bool
    jobs: list[tuple[str, str, int]] | None  # (task, status, count); None when the database could not be read
    workers: list[tuple[str, int]] | None  # (status, count)
    counters: WorkerCounters | None


class QueuerCollector:
    """A prometheus-client collector over ``read()``, called at each scrape (None: nothing is running)."""

    def __init__(self, read: Callable[[], Scrape | None]) -> None:
        self.read = read

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        depth = GaugeMetricFamily("queuer_jobs", "Jobs in the queue by task and status", labels=["task", "status"])
        workers = GaugeMetricFamily("queuer_workers", "Workers by status", labels=["status"])
        up = GaugeMetricFamily("queuer_worker_up", "1 while this process's worker runs")
        claimed = CounterMetricFamily("queuer_jobs_claimed", "Attempts claimed by this worker")
        started = CounterMetricFamily("queuer_jobs_started", "Attempts this worker began to run")
        ended = CounterMetricFamily("queuer_job_outcomes", "Outcomes written by this worker", labels=["outcome"])
        run_time = HistogramMetricFamily("queuer_job_run_seconds", "How long tasks ran in this worker")
        scrape = self.read()
        if scrape is not None:
            for task, status, n in scrape.jobs or ():
                depth.add_metric([task, status], n)
            for status, n in scrape.workers or ():
                workers.add_metric([status], n)
            up.add_metric([], 1.0 if scrape.running else 0.0)
            counters = scrape.counters
            if counters is not None:
                claimed.add_metric([], counters.claimed)
                started.add_metric([], counters.started)
                for outcome, n in counters.outcomes.items():
                    ended.add_metric([outcome.lower()], n)
                times = counters.run_times
                buckets = [("+Inf" if b == float("inf") else str(b), n) for b, n in zip(RUN_TIME_BUCKETS, times.counts)]
                run_time.add_metric([], buckets, times.total)
        yield from (depth, workers, up, claimed, started, ended, run_time)


class MetricsServer:
    """The /metrics endpoint on ``port``, in a thread of prometheus-client's."""

    def __init__(self, port: int, read: Callable[[], Scrape | None]) -> None:
        self.port = port
        self.read = read
        self._server: Any = None

    def start(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise SystemExit("--metrics-port needs prometheus-client: pip install 'queuer[metrics]'") from None
        registry = CollectorRegistry()
        registry.register(QueuerCollector(self.read))
        self._server, _thread = start_http_server(self.port, registry=registry)
        log.info("metrics on http://0.0.0.0:%d/metrics", self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
